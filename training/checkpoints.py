"""The checkpoint protocol, in one place for the trainer, evaluation and the demo.

A checkpoint is one directory ``<train.out>/checkpoints/step_NNNNNNNN``. The trainer writes it
under a hidden stage name (``.step_N.partial``), writes the ``COMPLETE`` marker last, renames it
into place, then registers it in the lake ``checkpoints`` table (partition ``<run>-s<step>``).
Readers trust only directories with the marker; a half-written stage of a killed run is never
listed and is removed at the next start. ``keep_last`` prunes older directories and records each
deletion in the lake, so the ``checkpoints_live`` view lists exactly the directories that exist.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from training import lake_io

log = logging.getLogger("t2i.train")
COMPLETE = "COMPLETE"


def checkpoint_id(run_id: str, step: int) -> str:
    """The lake partition name and evaluation id of a checkpoint: ``<run>-s<step:08d>``."""
    return f"{run_id}-s{int(step):08d}"


def checkpoint_dir(out: str) -> Path:
    return Path(out) / "checkpoints"


def final_dir(out: str, step: int) -> Path:
    return checkpoint_dir(out) / f"step_{step:08d}"


def stage_dir(final: Path) -> Path:
    """The hidden name a checkpoint is written under before it is complete."""
    return final.parent / f".{final.name}.partial"


def is_complete(path: str | Path) -> bool:
    """A directory the trainer finished: marker, description and weights (whole or sharded) present."""
    p = Path(path)
    return (p.is_dir() and all((p / f).is_file() for f in (COMPLETE, "meta.json"))
            and ((p / "model.safetensors").is_file() or (p / SHARDED / ".metadata").is_file()))


def list_checkpoints(out: str) -> list[Path]:
    """Complete checkpoints, oldest first (staged or half-written ones are ignored)."""
    d = checkpoint_dir(out)
    if not d.exists():
        return []
    return sorted(p for p in d.iterdir()
                  if p.is_dir() and p.name.startswith("step_") and (p / COMPLETE).exists())


def _manifest(stage: Path) -> dict[str, list]:
    """``{relative path: [size, sha256]}`` of every file of a written stage but the marker."""
    files = {}
    for f in sorted(stage.rglob("*")):
        if f.is_file() and f.name != COMPLETE:
            with open(f, "rb") as fh:
                files[f.relative_to(stage).as_posix()] = [f.stat().st_size, hashlib.file_digest(fh, "sha256").hexdigest()]
    return files


def damage(path: str | Path, hashes: bool = True) -> str | None:
    """Why a checkpoint must not be used (a file missing, cut short or changed since its
    ``COMPLETE`` marker recorded sizes and sha256), or None. Markers written before sizes were
    recorded carry no ``files`` and are trusted as before. ``hashes=False`` checks sizes only:
    a pre-flight check that does not read a multi-GB checkpoint once more."""
    p = Path(path)
    try:
        files = json.loads((p / COMPLETE).read_text()).get("files")
    except (OSError, ValueError) as e:
        return f"unreadable {COMPLETE} marker: {type(e).__name__}: {e}"
    for rel, (size, sha) in (files or {}).items():
        f = p / rel
        if not f.is_file():
            return f"{rel}: missing"
        if f.stat().st_size != size:
            return f"{rel}: {f.stat().st_size} bytes, {size} recorded (truncated or overwritten)"
        if not hashes:
            continue
        with open(f, "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() != sha:
                return f"{rel}: sha256 differs from the recorded one (corrupted)"
    return None


def latest(out: str) -> Path | None:
    """The newest intact checkpoint; each damaged newer one is logged with its bad file and skipped."""
    for p in reversed(list_checkpoints(out)):
        why = damage(p)
        if why is None:
            return p
        log.warning("checkpoint %s is damaged (%s); falling back to an older one", p, why)
    return None


def resolve_resume(resume: str | None, out: str, hashes: bool = True) -> Path | None:
    """``auto`` -> the latest complete checkpoint (None for a fresh start); a path must be complete
    and intact (``hashes``: see :func:`damage`)."""
    if not resume:
        return None
    if resume == "auto":
        return latest(out)
    p = Path(resume)
    if not (p / COMPLETE).exists():
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint (no {COMPLETE} marker)")
    if why := damage(p, hashes):
        raise ValueError(f"--resume {resume}: damaged checkpoint: {why}")
    return p


def clean_stale_stages(out: str) -> None:
    """Half-written ``.step_N.partial`` dirs of a killed run: never listed, removed at start."""
    d = checkpoint_dir(out)
    for p in d.glob(".step_*.partial") if d.exists() else ():
        shutil.rmtree(p, ignore_errors=True)
        log.info("removed a half-written checkpoint %s", p)


def commit(stage: Path, final: Path, step: int, world_size: int) -> None:
    """Mark a fully written stage ``COMPLETE`` (with each file's size and sha256, checked before
    use by :func:`damage`) and rename it into place (replacing ``final``)."""
    files = _manifest(stage)
    (stage / COMPLETE).write_text(json.dumps({"step": step, "world_size": world_size, "files": files}))
    if final.exists():
        shutil.rmtree(final)
    os.rename(stage, final)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def register(lake: str, path: Path, run_id: str, step: int, phase: str, weights_version: str | None,
             loss: float, config: dict, world_size: int) -> None:
    """Record a committed checkpoint in the lake ``checkpoints`` table (idempotent per step)."""
    lake_io.write_rows(lake, "checkpoints", checkpoint_id(run_id, step), [{
        "run_id": run_id, "step": step, "path": str(path.resolve()), "phase": phase,
        "weights_version": weights_version, "loss": loss, "created_at": _now(),
        "config": json.dumps(config), "world_size": world_size, "deleted": False}])


def is_registered(lake: str, run_id: str, step: int) -> bool:
    return lake_io.has_partition(lake, "checkpoints", checkpoint_id(run_id, step))


def prune(lake: str, out: str, run_id: str, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints and record each deletion."""
    for old in list_checkpoints(out)[:-keep]:
        step = int(old.name.split("_")[1])
        shutil.rmtree(old)
        lake_io.write_rows(lake, "checkpoints", checkpoint_id(run_id, step) + "-deleted", [{
            "run_id": run_id, "step": step, "path": str(old.resolve()), "deleted": True,
            "created_at": _now()}])


