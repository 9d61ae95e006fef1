"""``notion_stats`` over N generated notion rows (default 100M) on DuckDB with T threads.

    .venv/bin/python bench/notion_stats_sql.py [--rows 100000000] [--threads 2] [--dir /tmp/nsbench]

Writes a lake with one ``notions`` partition of ``rows`` rows (key, notion, kind, caption_version;
50k distinct notions with a Zipf-like skew, ~8 rows per key) and a ``notion_runs`` row, then
times ``SELECT * FROM notion_stats`` through the warehouse views (best of 3).
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401
import duckdb  # noqa: E402

from warehouse import db  # noqa: E402
from warehouse import lake as lk  # noqa: E402

KINDS = ["notion", "color", "shape", "count", "spatial", "texture", "nonspatial", "style"]


def generate(lake: str, rows: int, notions: int = 50_000) -> None:
    d = lk.table_dir(lake, "notions")
    os.makedirs(d, exist_ok=True)
    con = duckdb.connect(config={"threads": os.cpu_count() or 2})
    con.execute(f"""
        COPY (SELECT 'k' || (i // 8)::VARCHAR AS key,
                     'n' || (floor(pow(random(), 3) * {notions}))::BIGINT::VARCHAR AS notion,
                     ['{"','".join(KINDS)}'][1 + (i % 8)::INT] AS kind,
                     'alt-bench' AS caption_version
              FROM range({rows}) t(i))
        TO '{d}/bench.parquet' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)""")
    lk.write_partition(lake, "notion_runs", "bench", [{"part": "bench", "n_captions": rows // 8}])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/nsbench")
    a = ap.parse_args()
    lake = os.path.join(a.dir, f"lake-{a.rows}")
    if not lk.partitions(lake, "notions"):
        t = time.perf_counter()
        generate(lake, a.rows)
        print(f"generated {a.rows:,} rows in {time.perf_counter() - t:.1f}s")
    con = db.connect(lake)
    con.execute(f"SET threads = {a.threads}")
    times = []
    for _ in range(3):
        t = time.perf_counter()
        n_groups, total = con.execute("SELECT count(*), sum(n) FROM (SELECT * FROM notion_stats)").fetchone()
        times.append(time.perf_counter() - t)
    assert total == a.rows, (total, a.rows)
    print(f"# {platform.processor() or platform.machine()}, duckdb {duckdb.__version__}, threads={a.threads}")
    print(f"notion_stats over {a.rows:,} rows -> {n_groups:,} (notion, kind) groups: "
          f"best {min(times):.2f}s, runs {', '.join(f'{x:.2f}' for x in times)}")


if __name__ == "__main__":
    main()
