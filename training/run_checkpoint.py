"""What a Trainer writes into a checkpoint directory and reads back (training/checkpoints.py is
the protocol: stage, ``COMPLETE``, rename, register, prune).

* ``model.safetensors`` / ``ema.safetensors`` / ``meta.json`` (a ``model.checkpoint`` checkpoint),
  or ``state/`` (an FSDP run: ``torch.distributed.checkpoint`` shards, resharded on load);
* ``trainer.pt``: optimizer (DDP runs), scheduler, step, world size;
* ``stream.pt``: the global data stream (sampler + packer look-ahead), the same on every rank;
* ``rank-NNN.pt`` per rank: its token-drop RNG, torch/CUDA RNG and masking generator.

A checkpoint written by N ranks resumes on M: the stream is global (training/data.py), whole
weights load anywhere, DCP reshards sharded ones, and a rank new to the run keeps fresh seeds.
Every function takes ``tr``, the running ``training.trainer.Trainer``; the trainer imports this
module, so its type is not imported back (that would be an import cycle).
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from model.checkpoint import save_model, write_meta
from training import checkpoints as ckpts
from training.distributed import barrier, rng_state, set_rng_state

log = logging.getLogger("t2i.train")
STREAM = "stream.pt"  # in a checkpoint: the global data stream (sampler + packer look-ahead)


def stream_state(path: Path, world_size: int) -> dict:
    """A checkpoint's global data stream. One written before the stream was global has one
    stream per rank in ``rank-NNN.pt``: a one-rank run's is the global stream."""
    if (path / STREAM).exists():
        return torch.load(path / STREAM, weights_only=True)["stream"]
    if world_size == 1:
        return torch.load(path / "rank-000.pt", weights_only=True)["loader"]["packer"]
    raise ValueError(f"{path}: {world_size} per-rank data streams (a checkpoint from before the "
                     "stream was global); start a new run with train.init_from")


