"""Warehouse views at scale: ``notion_stats`` or ``funnel`` over N generated rows against DuckDB's
plain GROUP BY on the same files, with a memory limit and the spill measured.

    python bench/notion_stats_sql.py [--query notion_stats|funnel] [--rows 100000000]
        [--threads 2] [--memory-limit 1GB] [--dir /tmp/nsbench]

``notion_stats`` reads one ``notions`` partition (key, notion, kind, caption_version; ``--notions``
distinct notions, default 50k, with a Zipf-like skew, ~8 rows per key, 8 x notions (notion, kind)
groups: more notions, a bigger hash table, and past ``--memory-limit`` a spill) and a
``notion_runs`` row; ``funnel`` reads ``pairs`` partitions of at most 10M rows each (status/stage
in the shares of a curated mini-LAION lake, a reason and a score). Alternating so both see the
same machine load, it times ``SELECT * FROM <view>`` through the warehouse views (all partitions
+ ``_schema.parquet``, ``union_by_name``) and the plain ``GROUP BY ALL`` over ``read_parquet`` on
one connection with DuckDB's ``memory_limit`` and ``temp_directory`` set. Per query: wall
seconds, process CPU seconds (all DuckDB threads; this figure does not depend on what else the
machine runs) and the peak bytes under ``temp_directory`` while it ran (the spill). Prints best
and median of ``--repeats`` and the view/plain ratios.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401
import duckdb  # noqa: E402

from measure import SpillWatch, cpu_seconds, peak_rss_mib, timed_cpu  # noqa: E402
from warehouse import db  # noqa: E402
from warehouse import lake as lk  # noqa: E402

KINDS = ["notion", "color", "shape", "count", "spatial", "texture", "nonspatial", "style"]
# (status, stage, per mille): the funnel of a curated 1,024-pair mini-LAION lake, rounded
FUNNEL_MIX = [("quarantined", "decode", 70), ("rejected", "resolution", 80), ("rejected", "dedup", 50),
              ("rejected", "aesthetic", 25), ("rejected", "ocr", 60), ("rejected", "nsfw", 10),
              ("rejected", "face", 5), ("source_failed", "", 25), ("passed", "", 675)]
PER_FILE = 10_000_000


def generate_notions(lake: str, rows: int, notions: int = 50_000) -> None:
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


def _mix_case(col: int) -> str:
    """SQL CASE over ``u`` (0-999) picking FUNNEL_MIX's ``col`` (0 status, 1 stage)."""
    out, edge = [], 0
    for row in FUNNEL_MIX:
        edge += row[2]
        out.append(f"WHEN u < {edge} THEN '{row[col]}'")
    return f"CASE {' '.join(out)} END"


def generate_pairs(lake: str, rows: int) -> None:
    """``pairs`` partitions of at most PER_FILE rows: the funnel's columns plus a key, shard, a
    reason with numbers in it (as the filters write them) and a score."""
    assert sum(r[2] for r in FUNNEL_MIX) == 1000
    d = lk.table_dir(lake, "pairs")
    os.makedirs(d, exist_ok=True)
    con = duckdb.connect(config={"threads": os.cpu_count() or 2})
    for f, lo in enumerate(range(0, rows, PER_FILE)):
        hi = min(rows, lo + PER_FILE)
        con.execute(f"""
            COPY (SELECT printf('%09d', i) AS key, printf('%05d', i // 10000) AS shard, status,
                         nullif(stage, '') AS stage,
                         CASE WHEN status = 'passed' THEN NULL
                              ELSE stage || ': score ' || (u % 97)::VARCHAR || ' > threshold' END AS reason,
                         (u % 97) / 97.0 AS score
                  FROM (SELECT i, u, {_mix_case(0)} AS status, {_mix_case(1)} AS stage
                        FROM (SELECT i, (hash(i) % 1000)::INT AS u FROM range({lo}, {hi}) t(i))))
            TO '{d}/bench{f:04d}.parquet' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)""")
    con.close()
    lk.write_partition(lake, "notion_runs", "bench", [{"part": "bench"}])  # lays out the warehouse


