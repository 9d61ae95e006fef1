"""A small MLP head over CLIP image embeddings, loaded from a local checkpoint.

The production aesthetic (LAION improved-aesthetic-predictor) and NSFW (CLIP-based detector)
filters are both such heads: same loading rules (safetensors or a ``weights_only`` torch file,
input width read from the first layer), same batched scoring of precomputed embeddings.
"""
from __future__ import annotations

import torch

CLIP_L14_DIM = 768


def load_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def in_dim(sd: dict) -> int:
    """Embedding width the head expects (768 for ViT-L/14; other CLIPs have their own heads)."""
    w = sd.get("layers.0.weight")
    return int(w.shape[1]) if w is not None and w.ndim == 2 else CLIP_L14_DIM


class EmbeddingHead:
    """Loads ``mlp_cls(in_dim)`` from ``weights`` and scores batches of CLIP embeddings."""

    def __init__(self, mlp_cls, weights: str, device: str = "cpu"):
        sd = load_state_dict(weights)
        self.mlp = mlp_cls(in_dim(sd))
        self.mlp.load_state_dict(sd)
        self.mlp.eval().to(device)
        self.device = device

    @torch.inference_mode()
    def scores(self, emb, backend: str) -> list[float]:
        if emb is None:
            raise ValueError(f"{backend} needs CLIP embeddings")
        x = torch.as_tensor(emb, dtype=torch.float32, device=self.device)
        return self.mlp(x).squeeze(-1).cpu().tolist()
