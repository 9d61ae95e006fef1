"""img2dataset's own metadata, kept: its parquet columns, its failed rows, its ``_stats.json``.

img2dataset writes, per shard, a parquet with one row per *attempted* URL (``status`` success,
failed_to_download or failed_to_resize, with ``error_message``), the success rows' files in the
tar, and ``NNNNN_stats.json`` (``count`` = rows, ``successes``, ``failed_to_download``,
``failed_to_resize``). LAION's metadata columns ride along when img2dataset is run with
``save_additional_columns`` (``similarity`` = CLIP image-text cosine, ``punsafe`` = P(unsafe),
``pwatermark`` = P(watermark), ``NSFW``/``LANGUAGE``/``LICENSE`` labels).

``pair_columns`` maps a row (parquet row, else the pair's json) to the typed, nullable ``pairs``
columns (``SOURCE_NAMES``); img2dataset's ``status``/``sha256`` become ``source_status``/``source_sha256``
(``pairs.status`` is the curation outcome, ``pairs.sha256`` the decoded pixels' hash), and its
``original_width``/``original_height`` (the downloaded file, before img2dataset resized it) stay
beside ``orig_width``/``orig_height`` (the image in the tar, before EXIF orientation).
Failed rows become ``pairs`` rows with status ``source_failed`` (stage ``download``/``resize``,
img2dataset's error message as the reason), so ``in`` counts every attempted URL and the
``funnel`` view reconciles exactly with ``_stats.json``.
"""
from __future__ import annotations

import json
import math
import os

import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.schema import SCHEMAS

SOURCE_FAILED = "source_failed"
FAILED_STAGE = {"failed_to_download": "download", "failed_to_resize": "resize"}

# pairs column -> the img2dataset/LAION column names it is read from (case-insensitive); the
# types are the pairs schema's (warehouse/schema.py)
SOURCE_NAMES: dict[str, tuple[str, ...]] = {
    "similarity": ("similarity",), "punsafe": ("punsafe",), "pwatermark": ("pwatermark",),
    "nsfw_label": ("nsfw",), "language": ("language",), "license": ("license",),
    "original_width": ("original_width",), "original_height": ("original_height",),
    "source_status": ("status",), "error_message": ("error_message",), "source_sha256": ("sha256",),
}


def _typed(value, typ: pa.DataType):
    """``value`` as ``typ``, or None when missing or unreadable (NaN counts as missing)."""
    if value is None:
        return None
    try:
        if pa.types.is_floating(typ):
            v = float(value)
            return None if math.isnan(v) else v
        if pa.types.is_integer(typ):
            return int(value)
    except (TypeError, ValueError):
        return None
    return str(value)


def pair_columns(row: dict | None) -> dict:
    """The typed ``SOURCE_NAMES`` columns of one img2dataset row (every column present, None if absent)."""
    low = {str(k).lower(): v for k, v in (row or {}).items()}
    schema = SCHEMAS["pairs"]
    return {col: _typed(next((low[n] for n in names if n in low), None), schema.field(col).type)
            for col, names in SOURCE_NAMES.items()}


def read_failed_rows(parquet_path: str) -> list[dict]:
    """img2dataset's rows whose status is not success (URLs that never reached the tar)."""
    if not os.path.exists(parquet_path):
        return []
    try:
        t = pq.read_table(parquet_path)
    except Exception:  # noqa: BLE001  (an unreadable parquet is reported by tasks.shards)
        return []
    if "status" not in t.column_names or "key" not in t.column_names:
        return []
    return [r for r in t.to_pylist() if r.get("status") not in (None, "success") and r.get("key") is not None]


def failed_pair(row: dict) -> dict:
    """The ``pairs`` fields of one failed img2dataset row."""
    status = str(row.get("status"))
    return {"key": str(row["key"]), "status": SOURCE_FAILED, "stage": FAILED_STAGE.get(status, status),
            "reason": f"img2dataset {status}: {row.get('error_message') or 'no error message'}",
            "caption": row.get("caption"), "url": row.get("url"), **pair_columns(row)}


def read_stats(tar_path: str) -> dict | None:
    """img2dataset's ``NNNNN_stats.json`` beside the tar, or None when absent or unreadable."""
    p = tar_path[: -len(".tar")] + "_stats.json"
    try:
        with open(p) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return d if isinstance(d, dict) else None


def stats_mismatch(stats: dict | None, n_rows: int, n_failed: int) -> str | None:
    """Why the shard's rows disagree with ``_stats.json``, or None when they reconcile."""
    if not stats:
        return None
    want_failed = int(stats.get("failed_to_download", 0)) + int(stats.get("failed_to_resize", 0))
    if int(stats.get("count", -1)) != n_rows or want_failed != n_failed:
        return (f"img2dataset _stats.json counts {stats.get('count')} rows ({want_failed} failed); "
                f"the shard has {n_rows} ({n_failed} failed)")
    return None
