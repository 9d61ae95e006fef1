"""Verdicts on the paper's claims computed from intervals, never from two point estimates.

A claim "A beats B" is judged on the 95% interval of the difference A - B (issue #16 §3):

* ``met``          the interval lies above 0 (A is better, beyond the noise of this sample);
* ``not met``      the interval lies below ``min_effect`` (the smallest gain that would count as
                   the paper's effect: the data rule out a gain that large, including a loss);
* ``inconclusive`` anything else, and always when neither arm beats its chance control (two
                   scores at chance, e.g. 0.000 vs 0.000, say nothing about the claim).

The difference's interval comes from a two-level bootstrap: resample training runs (seeds), then
images within each resampled run, so the run-to-run spread of training counts as well as the
finite number of images. Per-arm intervals are Wilson's (``warehouse.intervals.wilson``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from warehouse.intervals import wilson

MET, NOT_MET, INCONCLUSIVE = "met", "not met", "inconclusive"


@dataclass(frozen=True)
class Share:
    """A pooled share of correct images with its 95% Wilson interval."""
    p: float
    lo: float
    hi: float
    n: int

    def __str__(self) -> str:
        return f"{self.p:.3f} [{self.lo:.2f}, {self.hi:.2f}] (n={self.n})"


def share(groups: Sequence[Sequence[float]]) -> Share:
    """Pool 0/1 scores of several runs into one share with its Wilson interval."""
    xs = [float(x) for g in groups for x in g]
    if not xs:
        return Share(float("nan"), 0.0, 1.0, 0)
    p = sum(xs) / len(xs)
    lo, hi = wilson(p, len(xs))
    return Share(p, lo, hi, len(xs))


def boot_diff(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], n_boot: int = 2000,
              seed: int = 0) -> tuple[float, float, float]:
    """(mean(a) - mean(b), 2.5%, 97.5% percentiles) resampling runs, then images within runs.
    ``a``, ``b``: per training run (seed), the scores of its images."""
    ga, gb = [np.asarray(g, float) for g in a if len(g)], [np.asarray(g, float) for g in b if len(g)]
    if not ga or not gb:
        return float("nan"), float("-inf"), float("inf")
    rng = np.random.default_rng(seed)

    def draws(groups: list[np.ndarray]) -> np.ndarray:
        k = len(groups)
        # every (bootstrap draw, run slot) gets its own resample of every run; then pick one run
        means = np.stack([g[rng.integers(0, len(g), (n_boot, k, len(g)))].mean(-1) for g in groups])
        sizes = np.array([len(g) for g in groups], float)
        pick = rng.integers(0, k, (n_boot, k))
        m = np.take_along_axis(means, pick[None], 0)[0]  # (n_boot, k)
        return (m * sizes[pick]).sum(1) / sizes[pick].sum(1)

    point = float(np.concatenate(ga).mean() - np.concatenate(gb).mean())
    d = draws(ga) - draws(gb)
    return point, float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def verdict(lo: float, hi: float, min_effect: float, above_chance: bool) -> str:
    """Claim "A - B > 0" from the difference's interval [lo, hi] (module doc)."""
    if not above_chance:
        return INCONCLUSIVE
    if lo > 0:
        return MET
    if hi < min_effect:
        return NOT_MET
    return INCONCLUSIVE


def verdict_within(lo: float, hi: float, margin: float, above_chance: bool) -> str:
    """Claim "|A - B| <= margin" (equivalence): met when the whole interval is inside
    [-margin, margin], not met when it lies wholly outside, else inconclusive."""
    if not above_chance:
        return INCONCLUSIVE
    if -margin <= lo and hi <= margin:
        return MET
    if lo > margin or hi < -margin:
        return NOT_MET
    return INCONCLUSIVE


def beats(arm: Share, control: Share) -> bool:
    """The arm's interval lies wholly above its chance control's."""
    return arm.lo > control.hi


def scale_note(v: str, above_chance: bool, n: int, lo: float, hi: float, min_effect: float) -> str:
    """What an inconclusive verdict would need: more training when no arm beats chance, else the
    images per arm (at the same images-per-run ratio) for a 95% half-width of ``min_effect / 2``,
    since the interval narrows as 1/sqrt(n)."""
    if v != INCONCLUSIVE:
        return ""
    if not above_chance:
        return "neither arm above its chance control: longer training first"
    need = int(n * (((hi - lo) / 2) / (min_effect / 2)) ** 2) + 1
    return f"a ±{min_effect / 2:.3f} interval needs ~{need} images per arm"


def line(claim: str, v: str, point: float, lo: float, hi: float, note: str = "") -> str:
    """One verdict line for the docs: the claim, the verdict and the numbers it came from."""
    return (f"**{claim}: {v}** (difference {point:+.3f}, 95% bootstrap CI [{lo:+.3f}, {hi:+.3f}]"
            + (f"; {note}" if note else "") + ")")
