"""Confidence intervals for benchmark accuracies (a share of correct images).

Wilson's score interval (Wilson 1927) rather than the normal one: it stays inside [0, 1] and is
honest at 0/n and n/n, which small evaluations (4 prompts x 4 images) hit all the time.
"""
from __future__ import annotations

import math

Z95 = 1.959963984540054


def wilson(p: float, n: float, z: float = Z95) -> tuple[float, float]:
    """(low, high) of the Wilson interval for ``p`` observed over ``n`` trials; (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # the interval always holds p; at p = 0 or 1 the bound is p exactly, which centre -+ half
    # misses by round-off (3e-18 at 0 of 96), enough to make p - lo negative for a plot's yerr
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def mean_interval(parts: list[tuple[float, float]], z: float = Z95) -> tuple[float, float]:
    """Normal interval of the mean of K independent shares ``(p_k, n_k)`` (GenEval's overall score
    is the mean over categories): mean +- z sqrt(sum p(1-p)/n) / K, clipped to [0, 1]."""
    if not parts:
        return 0.0, 1.0
    k = len(parts)
    m = sum(p for p, _ in parts) / k
    var = sum(p * (1 - p) / n for p, n in parts if n > 0) / (k * k)
    half = z * math.sqrt(var)
    return max(0.0, m - half), min(1.0, m + half)
