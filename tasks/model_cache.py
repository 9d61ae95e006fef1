"""The set-up stages of one config, loaded once per process (per Dask worker), never per image.

Building a :class:`Pipeline` declares the stages of ``curate.order`` (tasks/stages.py), builds the
one CLIP embedder they share when any of them reads the CLIP embedding (beyond the paper: the
aesthetic and NSFW heads, clip_similarity and semantic_dedup all read the same embedding, computed
once per batch), then calls every stage's ``setup`` with it, and sizes the one decode of each image
from what the stages look at (:func:`decode_size`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from djepa_t2i.config import Backend, Config
from tasks.filters.clip_embed import ClipEmbedder
from tasks.filters.clip_head import ClipHeadFilter
from tasks.stages import CLIP_EMBEDDING, Shared, Stage, declare_stages, stage_device


@dataclass
class Pipeline:
    stages: list[Stage]  # set up, in curate.order
    clip: ClipEmbedder | None  # the shared embedder, when a stage reads CLIP_EMBEDDING
    backends: dict[str, str]  # stage (and "clip") -> what ran, or why it was skipped
    decode: tuple[int, int] | None = None  # (long, short) side every image is decoded to at least; None: full


def decode_size(stages: list[Stage], clip: ClipEmbedder | None) -> tuple[int, int] | None:
    """The largest long side any stage resizes its input to, and the CLIP embedder's short side
    (it resizes the short side, then crops): each JPEG is decoded once, drafted no smaller than
    that. None when a stage needs the full resolution (``side`` None, the default)."""
    sides = [getattr(s, "side", None) for s in stages]
    if not stages or any(v is None for v in sides):
        return None
    return max(sides), clip.image_side if clip is not None else 0


def _clip(cfg: Config, stages: list[Stage]) -> ClipEmbedder | None:
    """The embedder, on the device and batch size of the first CLIP head (else the defaults)."""
    if not any(CLIP_EMBEDDING in s.reads for s in stages):
        return None
    c = cfg.curate
    head = next((s for s in stages if isinstance(s, ClipHeadFilter)), None)
    device, batch_size = (head.device, head.batch_size) if head else (stage_device(cfg), Backend().batch_size)
    return ClipEmbedder(c.clip_model, c.clip_weights, device, batch_size, c.clip_quick_gelu,
                        c.clip_allow_torchscript)


def build_pipeline(cfg: Config) -> Pipeline:
    torch.set_num_threads(1)  # one thread per model: parallelism comes from Dask workers
    declared = declare_stages(cfg)
    built = {s.name: s.backend for s in declared.stages}
    backends = {n: built.get(n) or declared.skipped[n] for n in cfg.curate.order if n in built or n in declared.skipped}
    clip = _clip(cfg, declared.stages)
    if clip is not None:
        backends["clip"] = f"open_clip:{cfg.curate.clip_model}" + ("-quickgelu" if clip.info["quick_gelu"] else "")
    for s in declared.stages:
        s.setup(Shared(clip))
    return Pipeline(declared.stages, clip, backends, decode_size(declared.stages, clip))


_LOADED: dict[str, Pipeline] = {}


def load_pipeline(cfg: Config) -> Pipeline:
    """The pipeline for this config, built once per process: a new config replaces the old one."""
    k = cfg.curate.model_dump_json()
    if k not in _LOADED:
        _LOADED.clear()
        _LOADED[k] = build_pipeline(cfg)
    return _LOADED[k]
