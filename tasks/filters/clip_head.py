"""A small MLP head over CLIP image embeddings, loaded from a local checkpoint.

The production aesthetic (LAION improved-aesthetic-predictor) and NSFW (LAION CLIP-based
detector) filters are both such heads: same loading rules (safetensors or a ``weights_only``
torch file, as published; a TorchScript or Keras file gets a one-line "convert it" error), the
head built from the checkpoint's own shapes, same batched scoring of precomputed embeddings.
"""
from __future__ import annotations

from typing import Callable

import torch

from tasks.weights_formats import load_tensors, require_path, strict_load

CLIP_L14_DIM = 768


class EmbeddingHead:
    """Loads ``build(state_dict)`` from ``weights`` and scores batches of CLIP embeddings.

    ``key`` is the config key of ``weights`` and ``layout`` the expected layout, both named in
    the error a wrong file gets.
    """

    def __init__(self, build: Callable[[dict], torch.nn.Module], weights: str, device: str, key: str,
                 layout: str):
        path = require_path(weights, key)
        sd = load_tensors(path, key, layout)
        self.mlp = build(sd)
        strict_load(self.mlp, sd, key, layout)
        self.mlp.eval().to(device)
        self.device = device
        self.in_dim = next(m.in_features for m in self.mlp.modules() if isinstance(m, torch.nn.Linear))

    @torch.inference_mode()
    def scores(self, emb, backend: str) -> list[float]:
        if emb is None:
            raise ValueError(f"{backend} needs CLIP embeddings")
        x = torch.as_tensor(emb, dtype=torch.float32, device=self.device)
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"{backend}: head takes {self.in_dim}-d CLIP embeddings, got {x.shape[-1]}-d "
                             f"(curate.clip_model must be the CLIP the head was trained on)")
        return self.mlp(x).squeeze(-1).cpu().tolist()
