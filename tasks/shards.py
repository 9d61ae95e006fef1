"""Reading img2dataset shards without trusting them.

A shard is ``NNNNN.tar`` (members ``{key}.jpg|png|webp|...``, ``{key}.txt``, ``{key}.json``)
beside ``NNNNN.parquet`` (one row per attempted URL; ``status == "success"`` rows are in the tar).
The tar is read by ``tasks.shard_format`` (in memory, never extracted; unsafe members refused and
reported; a truncated tar yields the members before the damage plus a recorded error). Keys present on one side only
(tar vs parquet) are reported so the caller can quarantine them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from djepa_t2i.config import ConfigError, require_dir
from tasks import shard_format as sf


@dataclass
class Entry:
    key: str
    files: dict[str, bytes] = field(default_factory=dict)  # extension -> payload

    @property
    def image(self) -> bytes | None:
        img = sf.pick_image(self.files)
        return img[1] if img else None


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
    """Tar shards of an img2dataset output folder, sorted by name. A parquet without its tar is
    listed by the tar path it names, so its success keys are accounted (quarantined), not lost.
    A missing folder, or one without a single ``.tar``, is the user's to fix: a ``ConfigError``
    (one line, exit 2) before any work, never a traceback."""
    require_dir("input", input_dir)
    names = os.listdir(input_dir)
    if not any(f.endswith(".tar") for f in names):
        raise ConfigError(f"input={input_dir!r}: no .tar shards there (expected img2dataset output: "
                          "NNNNN.tar beside NNNNN.parquet)")
    stems = {f[: -len(ext)] for f in names for ext in (".tar", ".parquet") if f.endswith(ext)}
    return sorted(os.path.join(input_dir, s + ".tar") for s in stems)


_SAFE_PART = re.compile(r"[A-Za-z0-9_=-][A-Za-z0-9._=-]*")


def shard_name(tar_path: str) -> str:
    """The shard's lake partition name: the file stem when it is a safe partition name, else the
    stem with every other character replaced by ``_`` plus 8 hex of its sha256, so ``part 1.tar``
    and ``part_1.tar`` stay two partitions (the real path is kept in ``source_path``)."""
    stem = os.path.basename(tar_path)[: -len(".tar")]
    if _SAFE_PART.fullmatch(stem):
        return stem
    digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return re.sub(r"[^A-Za-z0-9_=-]", "_", stem) + "-" + digest


def read_tar(tar_path: str, max_member_bytes: int | None = None
             ) -> tuple[dict[str, Entry], list[tuple[str, str]], list[str]]:
    """Every member of a shard grouped by key (``tasks.shard_format.read_tar``)."""
    files, refused, errors = sf.read_tar(tar_path, max_member_bytes=max_member_bytes)
    return {k: Entry(k, f) for k, f in files.items()}, refused, errors


def read_parquet_rows(path: str) -> tuple[dict[str, dict] | None, list[str]]:
    if not os.path.exists(path):
        return None, []
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


def read_shard(tar_path: str, max_member_bytes: int | None = None) -> ShardRead:
    if os.path.exists(tar_path):
        entries, refused, errors = read_tar(tar_path, max_member_bytes)
    else:
        entries, refused, errors = {}, [], [f"tar {os.path.basename(tar_path)} is missing: only its parquet exists"]
    rows, perr = read_parquet_rows(tar_path[: -len(".tar")] + ".parquet")
    s = ShardRead(shard_name(tar_path), tar_path, entries, refused, errors + perr, rows)
    if rows is not None:
        s.only_in_tar = [k for k in entries if k not in rows]
        s.only_in_parquet = [k for k in rows if k not in entries]
    return s


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def storable_text(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (a lone surrogate from a JSON ``\\ud800`` escape),
    or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"lone surrogate {text[e.start]!r} at character {e.start}"
    return None


def parse_meta(entry: Entry) -> tuple[dict | None, str | None]:
    """The pair's json metadata, or (None, reason). Strict JSON (NaN/Infinity refused); the
    fields curation stores (``url``, ``source``) must be storable strings or absent."""
    raw = entry.files.get("json")
    if raw is None:
        return None, "missing json metadata"
    try:
        meta = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        return None, f"unreadable json metadata: {type(e).__name__}: {e}"
    except RecursionError:
        return None, "unreadable json metadata: nested too deeply"
    if not isinstance(meta, dict):
        return None, "json metadata is not an object"
    for name in ("url", "source"):
        v = meta.get(name)
        if v is not None and not isinstance(v, str):
            return None, f"json metadata field {name!r} is {type(v).__name__}, expected a string"
        if v is not None and (why := storable_text(v)):
            return None, f"json metadata field {name!r}: {why}"
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
        if not isinstance(text, str):
            return None, f"json caption is {type(text).__name__}, expected a string"
        if why := storable_text(text):
            return None, f"caption: {why}"
    text = text.strip()
    if not text:
        return None, "empty caption"
    return text, None
