"""Shared open_clip image embedder for the CLIP-head filters (aesthetic, NSFW).

Both production heads read the same normalised ViT-L/14 image embedding, so it is computed once
per batch and shared. Weights come only from a local path (``curate.clip_weights``: an
open_clip checkpoint, .pt/.bin/.safetensors); nothing is downloaded.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from djepa_t2i.config import resolve_device



class ClipEmbedder:
    def __init__(self, model_name: str, weights: str, device: str = "auto", batch_size: int = 32):
        import open_clip
        if not weights or not os.path.exists(weights):
            raise FileNotFoundError(f"CLIP weights not found at {weights!r} (curate.clip_weights)")
        self.device = resolve_device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=weights, device=self.device)
        self.model.eval()
        self.model_name, self.weights, self.batch_size = model_name, weights, batch_size
        self.dim = int(self.model.visual.output_dim)

    @torch.inference_mode()
    def __call__(self, images) -> np.ndarray:
        out = []
        amp = self.device.startswith("cuda")
        for i in range(0, len(images), self.batch_size):
            x = torch.stack([self.preprocess(im) for im in images[i:i + self.batch_size]]).to(self.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                e = self.model.encode_image(x).float()
            out.append(torch.nn.functional.normalize(e, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
