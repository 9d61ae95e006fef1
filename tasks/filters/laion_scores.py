"""LAION's own per-pair scores as filter inputs: ``punsafe``, ``pwatermark``, ``similarity``.

LAION-5B's metadata (kept in ``pairs`` by tasks/img2dataset_meta.py when img2dataset ran with
``save_additional_columns``) already holds a CLIP image-text cosine (``similarity``), P(unsafe)
(``punsafe``) and P(watermark) (``pwatermark``). Thresholds live in ``curate.laion_scores`` and
are all off (None) by default; the stage then does nothing. A pair whose column is missing
passes and ``details.missing`` names the column, so a threshold never rejects for lack of data.
Score = the deciding value when rejected, else the first configured column's value (NaN if none).
"""
from __future__ import annotations

import math

from djepa_t2i.config import Config, LaionScores
from tasks.stages import ROW, Batch, FilterStage, Result

# (column, config field, rejects when the value is "above" or "below" the threshold)
CHECKS = (("punsafe", "max_punsafe", "above"), ("pwatermark", "max_pwatermark", "above"),
          ("similarity", "min_similarity", "below"))


class LaionScoresFilter(FilterStage):
    name, backend, reads = "laion_scores", "img2dataset-columns", (ROW,)
    side = 0  # the row's columns only

    def __init__(self, cfg: LaionScores):
        self.cfg = cfg
        self.active = [(col, field, side, getattr(cfg, field)) for col, field, side in CHECKS
                       if getattr(cfg, field) is not None]

    def check(self, row: dict) -> Result:
        d = {col: row.get(col) for col, *_ in self.active}
        missing = [col for col, *_ in self.active if row.get(col) is None]
        if missing:
            d["missing"] = missing
        for col, field, side, thr in self.active:
            v = row.get(col)
            if v is not None and (v > thr if side == "above" else v < thr):
                op = ">" if side == "above" else "<"
                return Result(float(v), False, f"LAION {col} {v:.3f} {op} {field} {thr}", d)
        first = next((row[col] for col, *_ in self.active if row.get(col) is not None), math.nan)
        return Result(float(first), True, None, d)

    def process(self, batch: Batch) -> list[Result]:
        return [self.check(r) for r in batch.rows]


def build(cfg: Config) -> LaionScoresFilter | None:
    """The filter, or None when no threshold is set (the stage is off)."""
    f = LaionScoresFilter(cfg.curate.laion_scores)
    return f if f.active else None
