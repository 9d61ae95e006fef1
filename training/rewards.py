"""Rewards for RL post-training as backends, each loaded once per run (issue #27 item 3).

A backend maps (images, prompts) -> one float per image; the run's reward is a weighted sum
of several (``post_train.rewards``: ``{name: weight}``). Prompts are the evaluation prompt dicts
(``prompt`` text, GenEval ``spec``; tasks/shapes_world.py, tasks/evaluators/geneval.py), so the
same prompt sets feed the reward and the held-out metric.

* ``shapes-geneval``: tasks/evaluators/shapes_geneval.py's 0/1 verdict (no weights).
* ``shapes-clauses``: a dense version of it: the share of the spec's clauses that hold, each
  include clause judged together with the ones before it (a position clause needs its target
  group), each exclude clause on its own; 0 for a cluttered image. A binary reward gives a
  group no variance, hence no advantage, until one image succeeds; a tiny model rarely does.
* ``clipscore``: CLIPScore / 100 (open_clip by local path, ``evaluate.clip``; SimpleAR §3.2
  rewards with CLIP ViT-H-14).
* ``geneval``: GenEval's verdict with the configured YOLO detector and CLIP colours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from PIL import Image

from djepa_t2i.config import ConfigError
from tasks.evaluators import geneval_rules as rules
from tasks.evaluators import shapes_geneval as sg
from tasks.evaluators.clipscore import CLIPScorer
from tasks.evaluators.geneval import GenEvalScorer

ScoreFn = Callable[[list[Image.Image], list[dict]], list[float]]


def shapes_verdicts(images: list[Image.Image], prompts: list[dict]) -> list[float]:
    return [sg.score_image(im, p["spec"])[0] for im, p in zip(images, prompts, strict=True)]


def clause_credit(image: Image.Image, spec: dict) -> float:
    """Share of ``spec``'s clauses that hold (module docstring); 1.0 exactly when the 0/1
    verdict is 1 (every include prefix and every exclude clause holds)."""
    img = sg._rgb(image)
    labels = sg.color_labels(img)
    dets = sg.detect(img, labels)
    if sg.clutter(labels, dets) > sg.MAX_CLUTTER:
        return 0.0
    objects = rules.select(dets, spec.get("tag", ""))
    inc, exc = spec.get("include", []), spec.get("exclude", [])
    ok = [rules.evaluate(objects, {"include": inc[:i + 1]})[0] for i in range(len(inc))]
    ok += [rules.evaluate(objects, {"exclude": [e]})[0] for e in exc]
    return sum(ok) / len(ok) if ok else 0.0


def shapes_clauses(images: list[Image.Image], prompts: list[dict]) -> list[float]:
    return [clause_credit(im, p["spec"]) for im, p in zip(images, prompts, strict=True)]


def _clipscore(evaluate) -> ScoreFn:
    if evaluate.clip.backend != "open_clip" or not evaluate.clip.weights:
        raise ConfigError("reward clipscore needs evaluate.clip.backend=open_clip and "
                          "evaluate.clip.weights (a local open_clip file)")
    scorer = CLIPScorer(evaluate.clip_arch, evaluate.clip.weights, evaluate.clip.device)
    return lambda images, prompts: (scorer.score(images, [p["prompt"] for p in prompts]) / 100).tolist()


def _geneval(evaluate) -> ScoreFn:
    scorer = GenEvalScorer.from_config(evaluate)
    return lambda images, prompts: [scorer.score(im, p["spec"])[0] for im, p in zip(images, prompts)]


LOADERS: dict[str, Callable] = {
    "shapes-geneval": lambda ev: shapes_verdicts,
    "shapes-clauses": lambda ev: shapes_clauses,
    "clipscore": _clipscore,
    "geneval": _geneval,
}


@dataclass
class Rewards:
    """The run's loaded backends and their weights; ``__call__`` -> (per backend, weighted sum)."""
    backends: dict[str, ScoreFn]
    weights: dict[str, float]

    def __call__(self, images: list[Image.Image], prompts: list[dict]) -> tuple[dict[str, list[float]], list[float]]:
        per = {n: [float(v) for v in fn(images, prompts)] for n, fn in self.backends.items()}
        total = [sum(self.weights[n] * per[n][i] for n in per) for i in range(len(images))]
        return per, total


def load_backend(name: str, evaluate) -> ScoreFn:
    """One backend by name, its weights (if any) read now, once; ``evaluate``: the config section."""
    if name not in LOADERS:
        raise ConfigError(f"unknown reward {name!r}; choose from {', '.join(sorted(LOADERS))}")
    return LOADERS[name](evaluate)


def load_rewards(weights: dict[str, float], evaluate) -> Rewards:
    """The weighted sum ``weights`` ({name: weight}) with every backend loaded once."""
    if not weights:
        raise ConfigError("post_train.rewards is empty; give at least one {name: weight}")
    return Rewards({n: load_backend(n, evaluate) for n in weights}, dict(weights))
