"""Cross-shard dedup (``tasks.cross_shard_dedup``) over N generated pairs: time and peak memory.

    .venv/bin/python bench/cross_shard_dedup.py [--rows 10000000] [--shards 100] [--dir /tmp/ddbench]

Writes a lake of ``rows`` passed pairs in ``shards`` partitions: random 64-bit pHashes, of which
1% are exact copies of an earlier pair in another shard (same sha256 and pHash) and 1% near
copies (1 or 2 bits flipped). Then runs the dedup at pHash distance 4 in a child process and
prints its wall time, its CPU seconds (user + system, all DuckDB threads: the figure that does not
depend on the machine's load), the child's peak resident memory, the peak bytes DuckDB spilled
under its temporary folder (the child's ``TMPDIR``, polled while it runs) and how many pairs it
relabelled.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from resource import RUSAGE_CHILDREN

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401
import duckdb  # noqa: E402

from measure import SpillWatch, cpu_seconds, peak_rss_mib  # noqa: E402
from warehouse import lake as lk  # noqa: E402


def generate(lake: str, rows: int, shards: int) -> None:
    """Pairs partitions written by DuckDB (the views fill the columns it leaves out with NULL)."""
    d = lk.table_dir(lake, "pairs")
    os.makedirs(d, exist_ok=True)
    per = rows // shards
    assert per % 100 == 0, "rows / shards must be a multiple of 100"
    con = duckdb.connect()
    # i -> a random pHash; 1% copy an unmodified pair (i % 100 = 50) one shard earlier exactly, 1% with
    # 1-2 bits flipped
    con.execute(f"""CREATE TABLE h AS
        SELECT i, hash(i) AS ph, hash(i) AS sha FROM range({rows}) t(i)""")
    con.execute(f"""CREATE TABLE p AS
        SELECT t.i, CASE WHEN t.i % 100 = 0 AND o.i IS NOT NULL THEN o.ph
                         WHEN t.i % 100 = 1 AND o.i IS NOT NULL
                             THEN xor(o.ph, (1::UBIGINT << (t.i % 61)) | (1::UBIGINT << (t.i % 7)))
                         ELSE t.ph END AS ph,
                    CASE WHEN t.i % 100 = 0 AND o.i IS NOT NULL THEN o.sha ELSE t.sha END AS sha
        FROM h t LEFT JOIN h o ON o.i = t.i - {per} + 50 - t.i % 100 AND t.i >= {per}""")
    for s in range(shards):
        con.execute(f"""COPY (SELECT printf('k%09d', i) AS key, printf('%05d', {s}) AS shard, 'passed' AS status,
                                     printf('%016x', ph) AS phash, printf('%016x', sha) AS sha256
                              FROM p WHERE i >= {s * per} AND i < {(s + 1) * per} ORDER BY i)
                        TO '{d}/{s:05d}.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    con.close()
    lk.write_partition(lake, "notion_runs", "bench", [{"part": "bench"}])  # lays out the warehouse


def dedup_child(lake: str, memory_limit: str, q) -> None:
    from tasks.cross_shard_dedup import cross_shard_dedup
    t = time.perf_counter()
    n = cross_shard_dedup(lake, 4, memory_limit)
    q.put((n, time.perf_counter() - t))


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--dir", default="/tmp/ddbench")
    a = ap.parse_args()
    lake = os.path.join(a.dir, f"lake-{a.rows}-{a.shards}")
    if not lk.partitions(lake, "pairs"):
        t = time.perf_counter()
        generate(lake, a.rows, a.shards)
        print(f"generated {a.rows:,} pairs in {a.shards} shards in {time.perf_counter() - t:.1f}s")
    spill = os.path.join(a.dir, "spill")
    os.makedirs(spill, exist_ok=True)
    os.environ["TMPDIR"] = spill  # the child's tempfile.TemporaryDirectory: DuckDB's temp_directory
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    c0 = cpu_seconds(RUSAGE_CHILDREN)
    with SpillWatch(spill) as watch:
        p = ctx.Process(target=dedup_child, args=(lake, a.memory_limit, q))
        p.start()
        n, seconds = q.get()
        p.join()
    cpu = cpu_seconds(RUSAGE_CHILDREN) - c0
    peak = peak_rss_mib(RUSAGE_CHILDREN)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, duckdb {duckdb.__version__}, "
          f"memory_limit={a.memory_limit}, load average {os.getloadavg()[0]:.1f}")
    print(f"cross_shard_dedup over {a.rows:,} pairs / {a.shards} shards: {seconds:.1f}s, "
          f"relabelled {n:,}, peak RSS {peak:.0f} MiB, CPU {cpu:.1f}s ({cpu / a.rows * 1e6:.1f} CPU us/pair), "
          f"peak spill {watch.peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
