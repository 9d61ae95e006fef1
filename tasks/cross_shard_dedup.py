"""Cross-shard dedup over the whole lake, after every shard is curated.

Each shard dedups within itself (the ``dedup`` stage, key order); this pass keeps the smallest
``shard/key`` of every duplicate group across shards and relabels the others ``rejected / dedup
/ "duplicate across shards of S/K"``. The candidates stay in DuckDB (tasks/filters/dedup.py:
``cross_shard_hits``); only the shards whose rows change are rewritten, with their ``shard_runs``
counts.
"""
from __future__ import annotations

import tempfile

import pyarrow as pa

from tasks.curate import shard_done
from tasks.curate_rows import count_statuses
from tasks.filters.dedup import cross_shard_hits
from warehouse import db
from warehouse import lake as lk
from warehouse.schema import SCHEMAS

CROSS = "duplicate across shards of "
_RESTORED = {"status": "passed", "stage": None, "reason": None, "score": None, "dup_of": None}
_CHANGED = ("status", "stage", "score", "dup_of", "reason")


def cross_shard_dedup(lake: str, phash_distance: int, memory_limit: str = "1GB") -> int:
    """Keep the smallest (shard, key) of each duplicate group across the lake; returns #changed.

    Deterministic over the lake's current partitions and idempotent: rows it marked stay
    candidates, and a marked row whose original vanished is restored to passed. Only rows that
    passed in their shard are re-labelled (a later filter's rejection is kept as the truth).
    The candidates stay in DuckDB (``memory_limit``, spilling to a temporary folder); Python sees
    only the rows that share or neighbour a pHash (``cross_shard_hits``).
    """
    con = db.connect(lake)
    changes: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="dedup-") as spill:
        con.execute("SET temp_directory = ?", [spill])
        con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("""CREATE TEMP TABLE cand AS
            SELECT row_number() OVER (ORDER BY shard, key) AS ord, shard, key, shard || '/' || key AS ident,
                   sha256, ('0x' || phash)::UBIGINT AS ph, status, coalesce(stage = 'dedup', false) AS marked,
                   stage, score, dup_of, reason
            FROM pairs
            WHERE coalesce(phash, '') <> '' AND NOT (coalesce(stage = 'dedup', false)
                                                   AND NOT starts_with(coalesce(reason, ''), ?))""", [CROSS])
        seen = set()
        for r, hit in cross_shard_hits(con, phash_distance):
            seen.add(r["ord"])
            if hit and hit[1].split("/", 1)[0] != r["shard"] and (r["status"] == "passed" or r["marked"]):
                kind, other, dist = hit
                new = {"status": "rejected", "stage": "dedup", "score": float(dist), "dup_of": other,
                       "reason": CROSS + other + (" (exact)" if kind == "exact" else f" (pHash distance {dist})")}
                if any(r[k] != v for k, v in new.items()):
                    changes.setdefault(r["shard"], {})[r["key"]] = new
            elif r["marked"]:
                changes.setdefault(r["shard"], {})[r["key"]] = _RESTORED
        for ord_, shard, key in con.execute("SELECT ord, shard, key FROM cand WHERE marked").fetchall():
            if ord_ not in seen:  # marked earlier, no match now: its original vanished
                changes.setdefault(shard, {})[key] = _RESTORED
        for shard, ch in sorted(changes.items()):
            _rewrite_shard(con, lake, shard, ch)
    con.close()
    return sum(len(v) for v in changes.values())


def _rewrite_shard(con, lake: str, shard: str, ch: dict[str, dict]) -> None:
    """Apply ``{key: new values}`` to one shard's pairs partition (in DuckDB, rows kept in
    order) and recount its ``shard_runs`` row."""
    schema = SCHEMAS["pairs"]
    changes = pa.Table.from_pylist([{"key": k, **{c: v.get(c) for c in _CHANGED}} for k, v in ch.items()],
                                   schema=pa.schema([schema.field("key"), *(schema.field(c) for c in _CHANGED)]))
    part = lk.read_table(lake, "pairs", [shard])
    con.register("part_in", part.append_column("_i", pa.array(range(part.num_rows), pa.int64())))
    con.register("part_changes", changes)
    out = con.sql(f"""
        SELECT p.* REPLACE ({", ".join(f"CASE WHEN c.key IS NULL THEN p.{c} ELSE c.{c} END AS {c}" for c in _CHANGED)})
        FROM part_in p LEFT JOIN part_changes c USING (key)
        ORDER BY p._i""").to_arrow_table().drop(["_i"])
    con.unregister("part_in")
    con.unregister("part_changes")
    lk.write_partition(lake, "pairs", shard, out)
    if shard_done(lake, shard):
        counts = count_statuses(out["status"].to_pylist())
        runs = [{**run, **counts} for run in lk.read_table(lake, "shard_runs", [shard]).to_pylist()]
        if runs:
            lk.write_partition(lake, "shard_runs", shard, runs)
