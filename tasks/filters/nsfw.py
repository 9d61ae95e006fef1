"""NSFW filter.

Backends:
- ``offline`` = ``nudenet``: NudeNet 320n detector (ONNX model shipped in the nudenet wheel).
  Score = the highest detection confidence among the *exposed* classes in ``EXPOSED``;
  details hold the max score per detected class.
- ``clip-mlp`` (production): an MLP head on the normalised open_clip ViT-L/14 image embedding,
  output through a sigmoid = P(nsfw). Layout (keys ``layers.0/2/4/6.weight|bias``):
  Linear(768,64)-ReLU-Linear(64,512)-ReLU-Linear(512,256)-ReLU-Linear(256,1); the dense sizes of
  LAION's CLIP-based-NSFW-Detector for ViT-L/14 -- convert its Keras dense weights
  (transposed) into these keys. Weights from ``curate.nsfw.weights``.
"""
from __future__ import annotations

import numpy as np
import torch

from tasks.filters import Result
from tasks.filters.clip_head import CLIP_L14_DIM, EmbeddingHead

EXPOSED = ("FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED",
           "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")


class NsfwMLP(torch.nn.Module):
    def __init__(self, dim: int = CLIP_L14_DIM):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, 512), torch.nn.ReLU(),
            torch.nn.Linear(512, 256), torch.nn.ReLU(), torch.nn.Linear(256, 1))

    def forward(self, x):
        return torch.sigmoid(self.layers(x))


def _verdict(s: float, thr: float, label: str, d=None) -> Result:
    ok = s < thr
    return Result(s, ok, None if ok else f"{label} {s:.3f} >= {thr}", d or {})


class NudeNet:
    name, backend, needs_clip = "nsfw", "nudenet", False

    def __init__(self, threshold: float):
        import os

        import nudenet
        import onnxruntime as ort
        from nudenet import NudeDetector
        self.det = NudeDetector()
        so = ort.SessionOptions()  # one thread per model: workers, not ops, are the parallelism
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        self.det.onnx_session = ort.InferenceSession(
            os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx"), so,
            providers=["CPUExecutionProvider"])
        self.threshold = threshold

    def __call__(self, images, emb=None):
        out = []
        for im in images:
            bgr = np.ascontiguousarray(np.asarray(im)[:, :, ::-1])
            per: dict[str, float] = {}
            for det in self.det.detect(bgr):
                per[det["class"]] = max(per.get(det["class"], 0.0), round(float(det["score"]), 4))
            s = max([per.get(c, 0.0) for c in EXPOSED])
            out.append(_verdict(s, self.threshold, "nudenet exposed-class score", per))
        return out


class ClipMLP:
    name, backend, needs_clip = "nsfw", "clip-mlp", True

    def __init__(self, weights: str, threshold: float, device: str = "cpu"):
        self.head = EmbeddingHead(NsfwMLP, weights, device)
        self.threshold = threshold

    def __call__(self, images, emb=None):
        p = self.head.scores(emb, self.backend)
        return [_verdict(v, self.threshold, "P(nsfw)") for v in p]


def build(cfg):
    c = cfg.curate.nsfw
    if c.backend in ("offline", "nudenet"):
        return NudeNet(c.threshold)
    if c.backend == "clip-mlp":
        from djepa_t2i.config import resolve_device
        return ClipMLP(c.weights, c.threshold, resolve_device(c.device))
    raise ValueError(f"curate.nsfw.backend: unknown {c.backend!r}; use offline|clip-mlp|none")
