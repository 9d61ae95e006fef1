"""Bytes per pair per lake table: what a lake costs on disk per input pair, for scaling plans.

    python bench/lake_bytes.py LAKE [--shards DIR]

Sums the Parquet partitions of every table (the empty ``_schema.parquet`` left out), counts its
rows, and divides by the pairs the lake holds (rows of ``pairs``: one per input pair). With
``--shards`` (a ``t2i build-shards`` output) the training tars and their index are counted too.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401
import pyarrow.parquet as pq  # noqa: E402

from warehouse import lake as lk  # noqa: E402
from warehouse.schema import SCHEMAS  # noqa: E402


def table_sizes(lake: str, scratch: str) -> dict[str, tuple[int, int, int, int]]:
    """table -> (partitions, rows, bytes, bytes as one partition). The last is the same rows
    written by the lake's own writer into one file: the per-row cost once a partition holds
    img2dataset's 10,000 pairs instead of a small sample's 64 (Parquet's per-file footer and
    per-column metadata, ~10 KB, no longer divided by a few rows)."""
    out = {}
    for table in SCHEMAS:
        files = [f for f in glob.glob(os.path.join(lk.table_dir(lake, table), "*.parquet"))
                 if os.path.basename(f) != "_schema.parquet"]
        if files:
            one = lk.write_partition(scratch, table, "all", lk.read_table(lake, table))
            out[table] = (len(files), sum(pq.ParquetFile(f).metadata.num_rows for f in files),
                          sum(os.path.getsize(f) for f in files), os.path.getsize(one))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("lake")
    ap.add_argument("--shards", default=None, help="build-shards output folder to count as well")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        sizes = table_sizes(a.lake, scratch)
    pairs = sizes.get("pairs", (0, 0, 0))[1]
    if not pairs:
        print(f"{a.lake}: no pairs rows", file=sys.stderr)
        return 2
    print(f"{a.lake}: {pairs:,} pairs")
    print("| table | partitions | rows | rows per pair | bytes | bytes per pair | bytes per pair, one partition |\n"
          "|---|---|---|---|---|---|---|")
    total = total_one = 0
    for t, (parts, rows, b, one) in sorted(sizes.items(), key=lambda kv: -kv[1][2]):
        total, total_one = total + b, total_one + one
        print(f"| {t} | {parts} | {rows:,} | {rows / pairs:.2f} | {b:,} | {b / pairs:.0f} | {one / pairs:.0f} |")
    print(f"| all tables | | | | {total:,} | {total / pairs:.0f} | {total_one / pairs:.0f} |")
    if a.shards:
        for label, pattern in (("training tars", "*.tar"), ("shard index", "*.parquet")):
            fs = glob.glob(os.path.join(a.shards, "**", pattern), recursive=True)
            b = sum(os.path.getsize(f) for f in fs)
            print(f"| {label} ({len(fs)} files) | | | | {b:,} | {b / pairs:.0f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
