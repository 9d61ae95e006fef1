"""The process group the trainer runs in: ranks, devices, collectives and the DDP / FSDP2 wrapper.

One process per rank (torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); gloo on CPU, NCCL
on GPU. Every helper is a no-op without a process group, so one process runs the same code.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from djepa_t2i.config import resolve_device


def dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int) -> torch.device:
    """``auto`` on a GPU machine: this rank's own GPU (``cuda:LOCAL_RANK``)."""
    name = resolve_device(name)
    return torch.device(f"cuda:{local_rank}" if name == "cuda" else name)


def init_distributed(device: torch.device) -> None:
    rank, world, _ = dist_env()
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=dt.timedelta(minutes=30))


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast(obj):
    """Rank 0's ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the ranks, in place (on the device: no host sync)."""
    if dist.is_initialized():
        dist.all_reduce(x)
    return x


def wrap(model: torch.nn.Module, device: torch.device, fsdp: bool,
         accumulate: bool = False) -> torch.nn.Module:
    """DDP, or FSDP2 ``fully_shard`` per transformer block then the root; unchanged alone.
    ``accumulate``: several micro-batches per step (:func:`grad_sync` skips the all-reduce)."""
    if not dist.is_initialized():
        return model
    if fsdp:
        from torch.distributed.fsdp import fully_shard  # heavy
        for stack in (model.context.stack, model.predictor):
            for block in stack.blocks:
                fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP  # heavy
    ids = [device.index] if device.type == "cuda" else None
    # the predictor's last text-stream MLP and norm never reach the loss (only image outputs are
    # used), the same every step: static_graph skips them without a graph walk. It cannot be
    # combined with no_sync (reducer.cpp "expect_autograd_hooks_" assert, torch 2.14), so an
    # accumulating run finds them by walking the graph once per micro-batch instead
    if accumulate:
        return DDP(model, device_ids=ids, find_unused_parameters=True)
    return DDP(model, device_ids=ids, static_graph=True)


@contextmanager
def grad_sync(model: torch.nn.Module, sync: bool) -> Iterator[None]:
    """Run a micro-batch's forward and backward with the gradient all-reduce on (``sync``) or
    off: DDP's ``no_sync`` / FSDP2's ``set_requires_gradient_sync(False)``, so an accumulated
    step communicates once, on its last micro-batch."""
    if sync or not dist.is_initialized():
        yield
    elif hasattr(model, "no_sync"):  # DDP
        with model.no_sync():
            yield
    elif hasattr(model, "set_requires_gradient_sync"):  # FSDP2 (FSDPModule)
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def rng_state(device: torch.device) -> dict:
    s = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        s["cuda"] = torch.cuda.get_rng_state(device)
    return s


def set_rng_state(s: dict, device: torch.device) -> None:
    torch.set_rng_state(s["torch"])
    if device.type == "cuda" and "cuda" in s:
        torch.cuda.set_rng_state(s["cuda"], device)
