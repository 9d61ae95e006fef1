"""What the VoPE experiment's runner (``experiments.vope_resolution``) and its report
(``experiments.vope_report``) both read: the arms, the generation sizes and the NTK factor."""
from __future__ import annotations

ARMS = ("vope", "rope", "rope-ntk")
PATCH = 4
HELD_OUT_SEED = 1000
MARGIN = 0.05  # "2x within 0.05 of 1x"


def settings(base: int) -> dict[str, tuple[int, int]]:
    """Generation sizes (H, W) in pixels: 0.5x to 8x square, 1:4 and 4:1 with 1x's pixel count.
    4x is the paper's 1K -> 4K ratio (VoPE's rho from 1 to 1/4, D-JEPA·T2I §2.2, Supp. "Scaling
    to 4K"); 8x goes one doubling past it."""
    return {"0.5x": (base // 2, base // 2), "1x": (base, base), "2x": (2 * base, 2 * base),
            "4x": (4 * base, 4 * base), "8x": (8 * base, 8 * base),
            "1:4": (2 * base, base // 2), "4:1": (base // 2, 2 * base)}


def by_cost(base: int) -> list[tuple[str, tuple[int, int]]]:
    """``settings`` in the order the runner scores them: fewest pixels first, so a run cut short
    (the 8x images cost ~64x a 1x image) has scored every cheaper size."""
    return sorted(settings(base).items(), key=lambda kv: kv[1][0] * kv[1][1])


def images_at(cfg: dict, name: str) -> int:
    """Images per prompt at size ``name``: the preset's ``images``, or its ``images_at`` entry
    (the cpu preset scores fewer at 4x and 8x, where one image takes up to ~7 s of CPU)."""
    return cfg.get("images_at", {}).get(name, cfg["images"])


def ntk_scale(hw: tuple[int, int], base: int) -> float:
    """NTK factor of the rope-ntk arm: the longest side over the trained 1x side, at least 1."""
    return max(max(hw) / base, 1.0)
