"""CLIP image-text similarity filter (LAION / DataComp "CLIP score" filtering), beyond the paper.

Score = cosine between the pair's normalised CLIP image embedding (the one the aesthetic / NSFW
heads already use: no second image forward) and the normalised CLIP text embedding of its
caption. ``curate.clip_similarity.min_similarity`` rejects below it; None (the default) records
the score only, so a team can pick a threshold from the data (``filter_scores``) first. Without
``curate.clip_weights`` the stage is skipped and ``shard_runs.backends`` says so.
"""
from __future__ import annotations

import numpy as np

from djepa_t2i.config import ClipSimilarity as Settings
from djepa_t2i.config import Config
from tasks.stages import CAPTION, CLIP_EMBEDDING, Batch, FilterStage, Result, Shared


class ClipSimilarity(FilterStage):
    name, backend, reads = "clip_similarity", "open_clip", (CLIP_EMBEDDING, CAPTION)
    side = 0  # the embeddings only

    def __init__(self, cfg: Settings):
        self.threshold = cfg.min_similarity

    def setup(self, shared: Shared) -> None:
        if shared.clip is None:
            raise ValueError("clip_similarity needs the shared CLIP embedder")
        self.clip = shared.clip

    def process(self, batch: Batch) -> list[Result]:
        sims = np.sum(batch.embeddings() * self.clip.embed_texts(batch.captions), axis=1)
        out = []
        for s in sims.tolist():
            ok = self.threshold is None or s >= self.threshold
            out.append(Result(s, ok, None if ok else f"CLIP image-text similarity {s:.3f} < min_similarity {self.threshold}"))
        return out


def build(cfg: Config) -> ClipSimilarity:
    return ClipSimilarity(cfg.curate.clip_similarity)
