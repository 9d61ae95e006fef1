"""Semantic near-duplicate filter on CLIP image embeddings (SemDeDup-style), beyond the paper.

pHash (tasks/filters/dedup.py) catches re-encodes and resizes; crops, re-framings and
re-uploads with overlays keep a near-identical CLIP embedding instead. Within a shard, in key
order, each image is compared with the images kept so far (cosine of the normalised embeddings
the CLIP heads already computed: no second forward); at or above
``curate.semantic_dedup.max_cosine`` it is rejected as a duplicate of the nearest kept key.
None (the default) records the nearest cosine only. Without ``curate.clip_weights`` the stage
is skipped and ``shard_runs.backends`` says so. Cross-shard semantic dedup is not done here.
"""
from __future__ import annotations

import numpy as np

from djepa_t2i.config import Config
from djepa_t2i.config import SemanticDedup as Settings
from tasks.stages import CLIP_EMBEDDING, KEY, Batch, FilterStage, Result


class SemanticDedup(FilterStage):
    name, backend, reads, writes = "semantic_dedup", "clip-cosine", (CLIP_EMBEDDING, KEY), ("dup_of",)
    side = 0  # the embeddings only

    def __init__(self, cfg: Settings):
        self.threshold = cfg.max_cosine
        self.start_shard("")

    def start_shard(self, shard: str) -> None:
        """Forget the kept images: the comparison runs within one shard."""
        self.kept: list[np.ndarray] = []
        self.kept_keys: list[str] = []

    def process(self, batch: Batch) -> list[Result]:
        """A duplicate's ``dup_of`` names the kept ``shard/key``."""
        out = []
        for cd, e in zip(batch.cands, np.asarray(batch.embeddings(), np.float32)):
            sims = np.stack(self.kept) @ e if self.kept else np.zeros(0, np.float32)
            j = int(np.argmax(sims)) if len(sims) else -1
            best = float(sims[j]) if j >= 0 else 0.0
            d = {"nearest": self.kept_keys[j], "cosine": round(best, 5)} if j >= 0 else {}
            if self.threshold is not None and j >= 0 and best >= self.threshold:
                d["duplicate_of"] = self.kept_keys[j]
                cd.row["dup_of"] = f"{batch.shard}/{self.kept_keys[j]}"
                out.append(Result(best, False, f"semantic near-duplicate of {self.kept_keys[j]} "
                                               f"(CLIP cosine {best:.3f} >= max_cosine {self.threshold})", d))
                continue
            self.kept.append(e)
            self.kept_keys.append(cd.key)
            out.append(Result(best, True, None, d))
        return out


def build(cfg: Config) -> SemanticDedup:
    return SemanticDedup(cfg.curate.semantic_dedup)
