"""Curation filters, one module per filter, each with pluggable backends.

Every filter object has ``name``, ``backend`` and ``__call__(images, emb=None) -> list[Result]``
over a batch of RGB images (``emb``: their normalised CLIP embeddings, for CLIP-head backends
that set ``needs_clip``). ``build(stage, cfg)`` picks the backend named in the config.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Result:
    score: float
    passed: bool
    reason: str | None = None  # set when not passed: what the score means against the threshold
    details: dict[str, Any] = field(default_factory=dict)


MODEL_STAGES = ("aesthetic", "ocr", "nsfw", "face")


def build(stage: str, cfg):
    """The filter for ``stage`` with the backend named in ``cfg.curate.<stage>``."""
    mod = importlib.import_module(f"tasks.filters.{stage}")
    return mod.build(cfg)
