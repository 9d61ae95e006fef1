"""Chance-level controls scored beside every evaluation (issue #10, §3).

A benchmark number means something only next to what no model could fail to reach:

* ``uniform_noise``: i.i.d. uniform RGB pixels (what an untrained pixel model emits);
* ``patch_noise``: a grid of solid patches, each plain background or a random palette colour
  (what a half-trained token model emits: the hostile case for a colour/shape segmenter);
* ``shuffled_prompt``: the model's own images scored against another prompt of the same
  category (a derangement), i.e. a model that draws clean scenes but ignores the text.

Each control is a list of images aligned with the prompts, scored by the same scorer.
"""
from __future__ import annotations

import random

import numpy as np
from PIL import Image

from tasks import shapes_world as sw

CONTROLS = ("uniform_noise", "patch_noise", "shuffled_prompt")


def uniform_noise(hw: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8))


def patch_noise(hw: tuple[int, int], rng: np.random.Generator, patch: int | None = None,
                colored: float = 0.5) -> Image.Image:
    """Solid ``patch``-pixel squares (default: 1/8 of the short side), each a palette colour with
    probability ``colored``, else the world's background."""
    h, w = hw
    p = patch or max(1, min(h, w) // 8)
    gh, gw = -(-h // p), -(-w // p)
    palette = np.array([sw.BACKGROUND, *sw.COLORS.values()], dtype=np.uint8)
    pick = np.where(rng.random((gh, gw)) < colored, rng.integers(1, len(palette), (gh, gw)), 0)
    grid = palette[pick].repeat(p, 0).repeat(p, 1)[:h, :w]
    return Image.fromarray(np.ascontiguousarray(grid))


def derangement(n: int, seed: int) -> list[int]:
    """A permutation of range(n) with no fixed point (identity for n < 2)."""
    if n < 2:
        return list(range(n))
    rng = random.Random(seed)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)
        if all(i != j for i, j in enumerate(perm)):
            return perm


def shuffled_within_category(prompts: list[dict], seed: int) -> list[int]:
    """For each prompt, the index of another prompt of its category whose spec its image is
    scored against (itself when the category has a single prompt)."""
    by_cat: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        by_cat.setdefault(p["category"], []).append(i)
    out = list(range(len(prompts)))
    for idx in by_cat.values():
        for a, b in zip(idx, derangement(len(idx), seed)):
            out[a] = idx[b]
    return out
