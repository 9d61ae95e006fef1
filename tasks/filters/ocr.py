"""OCR filter: the paper removes images that contain text.

Backend ``rapidocr`` (the PP-OCR det/rec ONNX models bundled in the rapidocr wheel). Text is
*detected* on the image downscaled to ``det_side`` px (long side): detection alone decides the
text-area ratio = sum of box areas (score >= min_confidence) / image area, clipped to 1; images
above ``max_text_area`` are rejected. With ``recognize`` on, a box counts only if its text reads
with >= ``min_chars`` letters/digits (flat shapes are detected, then read as "■" or "●");
boxes are read largest first and only while the image could still exceed the threshold, so
text-free images pay for detection only and text images stop at the first proof.

Detection is batched: each image is prepared as RapidOCR prepares it (its load, bounds,
vertical padding and DB pre-processing), the images of one input shape (det_side long side,
multiples of 32: a handful of shapes per batch) go through the detector ``batch_size`` at a time
(1 on the CPU, where larger batches cost more: docs/scale.md), and the
boxes are post-processed and mapped back as RapidOCR maps them; results equal one call per image
(tests/test_batched_filters.py). This reaches into rapidocr's pipeline (pinned in pyproject).
"""
from __future__ import annotations

import numpy as np

from djepa_t2i.config import OCR, Config
from tasks.stages import FilterStage, Result, Shared, stage_device


def poly_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


class RapidOCRFilter(FilterStage):
    name, backend = "ocr", "rapidocr"

    def __init__(self, cfg: OCR, device: str):
        self.cfg, self.device = cfg, device
        self.side = cfg.det_side  # boxes are read from the image as decoded (>= det_side)

    def setup(self, shared: Shared) -> None:
        from rapidocr import RapidOCR  # heavy (onnxruntime): loaded once per worker
        cfg = self.cfg
        self.engine = RapidOCR(params={
            "EngineConfig.onnxruntime.use_cuda": self.device.startswith("cuda"),
            "Global.log_level": "error",
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            # keep onnxruntime's buffers between calls: without its arena every call mallocs and
            # frees its tensors, which a Dask worker (MALLOC_TRIM_THRESHOLD_=65536) maps and unmaps
            # each time: 8,100 vs 2,200 page faults, 41 vs 27 CPU ms per image (docs/scale.md)
            "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
            "Det.limit_side_len": cfg.det_side, "Det.limit_type": "max"})

    def _read(self, bgr: np.ndarray, box: np.ndarray) -> tuple[str, float]:
        x0, y0 = np.floor(box.min(0)).astype(int).clip(0)
        x1, y1 = np.ceil(box.max(0)).astype(int)
        crop = np.ascontiguousarray(bgr[y0:y1 + 1, x0:x1 + 1])
        if crop.size == 0:
            return "", 0.0
        r = self.engine(crop, use_det=False, use_cls=False, use_rec=True)
        txt = (r.txts or ("",))[0] if getattr(r, "txts", None) else ""
        return txt, float((r.scores or (0.0,))[0]) if getattr(r, "scores", None) else 0.0

    def detect(self, bgrs: list[np.ndarray]) -> list[tuple[list[np.ndarray], list[float]]]:
        """(boxes, scores) of each BGR image, as ``engine(img, use_det=True)`` gives them, with
        one detector run per input shape."""
        from rapidocr.utils.process_img import apply_vertical_padding, map_boxes_to_original  # heavy
        eng = self.engine
        det = eng._load_det_model()
        prep = []
        for bgr in bgrs:
            img, op = eng.preprocess_img(eng.load_img(bgr))
            if eng.cfg.Global.use_vertical_padding:
                img, op = apply_vertical_padding(img, op, eng.width_height_ratio, eng.min_height)
            prep.append((img.shape[:2], op, det.get_preprocess()(img)))
        preds: list[np.ndarray | None] = [None] * len(bgrs)
        shapes: dict[tuple, list[int]] = {}
        for i, (_, _, x) in enumerate(prep):
            if x is not None:
                shapes.setdefault(x.shape, []).append(i)
        b = self.cfg.batch_size
        for group in shapes.values():
            for idx in (group[k:k + b] for k in range(0, len(group), b)):
                out = det.session(np.concatenate([prep[i][2] for i in idx]))
                for j, i in enumerate(idx):
                    preds[i] = out[j:j + 1]
        res = []
        for bgr, (shape, op, _), pred in zip(bgrs, prep, preds):
            boxes, scores = det.postprocess_op(pred, shape) if pred is not None else ([], [])
            if len(boxes) < 1:
                res.append(([], []))
                continue
            boxes = map_boxes_to_original(det.sorted_boxes(boxes), op, *bgr.shape[:2])
            res.append(([np.asarray(b, np.float64) for b in boxes], [float(v) for v in scores]))
        return res

    def one(self, im, bgr: np.ndarray, boxes: list[np.ndarray], dscores: list[float]) -> Result:
        """Read the detected boxes (largest first) only while the image could still fail, so
        text-free images never pay for recognition and text images stop at the first proof."""
        c = self.cfg
        area_img = float(im.width * im.height)
        cand = sorted(((poly_area(b) / area_img, i) for i, b in enumerate(boxes) if dscores[i] >= c.min_confidence),
                      reverse=True)
        det_ratio = min(1.0, sum(a for a, _ in cand))
        counted, texts, read = [], [], 0
        if not c.recognize or det_ratio <= c.max_text_area:
            counted = cand  # cannot exceed the threshold: no need to read anything
        else:
            total = 0.0
            for a, i in cand:
                if total > c.max_text_area:
                    break
                txt, conf = self._read(bgr, boxes[i])
                read += 1
                if conf >= c.min_confidence and sum(ch.isalnum() for ch in txt) >= c.min_chars:
                    counted.append((a, i))
                    texts.append(txt)
                    total += a
        ratio = min(1.0, sum(a for a, _ in counted))
        d = {"n_boxes": len(counted), "n_detected": len(cand), "n_read": read, "text_area": round(ratio, 5),
             "detected_area": round(det_ratio, 5), "boxes": [boxes[i].round(1).tolist() for _, i in counted][:20]}
        if texts:
            d["text"] = texts[:20]
        ok = ratio <= c.max_text_area
        return Result(ratio, ok, None if ok else f"text covers {ratio:.3f} of the image > max_text_area {c.max_text_area}", d)

    def __call__(self, images, emb=None):
        bgrs = [np.ascontiguousarray(np.asarray(im)[:, :, ::-1]) for im in images]
        return [self.one(im, bgr, *found) for im, bgr, found in zip(images, bgrs, self.detect(bgrs))]


def build(cfg: Config) -> RapidOCRFilter | None:
    c = cfg.curate.ocr
    if c.backend == "none":
        return None
    if c.backend in ("rapidocr", "offline"):
        return RapidOCRFilter(c, stage_device(cfg, c.device))
    raise ValueError(f"curate.ocr.backend: unknown {c.backend!r}; use rapidocr|none")
