"""A quality tier of the samples index, written as its own index file (the SFT phase's data).

SimpleAR (§3.2, §4) fine-tunes on a high-quality subset after pre-training. Here the subset is the
saved query ``warehouse/queries/quality_tier.sql`` (short side, aesthetic score, caption source,
a notion) over the lake's ``samples``; its rows, with the ``samples`` schema, go to one Parquet
file that the trainer reads instead of the whole index (``train.samples_index``). The tars are
not copied: the rows keep their byte ranges.

    t2i sft-tier --lake runs/demo/lake --out runs/demo/sft_tier.parquet --min-side 32 --notion color:red
"""
from __future__ import annotations

import argparse
import os

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from djepa_t2i.config import ConfigError, default, require_writable
from warehouse import db
from warehouse.files import parquet_bytes, write_atomic
from warehouse.lake import require_lake
from warehouse.schema import SCHEMAS


def tier_rows(lake: str, min_side: int | None = None, min_aesthetic: float | None = None,
              caption_version: str | None = None, notion: str | None = None,
              min_objects: int | None = None) -> pa.Table:
    """The quality tier as an Arrow table with the ``samples`` schema."""
    cols, rows = db.query(lake, db.saved_query("quality_tier"),
                          [min_side, min_aesthetic, caption_version, notion, min_objects])
    return pa.Table.from_pylist([dict(zip(cols, r)) for r in rows], schema=SCHEMAS["samples"])


def write_tier(lake: str, out: str, **filters) -> int:
    """Write the tier to ``out`` (atomically); returns its row count. An empty tier is refused:
    a training phase on no data would fail later, far from the filter that emptied it."""
    table = tier_rows(lake, **filters)
    if table.num_rows == 0:
        raise ConfigError(f"the quality tier of {lake} is empty with {filters}; loosen a filter")
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    write_atomic(fsspec.filesystem("file"), out, parquet_bytes(table))
    return table.num_rows


def read_tier(path: str) -> pa.Table:
    """A tier file, checked to hold the ``samples`` columns (one clear line if not)."""
    if not os.path.isfile(path):
        raise ConfigError(f"train.samples_index={path!r}: no such file (write it with `t2i sft-tier`)")
    t = pq.read_table(path)
    missing = [f.name for f in SCHEMAS["samples"] if f.name not in t.column_names]
    if missing:
        raise ConfigError(f"train.samples_index={path!r}: not a samples index (missing {', '.join(missing)})")
    return t.select([f.name for f in SCHEMAS["samples"]]).cast(SCHEMAS["samples"])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=default("lake"), help="lake directory")
    p.add_argument("--out", required=True, help="the tier's index file (.parquet)")
    p.add_argument("--min-side", type=int, default=None, help="shortest side in pixels")
    p.add_argument("--min-aesthetic", type=float, default=None, help="aesthetic filter score")
    p.add_argument("--caption-version", default=None, help="caption source, e.g. internvl")
    p.add_argument("--notion", default=None, help="a notion the sample must carry, kind:value")
    p.add_argument("--min-objects", type=int, default=None,
                   help="objects the caption names (its count notion, else its shape notions)")


def run(args) -> int:
    require_lake("lake", args.lake)
    require_writable("--out", os.path.dirname(os.path.abspath(args.out)))
    n = write_tier(args.lake, args.out, min_side=args.min_side, min_aesthetic=args.min_aesthetic,
                   caption_version=args.caption_version, notion=args.notion,
                   min_objects=args.min_objects)
    print(f"quality tier: {n} samples -> {args.out}")
    return 0
