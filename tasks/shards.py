"""Reading img2dataset shards without trusting them.

A shard is ``NNNNN.tar`` (members ``{key}.jpg|png|webp``, ``{key}.txt``, ``{key}.json``) beside
``NNNNN.parquet`` (one row per attempted URL; ``status == "success"`` rows are in the tar).
Members are read into memory, never extracted, so a hostile name (``../x``, ``/etc/x``, a link
or device) cannot touch the filesystem: such members are refused and reported. A truncated tar
yields the members before the damage plus a recorded error. Keys present on one side only
(tar vs parquet) are reported so the caller can quarantine them.
"""
from __future__ import annotations

import json
import os
import posixpath
import tarfile
from dataclasses import dataclass, field

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")


@dataclass
class Entry:
    key: str
    files: dict[str, bytes] = field(default_factory=dict)  # extension -> payload

    @property
    def image(self) -> bytes | None:
        for ext in IMAGE_EXTS:
            if ext in self.files:
                return self.files[ext]
        return None


@dataclass
class ShardRead:
    name: str  # "00000"
    tar_path: str
    entries: dict[str, Entry]  # in tar order
    refused: list[tuple[str, str]] = field(default_factory=list)  # (member name, reason)
    errors: list[str] = field(default_factory=list)  # shard-level problems (truncation, ...)
    parquet_rows: dict[str, dict] | None = None  # success rows by key; None: no parquet
    only_in_tar: list[str] = field(default_factory=list)
    only_in_parquet: list[str] = field(default_factory=list)


def list_shards(input_dir: str) -> list[str]:
    """Tar shards of an img2dataset output folder, sorted by name."""
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"input folder {input_dir!r} does not exist")
    tars = sorted(os.path.join(input_dir, f) for f in os.listdir(input_dir) if f.endswith(".tar"))
    if not tars:
        raise FileNotFoundError(f"no .tar shards in {input_dir!r} (expected img2dataset output)")
    return tars


def shard_name(tar_path: str) -> str:
    return os.path.basename(tar_path)[: -len(".tar")]


def unsafe_reason(m: tarfile.TarInfo) -> str | None:
    """Why a member must not be read, or None. Refuses what extraction would make dangerous."""
    name = m.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return f"path escapes the shard: {name!r}"
    if m.issym() or m.islnk():
        return f"link member {name!r} -> {m.linkname!r}"
    if not m.isfile():
        return None if m.isdir() else f"special member {name!r} (type {m.type!r})"
    return None


def split_key(name: str) -> tuple[str, str]:
    """``dir/000001.jpg`` -> (``dir/000001``, ``jpg``); the extension is lower-cased."""
    d, base = posixpath.split(posixpath.normpath(name))
    stem, _, ext = base.partition(".")
    return (posixpath.join(d, stem) if d else stem), ext.lower()


def read_tar(tar_path: str) -> tuple[dict[str, Entry], list[tuple[str, str]], list[str]]:
    entries: dict[str, Entry] = {}
    refused: list[tuple[str, str]] = []
    errors: list[str] = []
    try:
        tf = tarfile.open(tar_path, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as e:
        return entries, refused, [f"cannot open tar: {type(e).__name__}: {e}"]
    with tf:
        while True:
            try:
                m = tf.next()
            except (tarfile.TarError, OSError, EOFError) as e:
                errors.append(f"tar truncated or corrupt after {len(entries)} keys: {type(e).__name__}: {e}")
                break
            if m is None:
                break
            why = unsafe_reason(m)
            if why:
                refused.append((m.name, why))
                continue
            if m.isdir():
                continue
            try:
                f = tf.extractfile(m)
                data = f.read() if f else b""
                if len(data) != m.size:
                    raise EOFError(f"member {m.name!r} has {len(data)} of {m.size} bytes")
            except (tarfile.TarError, OSError, EOFError) as e:
                errors.append(f"tar truncated or corrupt in member {m.name!r}: {type(e).__name__}: {e}")
                key, _ = split_key(m.name)
                entries.setdefault(key, Entry(key)).files.setdefault("_truncated", b"")
                break
            key, ext = split_key(m.name)
            entries.setdefault(key, Entry(key)).files[ext] = data
    return entries, refused, errors


def read_parquet_rows(path: str) -> tuple[dict[str, dict] | None, list[str]]:
    if not os.path.exists(path):
        return None, []
    import pyarrow.parquet as pq
    try:
        t = pq.read_table(path)
    except Exception as e:  # noqa: BLE001
        return None, [f"unreadable parquet {os.path.basename(path)}: {type(e).__name__}: {e}"]
    if "key" not in t.column_names:
        return None, [f"parquet {os.path.basename(path)} has no 'key' column"]
    rows = {}
    for r in t.to_pylist():
        if r.get("status", "success") == "success" and r.get("key") is not None:
            rows[str(r["key"])] = r
    return rows, []


def read_shard(tar_path: str) -> ShardRead:
    entries, refused, errors = read_tar(tar_path)
    rows, perr = read_parquet_rows(tar_path[: -len(".tar")] + ".parquet")
    s = ShardRead(shard_name(tar_path), tar_path, entries, refused, errors + perr, rows)
    if rows is not None:
        s.only_in_tar = [k for k in entries if k not in rows]
        s.only_in_parquet = [k for k in rows if k not in entries]
    return s


def parse_meta(entry: Entry) -> tuple[dict | None, str | None]:
    """The pair's json metadata, or (None, reason)."""
    raw = entry.files.get("json")
    if raw is None:
        return None, "missing json metadata"
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"unreadable json metadata: {type(e).__name__}: {e}"
    if not isinstance(meta, dict):
        return None, "json metadata is not an object"
    return meta, None


def parse_caption(entry: Entry, meta: dict | None) -> tuple[str | None, str | None]:
    """Caption from ``.txt`` (img2dataset's caption file), else the json; or (None, reason)."""
    raw = entry.files.get("txt")
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"caption is not valid UTF-8 ({e.reason} at byte {e.start})"
    else:
        text = (meta or {}).get("caption")
        if text is None:
            return None, "missing caption (no .txt and no caption in json)"
    text = str(text).strip()
    if not text:
        return None, "empty caption"
    return text, None
