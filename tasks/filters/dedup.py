"""Exact and perceptual deduplication.

Exact: sha256 of the decoded RGB pixels plus size (re-encoded copies of one image collide;
byte hashes would miss them). Perceptual: 64-bit pHash (imagehash); two images are near
duplicates when their Hamming distance is <= ``phash_distance``. Lookup uses multi-index
hashing: split the 64 bits into d+1 chunks; by pigeonhole two hashes within distance d agree
exactly on at least one chunk, so only bucket-mates are compared (no all-pairs scan).
The first image seen in a deterministic order is kept; later ones point to it. This stage dedups
within a shard; tasks/cross_shard_dedup.py makes the same decisions across the lake.
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
    # pHash looks at 32x32; the exact hash compares the pixels as decoded, at >= this long side
    side = 256

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
