"""One typed configuration for every step: a YAML file plus ``key.sub=value`` overrides
(merged by OmegaConf).

Validation is pydantic's: a bad value fails with the dotted key and the allowed range, on one
line, e.g. ``curate.aesthetic.threshold: Input should be less than or equal to 10 (got 11;
allowed: a number in [0.0, 10.0], or null)``. Each section belongs
to one step; model-backed steps name their ``backend`` and, for production backends, a local
``weights`` path (nothing is ever downloaded).

The sections live in data.py (data path) and train.py (model and training), their base classes in base.py; this
module assembles ``Config`` and holds loading, merging and the one-line errors. Import every
config name from here.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
import os
from types import UnionType
from typing import Any, Literal, Sequence, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le, Lt
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError


from djepa_t2i.config.base import Section, Backend, ConfigError
from djepa_t2i.config.data import Resolution, Dedup, Aesthetic, OCR, NSFW, Face, LaionScores, ClipSimilarity, SemanticDedup, Curate, Recaption, Notions, Shards, DASK_ADDRESS
from djepa_t2i.config.train import TruncNorm, VAE, TextEncoderBackend, DetectorBackend, ClipBackend, Model, Train, Evaluate, Feedback, Schedule, PostTrain, auto_steps

__all__ = ['Section', 'Backend', 'ConfigError', 'Resolution', 'Dedup', 'Aesthetic', 'OCR', 'NSFW', 'Face', 'LaionScores', 'ClipSimilarity', 'SemanticDedup', 'Curate', 'Recaption', 'Notions', 'Shards', 'DASK_ADDRESS', 'TruncNorm', 'VAE', 'TextEncoderBackend', 'DetectorBackend', 'ClipBackend', 'Model', 'Train', 'Evaluate', 'Feedback', 'Schedule', 'PostTrain', 'auto_steps']  # the sections, re-exported: one import for callers


class Config(Section):
    lake: str = "runs/lake"
    seed: int = 0
    # the resolution schedule per training phase (side length in kilopixels), published with
    # sampling weights v0; the live weights version then owns it (feedback may advance it)
    schedule: Schedule = Schedule()
    curate: Curate = Curate()
    recaption: Recaption = Recaption()
    notions: Notions = Notions()
    shards: Shards = Shards()
    model: Model = Model()
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    feedback: Feedback = Feedback()
    post_train: PostTrain = PostTrain()


def is_url(path: str | os.PathLike) -> bool:
    """An object-storage address (``s3://...``): not checked on the local filesystem."""
    return "://" in str(path)


def require_dir(key: str, path: str | os.PathLike) -> None:
    """``path`` must be an existing directory (a step that reads it), checked before any work."""
    if not is_url(path) and not Path(path).is_dir():
        raise ConfigError(f"{key}={str(path)!r}: no such directory (must be an existing directory)")


def require_exists(key: str, path: str | os.PathLike) -> None:
    """``path`` must exist (an input file or folder the step reads), checked before any work."""
    if not Path(path).expanduser().exists():
        raise ConfigError(f"{key}={str(path)!r}: no such file or directory (must exist)")


def require_writable(key: str, path: str | os.PathLike) -> None:
    """``path`` must be a directory this process can write into, or one it can create: the nearest
    existing folder above it must be writable."""
    if is_url(path):
        return
    p = Path(path).expanduser().absolute()
    existing = next(q for q in (p, *p.parents) if q.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={str(path)!r}: {existing} is not a directory (must be a writable directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={str(path)!r}: {existing} is not writable (must be a writable directory)")


def resolve_device(name: str = "auto") -> str:
    """A configured device name: ``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if name != "auto":
        return name
    import torch  # heavy
    return "cuda" if torch.cuda.is_available() else "cpu"


def weight_paths(cfg: Config) -> dict[str, str]:
    """``{config key: path}`` of every local weights path an enabled production backend will read."""
    c, m, e = cfg.curate, cfg.model, cfg.evaluate
    out: dict[str, str | None] = {}
    for stage in ("aesthetic", "ocr", "nsfw", "face"):
        b = getattr(c, stage)
        if stage in c.order and b.backend not in b.offline_backends:
            out[f"curate.{stage}.weights"] = b.weights
    heads = [s for s in ("aesthetic", "nsfw") if s in c.order and getattr(c, s).backend in ("laion-mlp", "clip-mlp")]
    if heads:
        out["curate.clip_weights"] = c.clip_weights
    if cfg.recaption.backend != "alt":
        out["recaption.weights"] = cfg.recaption.weights
    if m.tokenizer == "vae":
        out["model.vae.weights"] = m.vae.weights
        out["model.vae_config"] = m.vae_config
    if m.text_encoder.backend != "offline":
        out["model.text_encoder.weights"] = m.text_encoder.weights
    for key, b in (("evaluate.detector.weights", e.detector), ("evaluate.clip.weights", e.clip)):
        if b.backend != "none":
            out[key] = b.weights
    return {k: v for k, v in out.items() if v}


def missing_weights(cfg: Config) -> list[str]:
    """One line per configured weights path that does not exist on this machine."""
    return [f"{k}={v!r} does not exist (a local path, nothing is downloaded; docs/weights-production.md)"
            for k, v in weight_paths(cfg).items() if not Path(v).expanduser().exists()]


def _type_name(t: Any) -> str:
    if get_origin(t) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(t))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        t, getattr(t, "__name__", str(t)))


def allowed_range(loc: tuple) -> str | None:
    """What the field at ``loc`` (pydantic error location) accepts, read from its declaration:
    ``an integer >= 1, or null``, ``a number in (0, 1]``, ``one of phase1, phase2``."""
    model: Any = Config
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    if info is None or isinstance(model, type) and issubclass(model, BaseModel):
        return None  # a whole section: its validator's message says what is wrong
    args = [a for a in get_args(model) if a is not type(None)] if get_origin(model) in (Union, UnionType) else [model]
    nullable = get_origin(model) in (Union, UnionType) and len(args) < len(get_args(model))
    bounds = {k: getattr(m, k) for m in info.metadata if isinstance(m, (Ge, Gt, Le, Lt))
              for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    lo = (f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else None)
    hi = (f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else None)
    text = " or ".join(_type_name(a) for a in args)
    if lo and hi:
        text += f" in {lo}, {hi}"
    elif lo:
        text += (" >= " if lo[0] == "[" else " > ") + lo[1:]
    elif hi:
        text += (" <= " if hi[-1] == "]" else " < ") + hi[:-1]
    return text + (", or null" if nullable else "")


def _error_line(err: dict) -> str:
    """One pydantic error as ``key: message (got value; allowed: range)``."""
    loc = ".".join(str(x) for x in err["loc"])
    extra = [] if isinstance(err.get("input"), dict) else [f"got {err.get('input')!r}"]
    if err["type"] != "extra_forbidden" and (rng := allowed_range(err["loc"])):
        extra.append(f"allowed: {rng}")
    return f"{loc}: {err['msg']}" + (f" ({'; '.join(extra)})" if extra else "")


def _invalid(e: ValidationError, prefix: tuple = ()) -> ConfigError:
    return ConfigError("invalid config: " + "; ".join(
        _error_line({**err, "loc": (*prefix, *err["loc"])}) for err in e.errors()))


def check_values(model: type[BaseModel], values: dict, *loc: str) -> BaseModel:
    """``values`` validated as ``model`` (e.g. a stage's own settings under ``curate.stages``),
    with the config's one-line error naming the keys under ``loc``."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise _invalid(e, loc) from None


def check_section(name: str, values: dict) -> BaseModel:
    """``values`` (e.g. command-line flags) validated as config section ``name``: the same ranges
    and the same one-line error as a config file."""
    try:
        return Config.model_fields[name].annotation.model_validate(values)
    except ValidationError as e:
        raise _invalid(e, (name,)) from None


def merge_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """``data`` with ``a.b=value`` overrides applied by OmegaConf (its dotlist grammar parses the
    values: ``7``, ``1e-4``, ``null``, ``[a,b]``, ``{width: 96}``)."""
    for o in overrides:
        if "=" not in o or not o.split("=", 1)[0].strip():
            raise ConfigError(f"override {o!r} must look like key.sub=value")
    try:
        merged = OmegaConf.merge(OmegaConf.create(data), OmegaConf.from_dotlist([o.strip() for o in overrides]))
        return OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"override: {str(e).splitlines()[0]}") from None


@lru_cache(maxsize=1)
def _defaults() -> Config:
    return Config()


def default(key: str) -> Any:
    """The config's default of ``key`` (``section.field``), for a keyword default elsewhere that
    must follow the config rather than restate it (tests/test_config_home.py)."""
    obj: Any = _defaults()
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def recorded(config: dict | None, section: str) -> BaseModel:
    """Section ``section`` of a config recorded earlier (a checkpoint's ``meta.json``), validated
    by this version: keys it no longer knows are dropped, keys the record lacks take this
    config's defaults (their one home), so a checkpoint from another version still loads."""
    cls = Config.model_fields[section].annotation
    try:
        return cls.model_validate(_known(cls, (config or {}).get(section) or {}))
    except ValidationError as e:
        raise _invalid(e, ("recorded", section)) from None


def _known(cls: type[BaseModel], values: dict) -> dict:
    """``values`` less the keys ``cls`` (and its nested sections) does not declare."""
    out = {}
    for k, v in values.items():
        if k not in cls.model_fields:
            continue
        sub = cls.model_fields[k].annotation
        out[k] = _known(sub, v) if isinstance(v, dict) and isinstance(sub, type) and issubclass(sub, Section) else v
    return out


# one config file, or several merged in order (``--config configs/phase1.yaml --config
# configs/rehearsal.yaml``: the later file's keys win, mappings merge key by key)
ConfigPaths = str | list[str] | None


def config_list(path: str | Path | Sequence[str | Path] | None) -> list[str]:
    """``path`` as a list of file names (None -> [])."""
    if not path:
        return []
    return [str(path)] if isinstance(path, (str, Path)) else [str(p) for p in path]


def read_yaml(path: str) -> dict:
    """One config file's mapping, or a one-line error."""
    if not Path(path).is_file():
        raise ConfigError(f"--config {path!r}: no such file (a YAML file, e.g. configs/demo_phase1.yaml)")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def merge_files(paths: list[str]) -> dict:
    """The files' mappings merged in order by OmegaConf (a later file overrides an earlier one)."""
    if len(paths) < 2:
        return read_yaml(paths[0]) if paths else {}
    try:
        merged = OmegaConf.merge(*(OmegaConf.create(read_yaml(p)) for p in paths))
        return OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"--config {' + '.join(paths)}: {str(e).splitlines()[0]}") from None


def load_config(path: str | Path | Sequence[str | Path] | None = None, overrides: list[str] | None = None,
                check_paths: bool = True) -> Config:
    """Read the YAML file(s) (if given; several merge in order), apply ``a.b=value`` overrides
    (values parsed as YAML), validate.

    ``check_paths``: every weights path an enabled production backend will read must exist, so a
    typo fails here and not deep inside a running flow (``missing_weights``)."""
    data = merge_files(config_list(path))
    try:
        cfg = Config.model_validate(merge_overrides(data, overrides or []))
    except ValidationError as e:
        raise _invalid(e) from None
    missing = missing_weights(cfg) if check_paths else []
    if missing:
        raise ConfigError("weights not found: " + "; ".join(missing))
    return cfg
