"""GenEval (Ghosh et al., 2023) in production: its metadata, a YOLO detector, CLIP colors.

GenEval's reference uses Mask2Former (mmdetection) for boxes and masks; here the detector is an
ultralytics YOLO with COCO weights from a local path (boxes only, so color crops are box crops:
GenEval's ``crop=1`` without a mask). Thresholds and the verdict are GenEval's
(``geneval_rules``): confidence > 0.3 (> 0.9 for counting), <= 16 objects per class, position
threshold 0.1; colors by zero-shot CLIP (ViT-L-14 in GenEval) over its ten color names with its
three templates.
"""
from __future__ import annotations

import json
import os

import torch
from PIL import Image

from djepa_t2i.config import resolve_device
from tasks.evaluators import geneval_rules as rules
from tasks.evaluators.clipscore import CLIPScorer
from tasks.yolo import yolo_class

COLORS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
TEMPLATES = ["a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object"]
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven",
               8: "eight", 9: "nine", 10: "ten"}
SPATIAL = {"left of": "to the left of", "right of": "to the right of", "above": "above",
           "below": "below"}


def notions_of(meta: dict) -> list[str]:
    """``kind=value`` notions a GenEval prompt tests (entities, colors, counts, relations)."""
    out = [f"category={meta['tag']}"]
    for inc in meta.get("include", []):
        out.append(f"notion={inc['class']}")
        if "color" in inc:
            out.append(f"color={inc['color']}")
        if meta["tag"] == "counting":
            out.append(f"count={COUNT_WORDS.get(inc['count'], str(inc['count']))}")
        if "position" in inc:
            out.append(f"spatial={SPATIAL.get(inc['position'][0], inc['position'][0])}")
    return list(dict.fromkeys(out))


def read_metadata(path: str) -> list[dict]:
    """GenEval's ``evaluation_metadata.jsonl`` -> prompts (id = line number, as GenEval's folders)."""
    out = []
    with open(path) as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                m = json.loads(line)
                tag, prompt = m["tag"], m["prompt"]
                for inc in m.get("include", []):
                    inc["class"], int(inc["count"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{i + 1}: not a GenEval metadata line ({e!r})") from None
            out.append({"id": f"{i:05d}", "prompt": prompt, "category": tag, "spec": m,
                        "notions": notions_of(m)})
    return out


class YoloDetector:
    """ultralytics YOLO from a local ``.pt``; class names from the checkpoint."""

    def __init__(self, weights: str, device: str = "auto"):
        YOLO = yolo_class()
        if not weights or not os.path.isfile(weights):
            raise FileNotFoundError(f"YOLO weights {weights!r}: not a local file (nothing is downloaded)")
        self.model = YOLO(weights)
        self.device = resolve_device(device)
        self.backend = f"yolo:{os.path.basename(weights)}"

    def __call__(self, image: Image.Image) -> list[rules.Detection]:
        res = self.model.predict(image.convert("RGB"), conf=0.001, max_det=300, verbose=False,
                                 device=self.device)[0]
        names = res.names
        b = res.boxes
        return [rules.Detection(names[int(c)], tuple(float(v) for v in xyxy), float(s))
                for xyxy, s, c in zip(b.xyxy.tolist(), b.conf.tolist(), b.cls.tolist())]


class ClipColors:
    """GenEval's zero-shot color classifier over box crops."""

    def __init__(self, clip):
        self.clip = clip  # a clipscore.CLIPScorer
        self._cache: dict[str, torch.Tensor] = {}

    def classifier(self, cls: str) -> torch.Tensor:
        if cls not in self._cache:
            w = []
            for c in COLORS:
                e = self.clip.embed_texts([t.format(c=c, cls=cls) for t in TEMPLATES]).mean(0)
                w.append(torch.nn.functional.normalize(e, dim=-1))
            self._cache[cls] = torch.stack(w)
        return self._cache[cls]

    def __call__(self, image: Image.Image, dets: list[rules.Detection], cls: str) -> list[str]:
        crops = [image.crop(tuple(int(round(v)) for v in d.box)) for d in dets]
        logits = self.clip.embed_images(crops) @ self.classifier(cls).T
        return [COLORS[i] for i in logits.argmax(-1).tolist()]


class GenEvalScorer:
    def __init__(self, detector, colors: ClipColors):
        self.detector, self.colors = detector, colors
        self.backend = f"{detector.backend}+{colors.clip.backend}"

    @classmethod
    def from_config(cls, cfg) -> "GenEvalScorer":
        """``cfg``: the ``evaluate`` section; detector.backend=yolo and clip.backend=open_clip."""
        if cfg.detector.backend != "yolo" or cfg.clip.backend != "open_clip":
            raise ValueError("benchmark geneval needs evaluate.detector.backend=yolo with .weights "
                             "(COCO .pt) and evaluate.clip.backend=open_clip with .weights (ViT-L-14)")
        return cls(YoloDetector(cfg.detector.weights, cfg.detector.device),
                   ClipColors(CLIPScorer(cfg.clip_arch, cfg.clip.weights, cfg.clip.device,
                                         batch_size=cfg.clip.batch_size)))

    def score(self, image: Image.Image, meta: dict) -> tuple[float, str]:
        image = image.convert("RGB")
        objects = rules.select(self.detector(image), meta["tag"])
        ok, reason = rules.evaluate(objects, meta, lambda dets, c: self.colors(image, dets, c))
        return float(ok), reason
