"""Resolution and aspect filter: too small, too large or too elongated images are rejected.

No model; the score is the short side in pixels (details hold width, height and aspect).
"""
from __future__ import annotations

from djepa_t2i.config import Config, Resolution
from tasks.stages import FilterStage, Result


class ResolutionFilter(FilterStage):
    name, backend = "resolution", "rules"

    def __init__(self, cfg: Resolution):
        self.cfg = cfg

    def check(self, w: int, h: int) -> Result:
        c = self.cfg
        short, long_ = min(w, h), max(w, h)
        aspect = long_ / max(short, 1)
        d = {"width": w, "height": h, "aspect": round(aspect, 4)}
        if short < c.min_side:
            return Result(short, False, f"too small: short side {short} px < min_side {c.min_side}", d)
        if long_ > c.max_side:
            return Result(short, False, f"too large: long side {long_} px > max_side {c.max_side}", d)
        if aspect > c.max_aspect:
            return Result(short, False, f"extreme aspect ratio {aspect:.2f} > max_aspect {c.max_aspect}", d)
        return Result(short, True, None, d)

    def __call__(self, images, emb=None):
        return [self.check(im.width, im.height) for im in images]


def build(cfg: Config) -> ResolutionFilter:
    return ResolutionFilter(cfg.curate.resolution)