def _torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` through a Python file: a failed write (a full disk) then surfaces as the
    ``OSError`` that caused it (torch's own file writer says only 'unexpected pos N vs M')."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def save(tr: Any) -> Path:
    """Write ``tr``'s checkpoint at its step (a collective: every rank calls it); returns its dir.
    A write that fails (a full disk) removes the stage: nothing half-written stays behind, and the
    rerun with ``--resume auto`` continues from the last complete checkpoint."""
    final = ckpts.final_dir(tr.out, tr.step)
    stage = ckpts.stage_dir(final)
    try:
        return _save(tr, stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _save(tr: Any, stage: Path, final: Path) -> Path:
    t = tr.cfg.train
    meta = {"step": tr.step, "run_id": tr.run_id, "phase": t.phase,
            "weights_version": tr.sampler.weights_version, "world_size": tr.world,
            "loss": tr.last_loss, "text_encoder": tr.text.describe(),
            "config": tr.cfg.model_dump(mode="json")}
    trainer_state = {"scheduler": tr.sched.state_dict(), "step": tr.step, "world_size": tr.world}
    if tr.rank == 0:
        shutil.rmtree(stage, ignore_errors=True)
    if tr.sharded:
        barrier()
        ckpts.save_sharded(stage, tr.model, tr.opt, tr.ema.state_dict())
        if tr.rank == 0:
            write_meta(stage, tr.raw, meta)
            _torch_save(trainer_state, stage / "trainer.pt")
    elif tr.rank == 0:
        save_model(str(stage), tr.raw, tr.ema.state_dict(), meta)
        _torch_save({"optimizer": tr.opt.state_dict(), **trainer_state}, stage / "trainer.pt")
    barrier()
    loader = tr.loader.state_dict()
    if tr.rank == 0:  # the global data stream: the same on every rank
        _torch_save({"stream": loader["packer"], "step": tr.step, "world_size": tr.world,
                     "accum": tr.accum}, stage / STREAM)
    _torch_save({"token_drop": loader["token_drop"], "rng": rng_state(tr.device),
                 "model_rng": tr.gen.get_state(), "step": tr.step, "rank": tr.rank},
                stage / f"rank-{tr.rank:03d}.pt")
    barrier()
    if tr.rank == 0:
        ckpts.commit(stage, final, tr.step, tr.world)
        tr.register_checkpoint(final, tr.step, tr.sampler.weights_version, tr.last_loss)
        ckpts.prune(tr.cfg.lake, tr.out, tr.run_id, t.keep_last)
        log.info("step %d: checkpoint %s", tr.step, final)
    barrier()
    return final


def load_weights(tr: Any, path: Path) -> None:
    """Model and EMA weights only (``train.init_from``)."""
    tr.raw.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    if (path / "ema.safetensors").exists():
        tr.ema.load_state_dict({k: v.to(tr.device) for k, v in load_file(str(path / "ema.safetensors")).items()})
    log.info("initialised weights from %s", path)


def load(tr: Any, path: Path) -> None:
    """Model, optimizer, schedule, the global data stream and this rank's RNG, from a checkpoint
    written by any number of ranks (elastic resume: the stream is global, DCP reshards)."""
    state = torch.load(path / "trainer.pt", weights_only=True)
    if state["world_size"] != tr.world:
        log.info("resuming %s, written by %d ranks, on %d", path, state["world_size"], tr.world)
        if tr.cfg.train.global_batch is None:
            log.warning("train.global_batch is unset: the global batch changes with the ranks "
                        "(%d -> %d micro-batches per step)", state["world_size"], tr.world)
    _load_weights_and_optimizer(tr, path, state)
    tr.sched.load_state_dict(state["scheduler"])
    rank_file = path / f"rank-{tr.rank:03d}.pt"
    rs = torch.load(rank_file, weights_only=True) if rank_file.exists() else None
    loader = {"packer": stream_state(path, state["world_size"])}
    if rs is not None:  # a rank new to this run keeps its fresh seeds
        loader["token_drop"] = rs["token_drop"] if "token_drop" in rs else rs["loader"]["token_drop"]
        set_rng_state(rs["rng"], tr.device)
        tr.gen.set_state(rs["model_rng"])
    tr.loader.load_state_dict(loader)
    tr.step = state["step"]
    if tr.rank == 0 and not ckpts.is_registered(tr.cfg.lake, tr.run_id, tr.step):
        # the run was killed between the rename and the registration: the dir is live, record it
        meta = json.loads((path / "meta.json").read_text())
        tr.register_checkpoint(path, tr.step, meta.get("weights_version"), meta.get("loss", float("nan")))
    log.info("resumed from %s at step %d (weights %s)", path, tr.step, tr.sampler.weights_version)


def _load_weights_and_optimizer(tr: Any, path: Path, state: dict) -> None:
    """Sharded state (an FSDP run) through DCP, which reshards to this run's ranks and also
    loads whole into an unsharded one; a whole checkpoint (one process, or DDP) into an unsharded
    model, or sharded into an FSDP one."""
    if (path / ckpts.SHARDED / ".metadata").is_file():
        ckpts.load_sharded(path, tr.model, tr.opt, tr.ema.state_dict())
        return
    if tr.sharded:
        _load_whole_into_sharded(tr, path, state)
        return
    tr.raw.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    tr.opt.load_state_dict(state["optimizer"])
    if (path / "ema.safetensors").exists():
        tr.ema.load_state_dict({k: v.to(tr.device) for k, v in load_file(str(path / "ema.safetensors")).items()})


def _load_whole_into_sharded(tr: Any, path: Path, state: dict) -> None:
    """A whole checkpoint into FSDP2 shards: every rank reads the whole files and keeps its
    shards. The optimizer state was saved keyed by position in the optimizer's parameter list;
    this run builds that list in the same order (``param_groups``), which names each position."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict  # heavy
    from torch.distributed.tensor import distribute_tensor  # heavy
    names = {id(p): n for n, p in tr.raw.named_parameters()}
    order = [names[id(p)] for g in tr.opt.param_groups for p in g["params"]]
    osd = state["optimizer"]
    fqn = dict(zip([i for g in osd["param_groups"] for i in g["params"]], order, strict=True))
    optim = {"state": {fqn[i]: v for i, v in osd["state"].items()},
             "param_groups": [{**g, "params": [fqn[i] for i in g["params"]]} for g in osd["param_groups"]]}
    set_state_dict(tr.model, tr.opt, model_state_dict=load_file(str(path / "model.safetensors")),
                   optim_state_dict=optim, options=StateDictOptions(full_state_dict=True))
    if (path / "ema.safetensors").exists():
        shadow = tr.ema.state_dict()
        tr.ema.load_state_dict({k: distribute_tensor(v.to(tr.device), shadow[k].device_mesh, shadow[k].placements)
                                for k, v in load_file(str(path / "ema.safetensors")).items()})
