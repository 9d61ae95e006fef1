"""The open_clip embedder shared by every stage that reads the CLIP embedding (tasks/model_cache.py).

The production aesthetic and NSFW heads, clip_similarity and semantic_dedup read the same
normalised ViT-L/14 image embedding, so it is computed once per batch and shared. Weights come only from a local path (``curate.clip_weights``), in any
format ``tasks.filters.clip_loader`` reads (OpenAI TorchScript by opt-in or converted, open_clip
safetensors/torch files or folders); nothing is downloaded.
"""
from __future__ import annotations

import numpy as np
import torch

from djepa_t2i.config import resolve_device
from tasks.filters.clip_loader import load_clip_model


class ClipEmbedder:
    def __init__(self, model_name: str, weights: str, device: str = "auto", batch_size: int = 32,
                 quick_gelu: str | bool = "auto", allow_torchscript: bool = False):
        self.device = resolve_device(device)
        loaded = load_clip_model(model_name, weights, self.device, quick_gelu, allow_torchscript)
        self.model, self.preprocess, self.info = loaded.model, loaded.preprocess, loaded.info
        self.model_name, self.weights, self.batch_size = model_name, weights, batch_size
        self.dim = int(self.model.visual.output_dim)
        side = self.model.visual.image_size  # preprocess resizes the short side to it, then crops
        self.image_side = int(max(side) if isinstance(side, (tuple, list)) else side)

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

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Normalised CLIP text embeddings (for image-text similarity against ``__call__``'s)."""
        import open_clip  # heavy
        tok = open_clip.get_tokenizer(self.info["arch"])  # the registered name (model_name may be a .json)
        out = []
        for i in range(0, len(texts), self.batch_size):
            e = self.model.encode_text(tok(texts[i:i + self.batch_size]).to(self.device)).float()
            out.append(torch.nn.functional.normalize(e, dim=-1))
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, self.dim), np.float32)
