"""The curation stage interface and its registry (in the manner of NeMo-Curator's image filter stages).

A stage is one module ``tasks/filters/<name>.py`` with ``build(cfg) -> Stage | None`` (None: the
stage is off under this config, e.g. backend ``none``). A ``Stage`` declares its ``name``, the
``backend`` that runs, what it ``reads`` of each candidate and which ``pairs`` columns it
``writes``; ``setup(shared)`` loads its models once per worker and ``start_shard(shard)`` forgets
per-shard state; ``process(batch)`` returns one :class:`Result` per candidate, in order. A stage
may say how many pixels it looks at (``side``: the long side it resizes its input to; None, the
default, is the full resolution): the runner decodes each JPEG once, in draft mode, at the smallest
scale that still gives every stage its ``side`` (tasks/model_cache.py). The
per-shard runner (tasks/curate_shard.py) walks ``curate.order`` through :func:`declare_stages`
and never names a stage: a new filter is one new module plus its name in ``curate.order``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np
from pydantic import BaseModel

from djepa_t2i.config import Config, ConfigError, check_values, resolve_device
from warehouse.schema import SCHEMAS

FILTERS_PACKAGE = "tasks.filters"
# What a stage may read of a candidate. The runner acts on one of them: before a stage that reads
# CLIP_EMBEDDING it embeds the candidates that have none yet, once per batch for every stage.
IMAGE, CAPTION, KEY, ROW, CLIP_EMBEDDING = "image", "caption", "key", "row", "clip_embedding"
READS = frozenset({IMAGE, CAPTION, KEY, ROW, CLIP_EMBEDDING})
SKIPPED_NO_CLIP = "skipped: needs CLIP weights (curate.clip_weights)"
S = TypeVar("S", bound=BaseModel)
# the pairs columns the runner sets from a stage's Result (and the shard's), never the stage itself
RUNNER_COLUMNS = frozenset({"shard", "source_path", "run_id", "created_at", "key", "status", "stage", "reason", "score"})


@dataclass
class Result:
    score: float
    passed: bool
    reason: str | None = None  # set when not passed: what the score means against the threshold
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Candidate:
    """A decoded pair still in the running: ``row`` holds its ``pairs`` columns so far."""
    key: str
    row: dict
    image: Any
    emb: np.ndarray | None = None


@dataclass
class Batch:
    """The candidates of one shard that reached a stage, in key order."""
    shard: str
    cands: list[Candidate]

    @property
    def images(self) -> list:
        return [c.image for c in self.cands]

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.cands]

    @property
    def captions(self) -> list[str]:
        return [c.row["caption"] for c in self.cands]

    @property
    def rows(self) -> list[dict]:
        return [c.row for c in self.cands]

    def embeddings(self) -> np.ndarray:
        """The normalised CLIP image embeddings (the runner filled them for CLIP_EMBEDDING readers)."""
        return np.stack([c.emb for c in self.cands])


class Embedder(Protocol):
    """The shared CLIP model (tasks/filters/clip_embed.py): images and texts to normalised vectors."""

    def __call__(self, images: list) -> np.ndarray: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class Shared:
    """What a worker holds once for all its stages."""
    clip: Embedder | None = None


@runtime_checkable
class Stage(Protocol):
    name: str
    backend: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def setup(self, shared: Shared) -> None: ...

    def start_shard(self, shard: str) -> None: ...

    def process(self, batch: Batch) -> list[Result]: ...


class FilterStage:
    """Defaults for a stage: reads the image at full resolution, writes no column, no models, no
    per-shard state.

    An image filter implements ``__call__(images, emb=None) -> list[Result]`` (the form a single
    check uses, e.g. ``t2i check-backends``); ``process`` feeds it the batch."""
    name: str = ""
    backend: str = ""
    reads: tuple[str, ...] = (IMAGE,)
    writes: tuple[str, ...] = ()
    side: int | None = None  # the long side (px) the stage resizes its input to; None: full resolution

    def setup(self, shared: Shared) -> None:
        pass

    def start_shard(self, shard: str) -> None:
        pass

    def process(self, batch: Batch) -> list[Result]:
        return self(batch.images, batch.embeddings() if CLIP_EMBEDDING in self.reads else None)

    def __call__(self, images: list, emb: np.ndarray | None = None) -> list[Result]:
        raise NotImplementedError(f"stage {self.name!r} implements process(batch) only")


@dataclass
class Declared:
    """The stages of ``curate.order`` that run (built, not yet set up) and what the others say."""
    stages: list[Stage]
    skipped: dict[str, str]  # stage name -> why it does not run (shard_runs.backends says so)


def stage_module(name: str, cfg: Config):
    """The module of stage ``name``: ``tasks/filters/<name>.py``, or ``curate.stages.<name>.module``."""
    path = cfg.curate.stages.get(name, {}).get("module") or f"{FILTERS_PACKAGE}.{name}"
    try:
        mod = importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name != path:
            raise  # the module exists and lacks a dependency: say that, not "unknown"
        raise ConfigError(f"curate.order: unknown stage {name!r} (no module {path}; "
                          "docs/curation.md: adding a stage)") from None
    if not callable(getattr(mod, "build", None)):
        raise ConfigError(f"curate.order: {path} is no stage (it has no build(cfg))")
    return mod


def stage_device(cfg: Config, own: str = "auto") -> str:
    """Where a model stage runs: its own ``curate.<stage>.device`` when set (not ``auto``), else
    ``curate.device`` (default cpu; cuda when asked)."""
    return resolve_device(own if own != "auto" else cfg.curate.device)


def stage_settings(cfg: Config, name: str, model: type[S]) -> S:
    """The ``curate.stages.<name>`` values (``module`` aside) validated as the stage's own
    settings ``model``: defaults for what is not set, a bad value is one line."""
    values = {k: v for k, v in cfg.curate.stages.get(name, {}).items() if k != "module"}
    return check_values(model, values, "curate", "stages", name)


def _checked(stage: Stage, name: str) -> Stage:
    """A stage that keeps the interface: its name, known reads, and writes the pairs table holds."""
    if not isinstance(stage, Stage) or stage.name != name:
        raise ConfigError(f"curate.order: the build(cfg) of stage {name!r} returned no Stage named {name!r} "
                          f"(got {type(stage).__name__})")
    if unknown := set(stage.reads) - READS:
        raise ConfigError(f"stage {name!r} reads {sorted(unknown)}; a stage reads some of {sorted(READS)}")
    if bad := set(stage.writes) - (set(SCHEMAS["pairs"].names) - RUNNER_COLUMNS):
        raise ConfigError(f"stage {name!r} writes {sorted(bad)}: a stage writes pairs columns other than "
                          f"{', '.join(sorted(RUNNER_COLUMNS))} (the runner's)")
    return stage


def declare_stages(cfg: Config) -> Declared:
    """The stages of ``cfg.curate.order``, in order, constructed but not set up (cheap: no model
    loads), so a flow can check them before any shard. A stage that reads the CLIP embedding is
    skipped without ``curate.clip_weights``."""
    stages, skipped = [], {}
    for name in cfg.curate.order:
        stage = stage_module(name, cfg).build(cfg)
        if stage is None:
            continue
        stage = _checked(stage, name)
        if CLIP_EMBEDDING in stage.reads and not cfg.curate.clip_weights:
            skipped[name] = SKIPPED_NO_CLIP
        else:
            stages.append(stage)
    return Declared(stages, skipped)


def build_stage(name: str, cfg: Config, shared: Shared | None = None) -> Stage | None:
    """One stage, set up: for a single check (tests, ``t2i check-backends``)."""
    stage = stage_module(name, cfg).build(cfg)
    if stage is not None:
        _checked(stage, name).setup(shared or Shared())
    return stage
