"""GenEval's decision rules, free of any detector: which detections count, and whether an image
satisfies a prompt's metadata (``tag``, ``include``, ``exclude``, ``position``).

Both scorers share them: ``shapes_geneval`` (detections from color segmentation) and ``geneval``
(detections from YOLO, colors from CLIP). The rules and constants follow GenEval's
``evaluation/evaluate_images.py`` (Ghosh et al., 2023): detection confidence > 0.3 (> 0.9 for
``counting``), at most 16 objects per class, no class-wise NMS (threshold 1.0), and the
position threshold 0.1. An image is correct or not; a category's score is the share of correct
images and the overall score is the mean over categories.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
NMS_THRESHOLD = 1.0
POSITION_THRESHOLD = 0.1


@dataclass
class Detection:
    """One detected object: class name, pixel box (x0, y0, x1, y1), confidence, and, when the
    detector knows it (the shapes segmenter does), its color."""
    cls: str
    box: tuple[float, float, float, float]
    score: float = 1.0
    color: str | None = None


def relative_position(box_a: Sequence[float], box_b: Sequence[float],
                      threshold: float = POSITION_THRESHOLD) -> set[str]:
    """GenEval's relation of box A to box B (y grows downward): the centre offset shrunk on each
    axis by ``threshold`` x (sum of both boxes' extent on that axis), divided by the offset's
    length; an axis whose share exceeds 0.5 names a relation (diagonals name two)."""
    ca = ((box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2)
    cb = ((box_b[0] + box_b[2]) / 2, (box_b[1] + box_b[3]) / 2)
    dims = (abs(box_a[2] - box_a[0]) + abs(box_b[2] - box_b[0]),
            abs(box_a[3] - box_a[1]) + abs(box_b[3] - box_b[1]))
    off = (ca[0] - cb[0], ca[1] - cb[1])
    norm = (off[0] ** 2 + off[1] ** 2) ** 0.5
    rev = [max(abs(o) - threshold * d, 0.0) * ((o > 0) - (o < 0)) for o, d in zip(off, dims)]
    if norm == 0 or all(abs(r) < 1e-3 for r in rev):
        return set()
    dx, dy = rev[0] / norm, rev[1] / norm
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """GenEval's IoU (inclusive pixel boxes, hence the +1)."""
    def area(x):
        return max(x[2] - x[0] + 1, 0) * max(x[3] - x[1] + 1, 0)
    i = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    u = area(a) + area(b) - i
    return i / u if u else 0.0


def select(detections: Iterable[Detection], tag: str, threshold: float = THRESHOLD,
           counting_threshold: float = COUNTING_THRESHOLD, max_objects: int = MAX_OBJECTS,
           nms_threshold: float = NMS_THRESHOLD) -> dict[str, list[Detection]]:
    """Per class, the detections GenEval keeps, most confident first: above the confidence
    threshold (stricter for counting), at most ``max_objects``, then class-wise NMS."""
    thr = counting_threshold if tag == "counting" else threshold
    by_cls: dict[str, list[Detection]] = {}
    for d in detections:
        if d.score > thr:
            by_cls.setdefault(d.cls, []).append(d)
    out = {}
    for cls, ds in by_cls.items():
        order = sorted(ds, key=lambda d: -d.score)[:max_objects]
        kept = []
        while order:
            best = order.pop(0)
            kept.append(best)
            order = [d for d in order if nms_threshold == 1 or iou(best.box, d.box) < nms_threshold]
        out[cls] = kept
    return out


ColorFn = Callable[[list[Detection], str], list[str]]


def known_colors(dets: list[Detection], cls: str) -> list[str]:
    """Color classification for detectors that already know each object's color."""
    return [d.color or "" for d in dets]


def evaluate(objects: dict[str, list[Detection]], metadata: dict,
             color_fn: ColorFn = known_colors,
             position_threshold: float = POSITION_THRESHOLD) -> tuple[bool, str]:
    """GenEval's verdict: every ``include`` clause holds (AND) and no ``exclude`` clause does.
    Color and position are judged on the ``count`` most confident objects of the class; a
    position clause ``[relation, group]`` needs every object to hold ``relation`` to every object
    of the earlier matched group."""
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        cls, n = req["class"], req["count"]
        matched = True
        found = objects.get(cls, [])[:n]
        if len(found) < n:
            correct = matched = False
            reasons.append(f"expected {cls}>={n}, found {len(found)}")
        else:
            if "color" in req:
                colors = color_fn(found, cls)
                if colors.count(req["color"]) < n:
                    correct = matched = False
                    seen = ", ".join(f"{colors.count(c)} {c}" for c in dict.fromkeys(colors))
                    reasons.append(f"expected {req['color']} {cls}>={n}, found "
                                   f"{colors.count(req['color'])} {req['color']}; and {seen}")
            if "position" in req and matched:
                rel, target = req["position"]
                if target >= len(groups) or groups[target] is None:
                    correct = matched = False
                    reasons.append(f"no target for {cls} to be {rel}")
                else:
                    for obj in found:
                        for tgt in groups[target]:
                            true_rels = relative_position(obj.box, tgt.box, position_threshold)
                            if rel not in true_rels:
                                correct = matched = False
                                reasons.append(f"expected {cls} {rel} target, found "
                                               f"{' and '.join(sorted(true_rels)) or 'no relation'} target")
                                break
                        if not matched:
                            break
        groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls = req["class"]
        if len(objects.get(cls, [])) >= req["count"]:
            correct = False
            reasons.append(f"expected {cls}<{req['count']}, found {len(objects[cls])}")
    return correct, "\n".join(reasons)


def summarize(results: Iterable[tuple[str, float]]) -> dict[str, float]:
    """``{tag: accuracy, ..., 'overall': mean over tags}`` from ``(tag, score)`` per image."""
    acc: dict[str, list[float]] = {}
    for tag, s in results:
        acc.setdefault(tag, []).append(float(s))
    out = {t: sum(v) / len(v) for t, v in acc.items()}
    if out:
        out["overall"] = sum(out.values()) / len(out)
    return out
