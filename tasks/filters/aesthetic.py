"""Aesthetic filter.

Backends:
- ``laion-mlp`` (production): the LAION improved-aesthetic-predictor MLP on normalised open_clip
  ViT-L/14 image embeddings. State-dict keys as published (``layers.0/2/4/6/7.weight|bias``:
  Linear(768,1024)-Dropout-Linear(1024,128)-Dropout-Linear(128,64)-Dropout-Linear(64,16)-
  Linear(16,1)), loaded from ``curate.aesthetic.weights`` (a .pth state dict or .safetensors).
- ``offline`` = ``offline-nrq``: a no-reference *quality* score, NOT the LAION aesthetic score
  (default threshold 1.5: rejects flat, blurred, washed-out images).
  On a 256-px grey/colour thumbnail: sharpness s = log1p(var(Laplacian))/log1p(2000),
  contrast c = std(luma)/64, colourfulness k = Hasler-Suesstrunk M/100, each clipped to [0,1];
  score = 10 * (0.4 s + 0.35 c + 0.25 k). Flat, blurred, washed-out images score low.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tasks.filters import Result

LAION_DIM = 768
DEFAULT_THRESHOLD = {"laion-mlp": 4.5, "offline-nrq": 1.5}  # when curate.aesthetic.threshold is None


class AestheticMLP(torch.nn.Module):
    """Layout of christophschuhmann/improved-aesthetic-predictor (keys layers.N.*)."""

    def __init__(self, dim: int = LAION_DIM):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2),
            torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
            torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)


def load_state_dict(path: str) -> dict:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        return load_file(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return sd.get("state_dict", sd) if isinstance(sd, dict) else sd


def _in_dim(sd: dict) -> int:
    w = sd.get("layers.0.weight")
    return int(w.shape[1]) if w is not None and w.ndim == 2 else LAION_DIM


def nrq_components(im: Image.Image) -> dict[str, float]:
    import cv2
    t = im.copy()
    t.thumbnail((256, 256))
    rgb = np.asarray(t, dtype=np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    lap = cv2.Laplacian(luma, cv2.CV_32F)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    colorful = np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())
    return {"sharpness": float(np.clip(np.log1p(lap.var()) / np.log1p(2000.0), 0, 1)),
            "contrast": float(np.clip(luma.std() / 64.0, 0, 1)),
            "colorfulness": float(np.clip(colorful / 100.0, 0, 1))}


class OfflineNRQ:
    name, backend, needs_clip = "aesthetic", "offline-nrq", False

    def __init__(self, threshold: float):
        self.threshold = threshold

    def __call__(self, images, emb=None):
        out = []
        for im in images:
            c = nrq_components(im)
            s = 10.0 * (0.4 * c["sharpness"] + 0.35 * c["contrast"] + 0.25 * c["colorfulness"])
            ok = s >= self.threshold
            out.append(Result(s, ok, None if ok else f"quality score {s:.2f} < {self.threshold} (offline-nrq)",
                              {k: round(v, 4) for k, v in c.items()}))
        return out


class LaionMLP:
    name, backend, needs_clip = "aesthetic", "laion-mlp", True

    def __init__(self, weights: str, threshold: float, device: str = "cpu"):
        sd = load_state_dict(weights)
        self.mlp = AestheticMLP(_in_dim(sd))  # 768 for ViT-L/14; other CLIPs have their own heads
        self.mlp.load_state_dict(sd)
        self.mlp.eval().to(device)
        self.threshold, self.device = threshold, device

    @torch.inference_mode()
    def __call__(self, images, emb=None):
        if emb is None:
            raise ValueError("laion-mlp needs CLIP embeddings")
        s = self.mlp(torch.as_tensor(emb, dtype=torch.float32, device=self.device)).squeeze(-1).cpu().tolist()
        return [Result(v, v >= self.threshold,
                       None if v >= self.threshold else f"LAION aesthetic {v:.2f} < {self.threshold}")
                for v in s]


def build(cfg):
    c = cfg.curate.aesthetic
    if c.backend in ("offline", "offline-nrq"):
        return OfflineNRQ(DEFAULT_THRESHOLD["offline-nrq"] if c.threshold is None else c.threshold)
    if c.backend == "laion-mlp":
        from tasks.filters.clip_embed import pick_device
        thr = DEFAULT_THRESHOLD["laion-mlp"] if c.threshold is None else c.threshold
        return LaionMLP(c.weights, thr, pick_device(c.device))
    raise ValueError(f"curate.aesthetic.backend: unknown {c.backend!r}; use offline|laion-mlp|none")
