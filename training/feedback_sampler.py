"""The feedback sampler (paper section 2.3): decides, sample by sample, what the model sees next.

It walks the ``samples`` index (the trainer gives every rank the whole index: one global stream,
training/data.py; ``rank``/``world_size`` select a disjoint share instead) in a seeded per-epoch
permutation and decides from each sample's attributes alone, before any image byte is read:

* Transformable attributes (resolution, aspect). A target side length ``s`` is drawn from the
  phase's ``trunc_norm(mu, sigma, a, b)`` in kilopixels (``s_px = 1000 * s``: 0.512 -> 512 px).
  "Side length" of a non-square image is its geometric mean side ``sqrt(w * h)``: the sample is
  resized to ``s_px**2`` pixels at its own aspect ratio, each side floored to a multiple of the
  tokenizer stride. A sample is used only if that is a downscale (or identity) on both sides;
  otherwise it is discarded (``upscale``) and the next sample is tried *for the same target*, so
  the accepted sides follow the configured distribution instead of the data's. After
  ``max_retries`` misses the target is redrawn (``target_unreachable``).
* Non-transformable attributes (notions as ``kind:value``, style tags, source). Running
  frequencies are kept over accepted samples; a sample with any attribute above its target
  frequency is discarded with probability 0.5 (``over_target``).

Phase 1 (``fixed_side``; Supp. §7) skips the draw: every sample is resized so its short side is
``fixed_side`` and centre-cropped to a square, and a sample whose short side is smaller is
discarded (``upscale``) as in phase 2. Targets and the resolution schedule come from the live
sampling-weights version; the trainer polls ``CURRENT`` every ``weights_check_every`` steps and
calls :meth:`switch_weights`.

Everything that determines the stream (epoch, position, RNG, running counts, the pending target,
the weights version) is in :meth:`state_dict` as plain Python/tensor values, so a checkpoint
loaded with ``torch.load(weights_only=True)`` resumes the exact same stream.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from scipy.special import ndtr, ndtri

from djepa_t2i.config import default

log = logging.getLogger(__name__)

OVER_TARGET_DISCARD_P = 0.5


@dataclass(frozen=True)
class Decision:
    """One accepted sample and the size it will be trained at."""
    key: str
    tar: str
    offset: int
    size: int
    caption: str
    width: int      # native
    height: int
    out_w: int      # after the downscale, multiples of the stride
    out_h: int
    side_kpx: float  # the drawn target side
    crop: bool = False  # phase 1: short side resized to out_w, then centre-cropped square


def trunc_norm(rng: np.random.Generator, mu: float, sigma: float, a: float, b: float) -> float:
    """Exact inverse-CDF draw from N(mu, sigma) truncated to [a, b]."""
    lo, hi = ndtr((a - mu) / sigma), ndtr((b - mu) / sigma)
    if hi - lo < 1e-12:  # all mass in a far tail: the nearest bound is the limit of the draw
        return float(a if mu < a else b)
    x = mu + sigma * float(ndtri(lo + (hi - lo) * rng.random()))
    return float(min(max(x, a), b))


def target_size(width: int, height: int, side_px: float, stride: int) -> tuple[int, int]:
    """``side_px**2`` pixels at the sample's aspect ratio, each side floored to the stride."""
    r = math.sqrt(width / height)
    w = max(stride, int(side_px * r) // stride * stride)
    h = max(stride, int(side_px / r) // stride * stride)
    return w, h


def attributes(notions: list[str] | None, tags: list[str] | None, source: str | None) -> tuple[str, ...]:
    """A sample's non-transformable attributes as ``kind:value`` strings (the weights keys)."""
    out = set(notions or ())
    out.update(f"style:{t}" for t in tags or ())
    if source:
        out.add(f"source:{source}")
    return tuple(sorted(out))


def rank_rows(index: pa.Table, rank: int, world_size: int) -> pa.Table:
    """This rank's disjoint share: whole tars round-robin when there are at least as many tars as
    ranks (sequential I/O per tar), else every ``world_size``-th row of the sorted index."""
    index = index.sort_by([("tar", "ascending"), ("key", "ascending")])
    tars = sorted(set(index["tar"].to_pylist()))
    if len(tars) >= world_size:
        mine = set(tars[rank::world_size])
        mask = [t in mine for t in index["tar"].to_pylist()]
        return index.filter(pa.array(mask))
    return index.take(list(range(rank, index.num_rows, world_size)))


class FeedbackSampler:
    def __init__(self, index: pa.Table, *, stride: int, schedule: dict[str, float],
                 fixed_side: int | None = None, seed: int = 0, rank: int = 0, world_size: int = 1,
                 max_retries: int = default("train.max_retries"), max_consecutive_discards: int = 100_000):
        rows = rank_rows(index, rank, world_size)
        if rows.num_rows == 0:
            raise ValueError(f"rank {rank}/{world_size}: no samples in the index (build-shards first)")
        d = rows.to_pydict()
        self.keys, self.tars, self.captions = d["key"], d["tar"], d["caption"]
        self.offsets, self.sizes = d["offset"], d["size"]
        self.widths, self.heights = d["width"], d["height"]
        self.attrs = [attributes(n, t, s) for n, t, s in zip(d["notions"], d["tags"], d["source"])]
        self.stride, self.seed, self.rank = stride, seed, rank
        self.config_schedule, self.fixed_side = dict(schedule), fixed_side
        self.max_retries, self.max_consecutive = max_retries, max_consecutive_discards
        self.rng = np.random.default_rng([seed, rank, 7919])
        self.epoch, self.pos = 0, 0
        self._perm = self._permutation(0)
        self.counts: Counter[str] = Counter()
        self.n_accepted = 0
        self.target: float | None = None
        self.retries = 0
        self.weights_version: str | None = None
        self.targets: dict[str, float] = {}
        self.schedule = dict(schedule)
        self.window = self._empty_window()

    # -- weights -----------------------------------------------------------------------------
    def switch_weights(self, version: str | None, targets: dict[tuple[str, str], float],
                       schedule: dict[str, float] | None) -> None:
        """Adopt a sampling-weights version: new target frequencies and resolution schedule."""
        old = self.weights_version
        self.weights_version = version
        self.targets = {f"{k}:{v}": float(t) for (k, v), t in targets.items()}
        self.schedule = dict(schedule or self.config_schedule)
        self.target, self.retries = None, 0
        self.window["weights_switch"][f"{old}->{version}"] += 1
        log.info("feedback sampler (rank %d): weights %s -> %s (%d targets, schedule %s)",
                 self.rank, old, version, len(self.targets), self.schedule)

    # -- the stream --------------------------------------------------------------------------
    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.rank, epoch]).permutation(len(self.keys))

    def _next_index(self) -> int:
        if self.pos >= len(self._perm):
            self.epoch, self.pos = self.epoch + 1, 0
            self._perm = self._permutation(self.epoch)
        i = int(self._perm[self.pos])
        self.pos += 1
        return i

    def _draw_target(self) -> float:
        if self.fixed_side:
            return self.fixed_side / 1000.0
        s = self.schedule
        return trunc_norm(self.rng, s["mu"], s["sigma"], s["a"], s["b"])

    def over_target(self, attrs: tuple[str, ...]) -> list[str]:
        n = max(self.n_accepted, 1)
        return [a for a in attrs if a in self.targets and self.counts[a] / n > self.targets[a]]

    def next(self) -> Decision:
        """The next accepted sample (discards are counted in the stats window by reason)."""
        for _ in range(self.max_consecutive):
            if self.target is None:
                self.target, self.retries = self._draw_target(), 0
            i = self._next_index()
            w, h = self.widths[i], self.heights[i]
            if self.fixed_side:  # phase 1: a square crop of the short side (never upscaled)
                out_w = out_h = self.fixed_side
                reachable = min(w, h) >= self.fixed_side
            else:
                out_w, out_h = target_size(w, h, 1000.0 * self.target, self.stride)
                reachable = out_w <= w and out_h <= h
            if not reachable:
                self.window["discard"]["upscale"] += 1
                self.retries += 1
                if self.retries >= self.max_retries:
                    self.window["discard"]["target_unreachable"] += 1
                    self.target = None
                continue
            over = self.over_target(self.attrs[i])
            if over and self.rng.random() < OVER_TARGET_DISCARD_P:
                self.window["discard"]["over_target"] += 1
                for a in over:
                    self.window["over_target"][a] += 1
                continue
            return self._accept(i, out_w, out_h)
        raise RuntimeError(f"feedback sampler: {self.max_consecutive} discards in a row; no sample in "
                           f"this rank's share can reach the schedule {self.schedule} (largest native "
                           f"side {max(math.sqrt(a * b) for a, b in zip(self.widths, self.heights)):.0f} px)")

    def _accept(self, i: int, out_w: int, out_h: int) -> Decision:
        side = self.target
        self.target = None
        self.n_accepted += 1
        self.counts.update(self.attrs[i])
        win = self.window
        win["resolution"][str(round(math.sqrt(out_w * out_h)))] += 1
        for a in self.attrs[i]:
            kind, _, value = a.partition(":")
            win["source" if kind == "source" else "notion"][a] += 1
        win["accepted"]["samples"] += 1
        return Decision(self.keys[i], self.tars[i], self.offsets[i], self.sizes[i], self.captions[i],
                        self.widths[i], self.heights[i], out_w, out_h, side, bool(self.fixed_side))

    # -- statistics --------------------------------------------------------------------------
    @staticmethod
    def _empty_window() -> dict[str, Counter]:
        return {k: Counter() for k in ("resolution", "notion", "source", "discard", "over_target",
                                       "accepted", "weights_switch")}

    def pop_window(self) -> dict[str, Counter]:
        """Counts since the last call (for ``batch_stats``), then start a new window."""
        w, self.window = self.window, self._empty_window()
        return w

    def frequency(self, attr: str) -> float:
        return self.counts[attr] / max(self.n_accepted, 1)

    # -- state -------------------------------------------------------------------------------
    def shard_positions(self) -> dict[str, int]:
        """Samples of each tar consumed so far in the current epoch (for humans; the position
        itself is ``(epoch, pos)`` in the seeded permutation)."""
        return dict(Counter(self.tars[int(i)] for i in self._perm[: self.pos]))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "rng": _plain(self.rng.bit_generator.state),
                "counts": dict(self.counts), "n_accepted": self.n_accepted, "target": self.target,
                "retries": self.retries, "weights_version": self.weights_version,
                "targets": dict(self.targets), "schedule": dict(self.schedule),
                "n_rows": len(self.keys), "first_key": self.keys[0],
                "shard_positions": self.shard_positions()}

    def load_state_dict(self, s: dict) -> None:
        if (s["n_rows"], s["first_key"]) != (len(self.keys), self.keys[0]):
            raise ValueError(f"sampler state is for a different index ({s['n_rows']} rows from "
                             f"{s['first_key']!r}; this rank has {len(self.keys)} from {self.keys[0]!r})")
        self.epoch, self.pos = s["epoch"], s["pos"]
        self._perm = self._permutation(self.epoch)
        self.rng.bit_generator.state = s["rng"]
        self.counts = Counter(s["counts"])
        self.n_accepted, self.target, self.retries = s["n_accepted"], s["target"], s["retries"]
        self.weights_version, self.targets = s["weights_version"], dict(s["targets"])
        self.schedule = dict(s["schedule"])


def _plain(x):
    """numpy bit-generator state as plain dict/int/str (loadable with weights_only=True)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (np.integer,)):
        return int(x)
    return x
