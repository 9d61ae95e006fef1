"""What the VoPE experiment's runner (``experiments.vope_resolution``) and its report
(``experiments.vope_report``) both read: the arms, the generation sizes and the NTK factor."""
from __future__ import annotations

ARMS = ("vope", "rope", "rope-ntk")
PATCH = 4
HELD_OUT_SEED = 1000
MARGIN = 0.05  # "2x within 0.05 of 1x"


def settings(base: int) -> dict[str, tuple[int, int]]:
    """Generation sizes (H, W) in pixels: 0.5x, 1x, 2x square; 1:4 and 4:1 with 1x's pixel count."""
    return {"0.5x": (base // 2, base // 2), "1x": (base, base), "2x": (2 * base, 2 * base),
            "1:4": (2 * base, base // 2), "4:1": (base // 2, 2 * base)}


def ntk_scale(hw: tuple[int, int], base: int) -> float:
    """NTK factor of the rope-ntk arm: the longest side over the trained 1x side, at least 1."""
    return max(max(hw) / base, 1.0)
