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

from djepa_t2i.config import Config
from tasks.filters.clip_head import CLIP_L14_DIM, ClipHeadFilter
from tasks.stages import FilterStage, Result, stage_device

DEFAULT_THRESHOLD = {"laion-mlp": 4.5, "offline-nrq": 1.5}  # when curate.aesthetic.threshold is None


class AestheticMLP(torch.nn.Module):
    """Layout of christophschuhmann/improved-aesthetic-predictor (keys layers.N.*)."""

    def __init__(self, dim: int = CLIP_L14_DIM):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(dim, 1024), torch.nn.Dropout(0.2),
            torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64), torch.nn.Dropout(0.1),
            torch.nn.Linear(64, 16), torch.nn.Linear(16, 1))

    def forward(self, x):
        return self.layers(x)

    @classmethod
    def from_state_dict(cls, sd: dict) -> "AestheticMLP":
        w = sd.get("layers.0.weight")
        return cls(int(w.shape[1]) if w is not None and w.ndim == 2 else CLIP_L14_DIM)


LAYOUT = ("the LAION improved-aesthetic-predictor state dict (e.g. sac+logos+ava1-l14-linearMSE.pth: "
          "layers.0/2/4/6/7.weight|bias, Linear(768,1024)..Linear(16,1))")


def nrq_components(im: Image.Image) -> dict[str, float]:
    import cv2  # heavy
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


class OfflineNRQ(FilterStage):
    name, backend = "aesthetic", "offline-nrq"
    side = 256  # nrq_components' thumbnail

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


class LaionMLP(ClipHeadFilter):
    name, backend, head_type, layout = "aesthetic", "laion-mlp", AestheticMLP, LAYOUT

    def verdict(self, v: float) -> Result:
        ok = v >= self.threshold
        return Result(v, ok, None if ok else f"LAION aesthetic {v:.2f} < {self.threshold}")


def build(cfg: Config) -> OfflineNRQ | LaionMLP | None:
    c = cfg.curate.aesthetic
    if c.backend == "none":
        return None
    if c.backend in ("offline", "offline-nrq"):
        return OfflineNRQ(DEFAULT_THRESHOLD["offline-nrq"] if c.threshold is None else c.threshold)
    if c.backend == "laion-mlp":
        return LaionMLP(c, DEFAULT_THRESHOLD["laion-mlp"] if c.threshold is None else c.threshold,
                        stage_device(cfg, c.device))
    raise ValueError(f"curate.aesthetic.backend: unknown {c.backend!r}; use offline|laion-mlp|none")
