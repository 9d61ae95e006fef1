"""Exact and perceptual deduplication.

Exact: sha256 of the decoded RGB pixels plus size (re-encoded copies of one image collide;
byte hashes would miss them). Perceptual: 64-bit pHash (imagehash); two images are near
duplicates when their Hamming distance is <= ``phash_distance``. Lookup uses multi-index
hashing: split the 64 bits into d+1 chunks; by pigeonhole two hashes within distance d agree
exactly on at least one chunk, so only bucket-mates are compared (no all-pairs scan).
The first image seen in a deterministic order is kept; later ones point to it.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

import imagehash
from PIL import Image

from djepa_t2i.config import Config, Dedup
from tasks.stages import Batch, FilterStage, Result


def pixel_sha256(im: Image.Image) -> str:
    h = hashlib.sha256(f"{im.width}x{im.height}:".encode())
    h.update(im.tobytes())
    return h.hexdigest()


def phash(im: Image.Image) -> str:
    return str(imagehash.phash(im))  # 16 hex digits


class PhashIndex:
    """Kept hashes with near-duplicate lookup within Hamming distance ``d``."""

    def __init__(self, d: int):
        self.d = d
        n = d + 1
        self.cuts = [(i * 64 // n, (i + 1) * 64 // n) for i in range(n)]
        self.buckets: list[dict[int, list[tuple[int, str]]]] = [defaultdict(list) for _ in self.cuts]
        self.exact: dict[str, str] = {}

    def _chunks(self, v: int):
        for i, (a, b) in enumerate(self.cuts):
            yield i, (v >> a) & ((1 << (b - a)) - 1)

    def query(self, sha: str, ph: str) -> tuple[str, str, int] | None:
        """(kind, kept id, distance) of the first match, or None."""
        if sha in self.exact:
            return "exact", self.exact[sha], 0
        v = int(ph, 16)
        best = None
        for i, c in self._chunks(v):
            for kv, ident in self.buckets[i].get(c, ()):
                dist = bin(v ^ kv).count("1")
                if dist <= self.d and (best is None or (dist, ident) < (best[2], best[1])):
                    best = ("near", ident, dist)
        return best

    def add(self, sha: str, ph: str, ident: str) -> None:
        self.exact.setdefault(sha, ident)
        v = int(ph, 16)
        for i, c in self._chunks(v):
            self.buckets[i][c].append((v, ident))


class DedupFilter(FilterStage):
    """Stateful within one ordered stream (a shard, in key order): the first image seen is kept."""
    name, backend = "dedup", "sha256+phash"
    writes = ("sha256", "phash", "dup_of")

    def __init__(self, cfg: Dedup):
        self.cfg = cfg
        self.start_shard("")

    def start_shard(self, shard: str) -> None:
        """Forget the kept hashes: within-shard dedup; tasks/cross_shard_dedup.py does the lake."""
        self.index = PhashIndex(self.cfg.phash_distance)

    def check(self, sha: str, ph: str, ident: str) -> Result:
        d = {"sha256": sha, "phash": ph}
        hit = self.index.query(sha, ph) if self.cfg.enabled else None
        if hit is None:
            self.index.add(sha, ph, ident)
            return Result(0.0, True, None, d)
        kind, other, dist = hit
        d.update(duplicate_of=other, kind=kind, distance=dist)
        why = (f"exact duplicate of {other}" if kind == "exact"
               else f"near duplicate of {other} (pHash distance {dist} <= {self.index.d})")
        return Result(float(dist), False, why, d)

    def process(self, batch: Batch) -> list[Result]:
        """Hash every candidate (``sha256``/``phash`` kept on its row, for cross-shard dedup); a
        duplicate's ``dup_of`` names the kept ``shard/key``."""
        out = []
        for cd in batch.cands:
            sha, ph = pixel_sha256(cd.image), phash(cd.image)
            cd.row.update(sha256=sha, phash=ph)
            r = self.check(sha, ph, f"{batch.shard}/{cd.key}")
            if not r.passed:
                cd.row["dup_of"] = r.details["duplicate_of"]
            out.append(r)
        return out


def build(cfg: Config) -> DedupFilter:
    return DedupFilter(cfg.curate.dedup)


# -- cross-shard dedup over the whole lake, in DuckDB ------------------------------------------
# Same decisions as running DedupFilter's index over every pair in (shard, key) order, but the
# index never holds the lake: DuckDB finds the few pHash values that have a neighbour within d
# (it spills to disk past its memory limit), and Python walks only the rows with such a value,
# keeping at most one kept row per pHash value (a later row with the same value is its
# neighbour at distance 0). Memory grows with the number of duplicates, not with the lake.

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
