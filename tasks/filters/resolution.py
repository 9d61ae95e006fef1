"""Resolution and aspect filter: too small, too large or too elongated images are rejected.

No model; the score is the short side in pixels (details hold width, height and aspect). In a
shard it reads the size the pair's row holds (the stored size, orientation applied), not the
decoded image's, which may be a JPEG draft at a fraction of it.
"""
from __future__ import annotations

from djepa_t2i.config import Config, Resolution
from tasks.stages import ROW, Batch, FilterStage, Result


class ResolutionFilter(FilterStage):
    name, backend, reads = "resolution", "rules", (ROW,)
    side = 0  # the row's size only

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

    def process(self, batch: Batch) -> list[Result]:
        return [self.check(r["width"], r["height"]) for r in batch.rows]

    def __call__(self, images, emb=None):
        return [self.check(im.width, im.height) for im in images]


def build(cfg: Config) -> ResolutionFilter:
    return ResolutionFilter(cfg.curate.resolution)
