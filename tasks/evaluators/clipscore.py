"""CLIPScore and the CLIP model loader shared with GenEval's color classifier.

Weights come only from a local path, read by ``tasks.filters.clip_loader`` (QuickGELU chosen
automatically for OpenAI weights; nothing is downloaded).
CLIPScore follows torchmetrics' convention: ``100 * max(cos(image, text), 0)`` per pair, so a
score is in [0, 100]; Hessel et al.'s CLIP-S is ``2.5 * max(cos, 0)`` = score / 40.
"""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from djepa_t2i.config import resolve_device
from tasks.filters.clip_loader import load_clip_model

BACKEND = "open_clip"



def load_clip(arch: str, weights: str, device: str = "auto"):
    """(model, preprocess, tokenizer) for ``arch`` (e.g. ViT-L-14) with weights from a local file."""
    import open_clip  # heavy

    loaded = load_clip_model(arch, weights, resolve_device(device), key="evaluate.clip.weights")
    return loaded.model, loaded.preprocess, open_clip.get_tokenizer(loaded.info["arch"])


class CLIPScorer:
    def __init__(self, arch: str, weights: str, device: str, *, batch_size: int):
        self.model, self.preprocess, self.tokenizer = load_clip(arch, weights, device)
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.backend = f"{BACKEND}:{Path(arch).stem if arch.endswith('.json') else arch}"

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        out = []
        for b in range(0, len(images), self.batch_size):
            x = torch.stack([self.preprocess(im.convert("RGB")) for im in images[b:b + self.batch_size]])
            out.append(torch.nn.functional.normalize(self.model.encode_image(x.to(self.device)).float(), dim=-1))
        return torch.cat(out)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        out = []
        for b in range(0, len(texts), self.batch_size):
            t = self.tokenizer(texts[b:b + self.batch_size]).to(self.device)
            out.append(torch.nn.functional.normalize(self.model.encode_text(t).float(), dim=-1))
        return torch.cat(out)

    def score(self, images: list[Image.Image], captions: list[str]) -> torch.Tensor:
        """Per pair CLIPScore in [0, 100], shape (N,)."""
        if len(images) != len(captions):
            raise ValueError(f"{len(images)} images but {len(captions)} captions")
        if not images:
            return torch.zeros(0)
        cos = (self.embed_images(images) * self.embed_texts(captions)).sum(-1)
        return 100.0 * cos.clamp(min=0)
