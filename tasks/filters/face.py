"""Face filter: rejects face-dominated images; records face count and the largest face's share.

The paper lists face detection among its conventional filters (Supp. §6, with a YOLOv8 face
detector) without a policy. What such a filter is for in T2I data is close-ups: images whose
content *is* a face (headshots, selfies, face crops) teach identities and over-represent faces,
while people in a scene are ordinary content. So the default policy rejects when the largest
face box covers more than ``max_face_area`` = 0.2 of the image (a face box wider than ~45% of a
square image's side) and keeps any number of faces (``max_faces`` = -1; set it, e.g. 0, to drop
every image with a face). Measured with the Haar default on skimage's astronaut: the full
portrait-in-scene has one face at 0.034 (kept); crops centred on the face at 3x / 2.5x / 2x the
face box measure 0.110 / 0.162 / 0.270 (the 2x close-up is rejected); coffee has none.

Backends:
- ``offline`` = ``haar``: OpenCV's frontal-face Haar cascade (``cv2.data.haarcascades``), run on
  a copy downscaled to 512 px long side.
- ``yolov8-face`` (production): ultralytics ``YOLO(<local .pt>)``, e.g. a YOLOv8-face
  checkpoint; every detected box (conf >= ``conf``) counts as a face.
Score = largest-face area ratio (0 when no face).
"""
from __future__ import annotations

import numpy as np

from djepa_t2i.config import Config, Face
from tasks.stages import FilterStage, Result, Shared, stage_device
from tasks.weights_formats import WeightsFormatError, detect, require_path
from tasks.yolo import yolo_class


HAAR_SIDE = 512  # the cascade runs on a copy downscaled to this long side


def _policy(cfg, boxes: list[tuple[float, float, float, float]], w: int, h: int, backend: str) -> Result:
    areas = [max(0.0, (x2 - x1)) * max(0.0, (y2 - y1)) / float(w * h) for x1, y1, x2, y2 in boxes]
    largest = min(1.0, max(areas, default=0.0))
    d = {"n_faces": len(boxes), "largest_face_area": round(largest, 5),
         "boxes": [[round(v, 1) for v in b] for b in boxes][:20]}
    if cfg.max_faces >= 0 and len(boxes) > cfg.max_faces:
        return Result(largest, False, f"{len(boxes)} faces > max_faces {cfg.max_faces} ({backend})", d)
    if largest > cfg.max_face_area:
        return Result(largest, False, f"largest face covers {largest:.3f} > max_face_area {cfg.max_face_area} ({backend})", d)
    return Result(largest, True, None, d)


class HaarFaces(FilterStage):
    name, backend = "face", "haar"
    side = HAAR_SIDE

    def __init__(self, cfg: Face):
        self.cfg = cfg

    def setup(self, shared: Shared) -> None:
        import cv2  # heavy: loaded once per worker
        cv2.setNumThreads(1)
        self.cv2 = cv2
        self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self.cascade.empty():
            raise RuntimeError("OpenCV Haar cascade failed to load (is opencv < 5 installed?)")

    def one(self, im) -> Result:
        scale = min(1.0, HAAR_SIDE / max(im.width, im.height))
        t = im if scale == 1.0 else im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
        grey = self.cv2.cvtColor(np.asarray(t), self.cv2.COLOR_RGB2GRAY)
        found = self.cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        boxes = [(x / scale, y / scale, (x + w) / scale, (y + h) / scale) for x, y, w, h in np.asarray(found).reshape(-1, 4)]
        return _policy(self.cfg, boxes, im.width, im.height, self.backend)

    def __call__(self, images, emb=None):
        return [self.one(im) for im in images]


class YoloFaces(FilterStage):
    name, backend = "face", "yolov8-face"

    def __init__(self, cfg: Face, device: str):
        self.cfg, self.device, self.side = cfg, device, cfg.imgsz  # letterboxed to imgsz

    def setup(self, shared: Shared) -> None:
        cfg = self.cfg
        YOLO = yolo_class()
        path = require_path(cfg.weights, "curate.face.weights")
        fmt = detect(path) if path.is_file() else "folder"
        if fmt != "torch":
            raise WeightsFormatError(f"curate.face.weights={cfg.weights!r} is {fmt}; expected an ultralytics YOLOv8 "
                                     ".pt checkpoint (e.g. yolov8n-face.pt)")
        self.model = YOLO(str(path))  # a path, never a bare name (a bare name downloads)

    def __call__(self, images, emb=None):
        out = []
        for i in range(0, len(images), self.cfg.batch_size):
            chunk = images[i:i + self.cfg.batch_size]
            arrs = [np.ascontiguousarray(np.asarray(im)[:, :, ::-1]) for im in chunk]
            # rect=False: every image letterboxed to the imgsz square, so its boxes do not depend on
            # its batch-mates' shapes (ultralytics pads a batch of one shape less than a mixed one)
            res = self.model.predict(arrs, imgsz=self.cfg.imgsz, conf=self.cfg.conf, device=self.device,
                                     rect=False, verbose=False)
            for im, r in zip(chunk, res):
                boxes = [tuple(map(float, b)) for b in r.boxes.xyxy.cpu().numpy()] if r.boxes is not None else []
                out.append(_policy(self.cfg, boxes, im.width, im.height, self.backend))
        return out


def build(cfg: Config) -> HaarFaces | YoloFaces | None:
    c = cfg.curate.face
    if c.backend == "none":
        return None
    if c.backend in ("offline", "haar"):
        return HaarFaces(c)
    if c.backend == "yolov8-face":
        return YoloFaces(c, stage_device(cfg, c.device))
    raise ValueError(f"curate.face.backend: unknown {c.backend!r}; use offline|yolov8-face|none")
