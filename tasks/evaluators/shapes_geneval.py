"""shapes-geneval: GenEval's six categories over the shapes world, scored without any weights.

The "detector" is exact for the world's images: pixels are segmented by hue into the palette's
colors (a saturation and value guard sends the light background, anti-aliased fringes and
dark noise to nothing), connected components above a minimum area are objects, and a component's
shape comes from its outline: a triangle (the world's are apex-up) has its centroid low in its
box; otherwise the component, holes filled, is compared with a box, an ellipse and a triangle of
its own centroid and second moments, and the one it overlaps most (IoU) wins. Moment-matched
templates keep a model's ragged square a square: the corner-fill test this replaced read 51 of
72 drawn squares as circles, since one stray pixel widens a box and empties its corners
(docs/experiments.md, "Reading shapes"). The detections then go through GenEval's own
rules (``geneval_rules``): counts, colors, relative position by box centres.

Every prompt carries its notions, so each image's score maps back to the notions it tested
(``rows``), which is what feedback consumes.
"""
from __future__ import annotations

import colorsys
from typing import Callable, Iterable

import cv2
import numpy as np
from PIL import Image

from tasks import shapes_world as sw
from tasks.evaluators import geneval_rules as rules

BENCHMARK = "shapes-geneval"
BACKEND = "shapes-segmentation"  # programmatic: no weights
MIN_SATURATION = 0.25   # below: background, fringe blended more than ~65% with it, or grey noise
MIN_VALUE = 0.25        # below: dark noise has no reliable hue
MAX_HUE_DISTANCE = 20.0  # degrees from the nearest palette hue; farther pixels are no color
BACKGROUND_VALUE = 0.6  # plain background: unsaturated and at least this light
MIN_AREA = 0.004        # x short side^2 (16 px at 64 px); smaller specks are noise
MIN_SIDE = 0.14         # x short side: every world object's box is >= 0.18 of it; a lone
                        # token-sized patch (1/8 of the side) is no object
RING = 0.1              # ring around a box, x its long side (>= 1 px), for the confidence
TRIANGLE_CENTROID = 0.58  # centroid height / box height: measured 0.63-0.67 triangle, <= 0.53 others
EXTENT_MIN = 0.3        # thinner blobs are no shape at all
MAX_ASPECT = 1.6        # every world shape has a square box; elongated blobs are not shapes
# share of the image that may be clutter (neither plain background nor inside a detected
# object's box): measured 0.0 on every rendered ground truth, 0.86 on uniform noise, ~0.5 on
# palette patch noise; above it the image is no clean drawing and fails every prompt
MAX_CLUTTER = 0.10


def _hue(rgb: tuple[int, int, int]) -> float:
    return colorsys.rgb_to_hsv(*(c / 255 for c in rgb))[0] * 360


PALETTE_HUES = {name: _hue(rgb) for name, rgb in sw.COLORS.items()}


