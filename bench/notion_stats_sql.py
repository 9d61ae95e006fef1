"""``notion_stats`` over N generated notion rows (default 100M) against DuckDB's plain GROUP BY.

    .venv/bin/python bench/notion_stats_sql.py [--rows 100000000] [--threads 2] [--dir /tmp/nsbench]

Writes a lake with one ``notions`` partition of ``rows`` rows (key, notion, kind, caption_version;
50k distinct notions with a Zipf-like skew, ~8 rows per key) and a ``notion_runs`` row, then
times, alternating so both see the same machine load, ``SELECT * FROM notion_stats`` through the
warehouse views and the plain ``SELECT notion, kind, count(*) FROM read_parquet(<the partition>)
GROUP BY ALL`` on one connection; prints both (best and median of ``--repeats``) and their ratio.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
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


def timed(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[float, tuple]:
    t = time.perf_counter()
    row = con.execute(f"SELECT count(*), sum(n) FROM ({sql})").fetchone()
    return time.perf_counter() - t, row


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/nsbench")
    a = ap.parse_args()
    lake = os.path.join(a.dir, f"lake-{a.rows}")
    if not lk.partitions(lake, "notions"):
        t = time.perf_counter()
        generate(lake, a.rows)
        print(f"generated {a.rows:,} rows in {time.perf_counter() - t:.1f}s")
    con = db.connect(lake)
    con.execute(f"SET threads = {a.threads}")
    glob = f"{lk.table_dir(lake, 'notions')}/bench.parquet"
    queries = {"notion_stats view": "SELECT * FROM notion_stats",
               "plain GROUP BY": f"SELECT notion, kind, count(*) AS n FROM read_parquet('{glob}') GROUP BY ALL"}
    times: dict[str, list[float]] = {k: [] for k in queries}
    for _ in range(a.repeats):
        for name, sql in queries.items():
            dt_, (n_groups, total) = timed(con, sql)
            assert total == a.rows, (name, total, a.rows)
            times[name].append(dt_)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, duckdb {duckdb.__version__}, "
          f"threads={a.threads}, load average {os.getloadavg()[0]:.1f}")
    for name, ts in times.items():
        print(f"{name}: {a.rows:,} rows -> {n_groups:,} (notion, kind) groups: best {min(ts):.2f}s, "
              f"median {statistics.median(ts):.2f}s, runs {', '.join(f'{x:.2f}' for x in ts)}")
    view, plain = times["notion_stats view"], times["plain GROUP BY"]
    print(f"ratio view/plain: best {min(view) / min(plain):.2f}, median "
          f"{statistics.median(view) / statistics.median(plain):.2f}")


if __name__ == "__main__":
    main()
