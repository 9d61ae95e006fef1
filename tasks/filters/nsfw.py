"""NSFW filter.

Backends:
- ``offline`` = ``nudenet``: NudeNet 320n detector (ONNX model shipped in the nudenet wheel).
  Score = the highest detection confidence among the *exposed* classes in ``EXPOSED``;
  details hold the max score per detected class. Images are prepared by nudenet's own
  ``_read_image`` and run ``batch_size`` at a time (all are 320x320 inputs); the detections are
  post-processed as nudenet's ``_postprocess`` does, in numpy instead of its per-row Python loop
  (3.5 of 16 CPU ms per image); scores equal ``NudeDetector.detect`` (tests/test_batched_filters.py).
- ``clip-mlp`` (production): LAION's CLIP-based-NSFW-Detector head on the normalised OpenAI CLIP
  ViT-L/14 image embedding, output = P(nsfw). Layout as LAION publishes its PyTorch port
  (``models/clip_ViT-L-14_openai_binary_nsfw_head.pth``): ``norm.mean|variance`` (the Keras
  model's Normalization layer: (x - mean) / (sqrt(variance) + 1e-10)), then ``linear_1..N``
  with ReLU between and a sigmoid after the last (L/14: 768-64-512-256-1; B/32: 512-32-32-1).
  The original Keras (autokeras) model converts into this layout with ``t2i convert-weights``
  (tasks/convert_weights.py). Weights from ``curate.nsfw.weights``.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from djepa_t2i.config import Config
from tasks.filters.clip_head import CLIP_L14_DIM, ClipHeadFilter
from tasks.stages import FilterStage, Result, Shared, stage_device

EXPOSED = ("FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED",
           "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")


class NsfwMLP(torch.nn.Module):
    """LAION's NSFW head: Keras-style normalisation, Linear+ReLU layers, sigmoid output.

    ``dims`` = (input, hidden..., 1); LAION's L/14 head is (768, 64, 512, 256, 1).
    """

    def __init__(self, dims: tuple[int, ...] = (CLIP_L14_DIM, 64, 512, 256, 1)):
        super().__init__()
        self.norm = torch.nn.Module()
        self.norm.register_buffer("mean", torch.zeros(dims[0]))
        self.norm.register_buffer("variance", torch.ones(dims[0]))
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]), start=1):
            self.add_module(f"linear_{i}", torch.nn.Linear(a, b))
        self.n = len(dims) - 1

    def forward(self, x):
        x = (x - self.norm.mean) / (self.norm.variance.sqrt() + 1e-10)
        for i in range(1, self.n + 1):
            x = getattr(self, f"linear_{i}")(x)
            x = torch.relu(x) if i < self.n else torch.sigmoid(x)
        return x

    @classmethod
    def from_state_dict(cls, sd: dict) -> "NsfwMLP":
        """The head whose layer sizes the checkpoint's ``linear_i.weight`` shapes give."""
        ws = [sd[f"linear_{i}.weight"] for i in range(1, len(sd) + 1) if f"linear_{i}.weight" in sd]
        if not ws:
            return cls()  # no linear_1: strict loading reports the layout mismatch
        return cls((int(ws[0].shape[1]), *(int(w.shape[0]) for w in ws)))


LAYOUT = ("LAION's NSFW head (clip_ViT-L-14_openai_binary_nsfw_head.pth: norm.mean|variance, "
          "linear_1..4.weight|bias), or its Keras model converted by t2i convert-weights")


def _verdict(s: float, thr: float, label: str, d=None) -> Result:
    ok = s < thr
    return Result(s, ok, None if ok else f"{label} {s:.3f} >= {thr}", d or {})


def nudenet_detections(out: np.ndarray, meta: tuple, side: int) -> list[tuple[str, float]]:
    """(class, score) of each detection nudenet's ``_postprocess`` keeps, from one image's output
    ``out`` (4 + classes, anchors) and its ``_read_image`` metadata; vectorised."""
    import cv2  # heavy
    from nudenet.nudenet import __labels as labels  # heavy
    _, _, x_pad, y_pad, w0, h0 = meta
    rows = out.T
    cls = rows[:, 4:]
    score = cls.max(axis=1)
    keep = score >= 0.2
    rows, cls, score = rows[keep], cls[keep], score[keep]
    w = rows[:, 2] * (w0 + x_pad) / side
    h = rows[:, 3] * (h0 + y_pad) / side
    x = np.clip((rows[:, 0] - rows[:, 2] / 2) * (w0 + x_pad) / side, 0, w0)
    y = np.clip((rows[:, 1] - rows[:, 3] / 2) * (h0 + y_pad) / side, 0, h0)
    boxes = np.stack([x, y, np.minimum(w, w0 - x), np.minimum(h, h0 - y)], axis=1)
    idx = cv2.dnn.NMSBoxes(boxes.tolist(), score.tolist(), 0.25, 0.45)
    return [(labels[int(cls[i].argmax())], float(score[i])) for i in np.asarray(idx, int).reshape(-1)]


class NudeNet(FilterStage):
    name, backend = "nsfw", "nudenet"
    side = 320  # nudenet pads each image to a square and resizes it to its 320 px input

    def __init__(self, threshold: float, device: str, batch_size: int):
        self.threshold, self.device, self.batch_size = threshold, device, batch_size

    def setup(self, shared: Shared) -> None:
        import nudenet  # heavy (onnxruntime): loaded once per worker
        import onnxruntime as ort  # heavy
        from nudenet import NudeDetector  # heavy
        self.det = NudeDetector()
        so = ort.SessionOptions()  # one thread per model: workers, not ops, are the parallelism
        so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
        cuda = self.device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers()
        self.det.onnx_session = ort.InferenceSession(
            os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx"), so,
            providers=(["CUDAExecutionProvider"] if cuda else []) + ["CPUExecutionProvider"])

    def __call__(self, images, emb=None):
        from nudenet.nudenet import _read_image  # heavy
        side, out = self.det.input_width, []
        for i in range(0, len(images), self.batch_size):
            prep = [_read_image(np.ascontiguousarray(np.asarray(im)[:, :, ::-1]), side)
                    for im in images[i:i + self.batch_size]]
            y = self.det.onnx_session.run(None, {self.det.input_name: np.vstack([p[0] for p in prep])})[0]
            for j, p in enumerate(prep):
                per: dict[str, float] = {}
                for c, v in nudenet_detections(y[j], p[1:], side):
                    per[c] = max(per.get(c, 0.0), round(v, 4))
                s = max([per.get(c, 0.0) for c in EXPOSED])
                out.append(_verdict(s, self.threshold, "nudenet exposed-class score", per))
        return out


class ClipMLP(ClipHeadFilter):
    name, backend, head_type, layout = "nsfw", "clip-mlp", NsfwMLP, LAYOUT

    def verdict(self, v: float) -> Result:
        return _verdict(v, self.threshold, "P(nsfw)")


def build(cfg: Config) -> NudeNet | ClipMLP | None:
    c = cfg.curate.nsfw
    if c.backend == "none":
        return None
    if c.backend in ("offline", "nudenet"):
        return NudeNet(c.threshold, stage_device(cfg, c.device), c.batch_size)
    if c.backend == "clip-mlp":
        return ClipMLP(c, c.threshold, stage_device(cfg, c.device))
    raise ValueError(f"curate.nsfw.backend: unknown {c.backend!r}; use offline|clip-mlp|none")
