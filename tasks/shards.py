"""Reading img2dataset shards without trusting them.

A shard is ``NNNNN.tar`` (members ``{key}.jpg|png|webp|...``, ``{key}.txt``, ``{key}.json``)
beside ``NNNNN.parquet`` (one row per attempted URL; ``status == "success"`` rows are in the tar).
The tar is read by ``tasks.shard_format`` (in memory, never extracted; unsafe members refused and
reported; a truncated tar yields the members before the damage plus a recorded error). Keys present on one side only
(tar vs parquet) are reported so the caller can quarantine them.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

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
    """Tar shards of an img2dataset output folder, sorted by name."""
    if not os.path.isdir(input_dir):
        raise FileNotFoundError(f"input folder {input_dir!r} does not exist")
    tars = sorted(os.path.join(input_dir, f) for f in os.listdir(input_dir) if f.endswith(".tar"))
    if not tars:
        raise FileNotFoundError(f"no .tar shards in {input_dir!r} (expected img2dataset output)")
    return tars


def shard_name(tar_path: str) -> str:
    return os.path.basename(tar_path)[: -len(".tar")]


def read_tar(tar_path: str) -> tuple[dict[str, Entry], list[tuple[str, str]], list[str]]:
    """Every member of a shard grouped by key (``tasks.shard_format.read_tar``)."""
    files, refused, errors = sf.read_tar(tar_path)
    return {k: Entry(k, f) for k, f in files.items()}, refused, errors


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
