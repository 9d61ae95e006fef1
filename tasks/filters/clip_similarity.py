"""CLIP image-text similarity filter (LAION / DataComp "CLIP score" filtering), beyond the paper.

Score = cosine between the pair's normalised CLIP image embedding (the one the aesthetic / NSFW
heads already use: no second image forward) and the normalised CLIP text embedding of its
caption. ``curate.clip_similarity.min_similarity`` rejects below it; None (the default) records
the score only, so a team can pick a threshold from the data (``filter_scores``) first. Without
``curate.clip_weights`` the stage is skipped and ``shard_runs.backends`` says so.
"""
from __future__ import annotations

import numpy as np

from tasks.filters import Result


class ClipSimilarity:
    name, backend, needs_clip, needs_context = "clip_similarity", "open_clip", True, True

    def __init__(self, cfg):
        self.threshold = cfg.min_similarity
        self.clip = None  # the shared ClipEmbedder, attached once it is built

    def __call__(self, images, emb, keys=(), captions=()):
        if self.clip is None or emb is None:
            raise ValueError("clip_similarity needs the shared CLIP embedder and image embeddings")
        sims = np.sum(np.asarray(emb) * self.clip.embed_texts(list(captions)), axis=1)
        out = []
        for s in sims.tolist():
            ok = self.threshold is None or s >= self.threshold
            out.append(Result(s, ok, None if ok else f"CLIP image-text similarity {s:.3f} < min_similarity {self.threshold}"))
        return out


def build(cfg) -> ClipSimilarity:
    return ClipSimilarity(cfg.curate.clip_similarity)
