"""Cross-shard dedup over the whole lake, after every shard is curated.

Each shard dedups within itself (the ``dedup`` stage, key order); this pass keeps the smallest
``shard/key`` of every duplicate group across shards and relabels the others ``rejected / dedup
/ "duplicate across shards of S/K"``; only the shards whose rows change are rewritten, with their
``shard_runs`` counts.

Same decisions as the dedup stage's ``PhashIndex`` (tasks/filters/dedup.py) walked over every pair
in (shard, key) order, but the index never holds the lake: DuckDB finds the few pHash values that
have a neighbour within d (it spills to disk past its memory limit), and Python walks only the rows
with such a value, keeping at most one kept row per pHash value (a later row with the same value is
its neighbour at distance 0). Memory grows with the number of duplicates, not with the lake.
"""
from __future__ import annotations

import tempfile

import pyarrow as pa

from tasks.curate_rows import count_statuses, shard_done
from warehouse import db
from warehouse import lake as lk
from warehouse.schema import SCHEMAS

CROSS = "duplicate across shards of "
_RESTORED = {"status": "passed", "stage": None, "reason": None, "score": None, "dup_of": None}
_CHANGED = ("status", "stage", "score", "dup_of", "reason")


def chunk_keys(d: int) -> list[str]:
    """SQL expressions over ``ph`` (UBIGINT): split 64 bits into d + 2 chunks; two hashes within
    Hamming distance d differ in at most d chunks, so they agree on some pair of chunks, and one
    key per pair of chunks finds every neighbour (pairs, not single chunks: 2 x 64/(d+2) bits per
    key keeps random collisions rare at 10M hashes, where one 13-bit chunk would not)."""
    m = d + 2
    cuts = [(i * 64 // m, (i + 1) * 64 // m) for i in range(m)]
    part = [f"((ph >> {a}) & {(1 << (b - a)) - 1}::UBIGINT)" for a, b in cuts]
    return [f"({part[i]} << {cuts[j][1] - cuts[j][0]}) | {part[j]}"
            for i in range(m) for j in range(i + 1, m)]


def near_pairs(con, d: int) -> None:
    """Temp table ``ph_edges(a, b)``: distinct pHash values a < b within Hamming distance ``d``,
    from temp table ``cand(ph)``."""
    con.execute("CREATE OR REPLACE TEMP TABLE ph_values AS SELECT DISTINCT ph FROM cand")
    con.execute("CREATE OR REPLACE TEMP TABLE ph_edges (a UBIGINT, b UBIGINT)")
    for key in chunk_keys(d):
        con.execute(f"""INSERT INTO ph_edges
            WITH k AS (SELECT ph, {key} AS k FROM ph_values)
            SELECT x.ph, y.ph FROM k x JOIN k y ON x.k = y.k AND x.ph < y.ph
            WHERE bit_count(xor(x.ph, y.ph)) <= {d}""")
    con.execute("CREATE OR REPLACE TEMP TABLE ph_edges AS SELECT DISTINCT a, b FROM ph_edges")


def cross_shard_hits(con, d: int, batch: int = 65_536):
    """Yield ``(row, hit)`` in (shard, key) order for every candidate that has a pHash neighbour
    or shares its pHash; ``hit`` is ``(kind, kept ident, distance)`` of its best kept match, as
    :meth:`PhashIndex.query` returns it, or None. Rows of ``cand`` not yielded have no match.

    ``cand`` is a temp table (ord, ident, shard, sha256, ph, ...) of every candidate."""
    near_pairs(con, d)
    cur = con.execute("""
        WITH nb AS (SELECT a AS ph, b AS other FROM ph_edges UNION ALL SELECT b, a FROM ph_edges),
             adj AS (SELECT ph, list(other) AS nbrs FROM nb GROUP BY ph),
             shared AS (SELECT ph FROM cand GROUP BY ph HAVING count(*) > 1)
        SELECT c.*, coalesce(adj.nbrs, []) AS nbrs FROM cand c LEFT JOIN adj USING (ph)
        WHERE adj.ph IS NOT NULL OR c.ph IN (SELECT ph FROM shared)
        ORDER BY c.ord""")
    cols = [x[0] for x in cur.description]
    kept: dict[int, tuple[str, str]] = {}  # pHash value -> (ident, sha256) of its one kept row
    while rows := cur.fetchmany(batch):
        for values in rows:
            r = dict(zip(cols, values))
            hit = None
            same = kept.get(r["ph"])
            if same is not None and same[1] == r["sha256"]:
                hit = ("exact", same[0], 0)
            else:
                near = [(0, same[0])] if same is not None else []
                near += [(bin(r["ph"] ^ o).count("1"), kept[o][0]) for o in r["nbrs"] if o in kept]
                if near:
                    dist, ident = min(near)
                    hit = ("near", ident, dist)
            if hit is None:
                kept[r["ph"]] = (r["ident"], r["sha256"])
            yield r, hit


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
