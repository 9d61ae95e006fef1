"""``ClipHeadFilter``: a filter that scores the shared CLIP image embedding with a small MLP head.

The production aesthetic (LAION improved-aesthetic-predictor, ``laion-mlp``) and NSFW (LAION
CLIP-based detector, ``clip-mlp``) filters are both such heads: same loading rules (safetensors
or a ``weights_only`` torch file, as published; a TorchScript or Keras file gets a one-line
"convert it" error), the head built from the checkpoint's own shapes, same batched scoring of
the embeddings the runner computed once per batch. A subclass names its head module and its
verdict on a score.
"""
from __future__ import annotations

import numpy as np
import torch

from djepa_t2i.config import Backend
from tasks.stages import CLIP_EMBEDDING, FilterStage, Result, Shared
from tasks.weights_formats import load_tensors, require_path, strict_load

CLIP_L14_DIM = 768


class ClipHeadFilter(FilterStage):
    """Subclasses set ``name``, ``backend``, ``head_type`` (an ``nn.Module`` class with
    ``from_state_dict(sd)``), ``layout`` (the expected file, named in a wrong file's error) and
    ``verdict(score)``. ``device`` (tasks.stages.stage_device) and ``batch_size`` also place the
    shared CLIP embedder."""
    reads = (CLIP_EMBEDDING,)
    side = 0  # reads the embedding, not the image (the embedder's own size: tasks/model_cache.py)
    head_type: type[torch.nn.Module]
    layout: str = ""

    def __init__(self, c: Backend, threshold: float, device: str):
        self.weights, self.threshold = c.weights, threshold
        self.device, self.batch_size = device, c.batch_size
        self.key = f"curate.{self.name}.weights"

    def setup(self, shared: Shared) -> None:
        sd = load_tensors(require_path(self.weights, self.key), self.key, self.layout)
        self.mlp = self.head_type.from_state_dict(sd)
        strict_load(self.mlp, sd, self.key, self.layout)
        self.mlp.eval().to(self.device)
        self.in_dim = next(m.in_features for m in self.mlp.modules() if isinstance(m, torch.nn.Linear))

    def verdict(self, score: float) -> Result:
        raise NotImplementedError

    @torch.inference_mode()
    def scores(self, emb: np.ndarray | None) -> list[float]:
        if emb is None:
            raise ValueError(f"{self.backend} needs CLIP embeddings")
        x = torch.as_tensor(emb, dtype=torch.float32, device=self.device)
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"{self.backend}: head takes {self.in_dim}-d CLIP embeddings, got {x.shape[-1]}-d "
                             f"(curate.clip_model must be the CLIP the head was trained on)")
        return self.mlp(x).squeeze(-1).cpu().tolist()

    def __call__(self, images, emb=None):
        return [self.verdict(v) for v in self.scores(emb)]
