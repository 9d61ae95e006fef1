"""OCR filter: the paper removes images that contain text.

Backend ``rapidocr`` (the PP-OCR det/rec ONNX models bundled in the rapidocr wheel). Text is
*detected* on the image downscaled to ``det_side`` px (long side): detection alone decides the
text-area ratio = sum of box areas (score >= min_confidence) / image area, clipped to 1; images
above ``max_text_area`` are rejected. Recognition (``recognize``) only runs on detected boxes and
records the text, so text-free images pay for detection only; with recognition on, a box counts
only if its text has >= ``min_chars`` letters/digits (flat shapes are read as "■" or "●").
"""
from __future__ import annotations

import numpy as np

from tasks.filters import Result


def poly_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


class RapidOCRFilter:
    name, backend, needs_clip = "ocr", "rapidocr", False

    def __init__(self, cfg):
        from rapidocr import RapidOCR
        self.cfg = cfg
        self.engine = RapidOCR(params={
            "Global.log_level": "error",
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "Det.limit_side_len": cfg.det_side, "Det.limit_type": "max"})

    def one(self, im) -> Result:
        c = self.cfg
        bgr = np.ascontiguousarray(np.asarray(im)[:, :, ::-1])
        out = self.engine(bgr, use_cls=False, use_rec=c.recognize)
        boxes = [] if out.boxes is None else list(out.boxes)
        # det-only: scores are box confidences; with recognition: recognition confidences
        scores = [1.0] * len(boxes) if out.scores is None else [float(v) for v in out.scores]
        texts = list(getattr(out, "txts", None) or []) if c.recognize else []
        keep = [i for i, s in enumerate(scores[:len(boxes)]) if s >= c.min_confidence
                and (not texts or sum(ch.isalnum() for ch in texts[i]) >= c.min_chars)]
        area = sum(poly_area(np.asarray(boxes[i], np.float64)) for i in keep)
        ratio = min(1.0, area / float(im.width * im.height))
        d = {"n_boxes": len(keep), "text_area": round(ratio, 5),
             "boxes": [np.asarray(boxes[i]).round(1).tolist() for i in keep][:20]}
        if texts:
            d["text"] = [texts[i] for i in keep if i < len(texts)][:20]
        ok = ratio <= c.max_text_area
        return Result(ratio, ok, None if ok else f"text covers {ratio:.3f} of the image > max_text_area {c.max_text_area}", d)

    def __call__(self, images, emb=None):
        return [self.one(im) for im in images]


def build(cfg):
    c = cfg.curate.ocr
    if c.backend in ("rapidocr", "offline"):
        return RapidOCRFilter(c)
    raise ValueError(f"curate.ocr.backend: unknown {c.backend!r}; use rapidocr|none")