def live(lake: str) -> list[dict]:
    """Registered checkpoints whose directories were not pruned, oldest first."""
    return lake_io.live_checkpoints(lake)


# ------------------------------------------------------------------------------ FSDP2: sharded state
SHARDED = "state"  # torch.distributed.checkpoint directory inside a checkpoint (FSDP runs)


def save_sharded(path: Path, model, opt, ema_state: dict) -> None:
    """Every rank writes its own shards of model, optimizer and EMA state (no gather anywhere);
    a collective: all ranks call it. ``model.checkpoint.load_model`` reads it back unsharded."""
    import torch.distributed.checkpoint as dcp  # heavy
    from torch.distributed.checkpoint.state_dict import get_state_dict  # heavy
    model_state, opt_state = get_state_dict(model, opt)
    dcp.save({"model": model_state, "optimizer": opt_state, "ema": ema_state},
             checkpoint_id=str(path / SHARDED))


def load_sharded(path: Path, model, opt, ema_state: dict) -> None:
    """Load a :func:`save_sharded` checkpoint into a sharded model and optimizer (the world size
    may differ: DCP reshards), and ``ema_state``'s tensors in place."""
    import torch.distributed.checkpoint as dcp  # heavy
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict  # heavy
    model_state, opt_state = get_state_dict(model, opt)
    state = {"model": model_state, "optimizer": opt_state, "ema": ema_state}
    dcp.load(state, checkpoint_id=str(path / SHARDED))
    set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