QUERIES = {
    "notion_stats": ("notions", generate_notions, "SELECT * FROM notion_stats",
                     "SELECT notion, kind, count(*) AS n FROM read_parquet('{files}') GROUP BY ALL"),
    "funnel": ("pairs", generate_pairs, "SELECT * FROM funnel",
               "SELECT status, coalesce(stage, '') AS stage, count(*) AS n FROM read_parquet('{files}') GROUP BY ALL"),
}


def run_once(con: duckdb.DuckDBPyConnection, sql: str, spill: str) -> tuple[float, float, int, tuple]:
    """(wall s, process CPU s, peak spill bytes, (groups, sum of n)) of one query."""
    with SpillWatch(spill) as w:
        row, wall, cpu = timed_cpu(lambda: con.execute(f"SELECT count(*), sum(n) FROM ({sql})").fetchone())
    return wall, cpu, w.peak, row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--query", choices=sorted(QUERIES), default="notion_stats")
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--notions", type=int, default=50_000,
                    help="distinct notions (notion_stats): the groups, x8 kinds, that DuckDB must hold")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit for the timed queries")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default="/tmp/nsbench")
    a = ap.parse_args()
    table, generate, view_sql, plain_sql = QUERIES[a.query]
    lake = os.path.join(a.dir, f"lake-{table}-{a.rows}" + (f"-{a.notions}" if a.query == "notion_stats" else ""))
    if not lk.partitions(lake, table):
        args = (lake, a.rows, a.notions) if a.query == "notion_stats" else (lake, a.rows)
        (_, wall, cpu) = timed_cpu(generate, *args)
        print(f"generated {a.rows:,} {table} rows in {wall:.1f}s ({cpu:.1f} CPU s)")
    files = sorted(f for f in glob.glob(f"{lk.table_dir(lake, table)}/bench*.parquet"))
    on_disk = sum(os.path.getsize(f) for f in files)
    spill = os.path.join(a.dir, "spill")
    con = db.connect(lake)
    con.execute(f"SET threads = {a.threads}")
    con.execute("SET memory_limit = ?", [a.memory_limit])
    con.execute("SET temp_directory = ?", [spill])
    file_list = "', '".join(files)
    queries = {f"{a.query} view": view_sql, "plain GROUP BY": plain_sql.format(files=file_list).replace(
        "read_parquet('", "read_parquet(['").replace("') GROUP", "']) GROUP")}
    res: dict[str, list[tuple[float, float, int]]] = {k: [] for k in queries}
    c0 = cpu_seconds()
    for _ in range(a.repeats):
        for name, sql in queries.items():
            wall, cpu, peak, (n_groups, total) = run_once(con, sql, spill)
            assert total == a.rows, (name, total, a.rows)
            res[name].append((wall, cpu, peak))
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, duckdb {duckdb.__version__}, "
          f"threads={a.threads}, memory_limit={a.memory_limit}, load average {os.getloadavg()[0]:.1f}; "
          f"{a.rows:,} rows, {on_disk / 2**20:.0f} MiB of Parquet ({on_disk / a.rows:.2f} B/row)")
    for name, rs in res.items():
        w, c, s = ([r[i] for r in rs] for i in range(3))
        print(f"{name}: {a.rows:,} rows -> {n_groups:,} groups: wall best {min(w):.2f}s median "
              f"{statistics.median(w):.2f}s; CPU best {min(c):.2f}s median {statistics.median(c):.2f}s "
              f"({statistics.median(c) / a.rows * 1e9:.1f} CPU ns/row); peak spill {max(s) / 2**20:.0f} MiB")
    view, plain = res[f"{a.query} view"], res["plain GROUP BY"]
    for i, what in ((0, "wall"), (1, "CPU")):
        print(f"ratio view/plain ({what}): best {min(r[i] for r in view) / min(r[i] for r in plain):.2f}, median "
              f"{statistics.median(r[i] for r in view) / statistics.median(r[i] for r in plain):.2f}")
    print(f"process peak RSS {peak_rss_mib():.0f} MiB; CPU in queries {cpu_seconds() - c0:.1f}s")


if __name__ == "__main__":
    main()
