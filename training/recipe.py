"""The optimisation recipe the trainer follows (LR and weight-decay schedules, which weights
decay) and the speed switches it sets on a device (TF32, compiled blocks)."""
from __future__ import annotations

import math

import torch

from model.blocks import MultimodalBlock


def lr_factor(step: int, warmup: int, total: int, schedule: str, end: float = 0.0) -> float:
    """Linear warmup, then constant or cosine decay to ``end`` (a fraction of the peak) at
    ``total``: the paper's phase 1 is cosine 1e-5 -> 1e-6 after 100k warm-up steps (end 0.1),
    phase 2 a constant 5e-5 (§3.1)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def weight_decay_at(step: int, total: int, start: float, end: float | None) -> float:
    """D-JEPA App. B: weight decay ramped linearly from 0.02 to 0.2 over training."""
    if end is None:
        return start
    return start + (end - start) * min(step / max(total, 1), 1.0)


NO_DECAY = ("pred_proj.", "head.")  # D-JEPA App. B: no decay on u_theta, eps_theta (target: frozen)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """[decayed, not decayed] trainable parameters: the prediction MLP and the token head are
    never decayed; the target encoder has no gradient and is not in either group."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (keep if name.startswith(NO_DECAY) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "ramp": True},
            {"params": keep, "weight_decay": 0.0, "ramp": False}]


# ------------------------------------------------------------------------------ speed
def set_fast_math(device: torch.device) -> None:
    """TF32 for the float32 matmuls and convolutions left outside bf16 autocast (the encoders,
    the optimizer's reductions): ~8x the fp32 tensor-core rate on Ampere and later."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def compile_enabled(flag: bool | None, device: torch.device) -> bool:
    """``train.compile``: None means on for CUDA, off on CPU."""
    return device.type == "cuda" if flag is None else flag


def compile_blocks(model: torch.nn.Module) -> None:
    """``torch.compile`` every transformer block in place (context, predictor, target): one graph
    per block with symbolic lengths, so a new packed batch re-uses it (no graph break in a block:
    tests/test_model_attention.py). Blocks, not the whole model, because the per-batch layout
    (masks, permutations, rotary tables) is host work that would only split the graph."""
    for m in model.modules():
        if isinstance(m, MultimodalBlock):
            m.compile(dynamic=None)