def color_labels(img: np.ndarray) -> np.ndarray:
    """Per pixel, the index into ``sw.COLORS`` of its color, -1 for plain background (unsaturated
    and light), -2 for anything else (dark, or a hue far from the palette)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(img[..., :3], dtype=np.uint8), cv2.COLOR_RGB2HSV_FULL)
    h = hsv[..., 0].astype(np.float32) * (360.0 / 256.0)
    s = hsv[..., 1].astype(np.float32) / 255.0
    v = hsv[..., 2].astype(np.float32) / 255.0
    hues = np.array(list(PALETTE_HUES.values()), dtype=np.float32)
    d = np.abs(h[..., None] - hues)
    d = np.minimum(d, 360.0 - d)
    lab = d.argmin(-1).astype(np.int32)
    ok = (s >= MIN_SATURATION) & (v >= MIN_VALUE) & (d.min(-1) <= MAX_HUE_DISTANCE)
    plain = (s < MIN_SATURATION) & (v >= BACKGROUND_VALUE)
    return np.where(ok, lab, np.where(plain, -1, -2))


def confidence(labels: np.ndarray, comp_mask: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    """How much a component looks like a drawn object rather than a piece of clutter: (share of
    plain background in a ring around its box)^3 times the share of its box that is either the
    component or background. 1.0 for a shape on a plain background (measured: every rendered
    ground-truth object), low inside noise (a blob needs a ring ~70% background to pass 0.3);
    scored with GenEval's thresholds (0.3, 0.9 for counting) like a detector's confidence."""
    H, W = labels.shape
    r = max(1, round(RING * max(w, h)))
    x0, y0, x1, y1 = max(x - r, 0), max(y - r, 0), min(x + w + r, W), min(y + h + r, H)
    outer = labels[y0:y1, x0:x1]
    inner_mask = np.zeros(outer.shape, bool)
    inner_mask[y - y0:y - y0 + h, x - x0:x - x0 + w] = True
    ring = outer[~inner_mask]
    ring_bg = float((ring == -1).mean()) if ring.size else 1.0
    box = labels[y:y + h, x:x + w]
    clean = float((comp_mask | (box == -1)).mean())
    return ring_bg ** 3 * clean


def _filled(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled: a hole is texture, not outline."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(m, contours, -1, 1, thickness=-1)
    return m.astype(bool)


def template_iou(mask: np.ndarray) -> dict[str, float]:
    """IoU of the filled mask with each world shape drawn with the mask's own centroid and
    per-axis standard deviations (a uniform box of side L has sigma L/sqrt(12), an ellipse of
    semi-axis a has a/2, an apex-up triangle of height h and base b has h/sqrt(18), b/sqrt(24)).
    Moments of the whole mask move by a fraction of a pixel for a stray pixel or a notch, where
    a bounding box moves by a pixel; a slightly oblong drawing is still matched by its shape."""
    f = _filled(mask)
    f = np.pad(f, max(f.shape))  # templates may reach past the component's box
    ys, xs = np.nonzero(f)
    cy, cx, sy, sx = ys.mean() + 0.5, xs.mean() + 0.5, max(ys.std(), 0.5), max(xs.std(), 0.5)
    yy, xx = np.mgrid[0:f.shape[0], 0:f.shape[1]] + 0.5
    h, b = np.sqrt(18) * sy, np.sqrt(24) * sx
    down = (yy - (cy - 2 * h / 3)) / h  # 0 at the apex, 1 at the base
    templates = {
        "square": (np.abs(xx - cx) <= np.sqrt(3) * sx) & (np.abs(yy - cy) <= np.sqrt(3) * sy),
        "circle": ((xx - cx) / (2 * sx)) ** 2 + ((yy - cy) / (2 * sy)) ** 2 <= 1,
        "triangle": (down >= 0) & (down <= 1) & (np.abs(xx - cx) <= down * b / 2)}
    return {name: float((f & t).sum() / (f | t).sum()) for name, t in templates.items()}


def classify_shape(mask: np.ndarray) -> str | None:
    """Shape of one component given its mask cropped to its bounding box; None for blobs that
    are no world shape."""
    h, w = mask.shape
    area = int(mask.sum())
    if max(w, h) > MAX_ASPECT * min(w, h) or area < EXTENT_MIN * w * h:
        return None
    ys, _ = np.nonzero(mask)
    if (ys.mean() + 0.5) / h >= TRIANGLE_CENTROID:
        return "triangle"
    iou = template_iou(mask)
    return max(iou, key=iou.get)


def _rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    img = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if img.ndim != 3 or img.shape[2] < 3:
        raise ValueError(f"expected an RGB image, got array of shape {img.shape}")
    return img


def detect(image: Image.Image | np.ndarray, labels: np.ndarray | None = None) -> list[rules.Detection]:
    """Objects in an image: one per connected single-color component above the minimum area
    whose outline is a world shape, with a confidence (``confidence``), most confident first.
    ``labels``: the image's ``color_labels`` when the caller already has them."""
    img = _rgb(image)
    labels = color_labels(img) if labels is None else labels
    min_area = max(4, int(MIN_AREA * min(img.shape[:2]) ** 2))
    min_side = MIN_SIDE * min(img.shape[:2])
    names = list(sw.COLORS)
    dets = []
    for ci, name in enumerate(names):
        mask = (labels == ci).astype(np.uint8)
        if mask.sum() < min_area:
            continue
        n, comp, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area < min_area or min(w, h) < min_side:
                continue
            m = comp[y:y + h, x:x + w] == k
            shape = classify_shape(m)
            if shape is None:
                continue
            dets.append(rules.Detection(shape, (x, y, x + w, y + h),
                                        round(confidence(labels, m, x, y, w, h), 4), name))
    dets.sort(key=lambda d: (-d.score, -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1])))
    return dets


def clutter(labels: np.ndarray, detections: list[rules.Detection]) -> float:
    """Share of pixels that are neither plain background nor inside a detection's box."""
    covered = np.zeros(labels.shape, bool)
    for d in detections:
        x0, y0, x1, y1 = (int(v) for v in d.box)
        covered[y0:y1, x0:x1] = True
    return float(((labels != -1) & ~covered).mean())


def score_image(image: Image.Image | np.ndarray, spec: dict) -> tuple[float, str]:
    """1.0 if the image satisfies the prompt's GenEval spec, else 0.0, with GenEval's reason.
    Detections pass GenEval's selection (confidence > 0.3, > 0.9 for counting; <= 16 per class).
    An image with more than ``MAX_CLUTTER`` clutter fails whatever it contains: noise, patchy
    noise and half-drawn scenes must not pass by a lucky component (issue: a noise image once
    scored "a yellow triangle [ok]")."""
    img = _rgb(image)
    labels = color_labels(img)
    dets = detect(img, labels)
    junk = clutter(labels, dets)
    if junk > MAX_CLUTTER:
        return 0.0, f"no clean drawing: {junk:.0%} of the image is clutter (max {MAX_CLUTTER:.0%})"
    objects = rules.select(dets, spec.get("tag", ""))
    ok, reason = rules.evaluate(objects, spec, rules.known_colors)
    return float(ok), reason


def rows(prompts: list[dict], images: Iterable[list[Image.Image]],
         on_image: Callable[[dict, int, Image.Image], str | None] | None = None) -> list[dict]:
    """Long-format results: one row per (prompt, image, notion), the prompt's category among its
    notions (``notion_kind='category'``), so per-category and per-notion scores are plain
    averages. ``images[i]`` holds the images generated for ``prompts[i]``; ``on_image`` may save
    an image and return its path."""
    out = []
    for p, imgs in zip(prompts, images, strict=True):
        for j, img in enumerate(imgs):
            score, reason = score_image(img, p["spec"])
            path = on_image(p, j, img) if on_image else None
            for notion in p["notions"]:
                kind, value = notion.split("=", 1)
                out.append({"category": p["category"], "prompt_id": p["id"], "prompt": p["prompt"],
                            "image_index": j, "notion_kind": kind, "notion": value,
                            "score": score, "reason": reason, "backend": BACKEND,
                            "image_path": path})
    return out


def summarize(result_rows: list[dict]) -> dict[str, float]:
    """GenEval's summary (per-category accuracy and their mean) from ``rows`` output."""
    return rules.summarize((r["category"], r["score"]) for r in result_rows
                           if r["notion_kind"] == "category")
