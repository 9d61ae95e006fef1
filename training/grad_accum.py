"""Gradient accumulation: the paper's global batch on any number of ranks.

``train.global_batch`` is what one optimizer step sees, whatever the cluster: images in phase 1
(every image the same fixed square; the paper's 2048, D-JEPA·T2I §3.1), image tokens in phase 2
(packed batches of varying image sizes, "batch sizes adjusted according to image size"). It is
split as ``world_size x accumulation x one token_budget micro-batch`` per rank.

The update must not depend on that split. D-JEPA·T2I's losses are means over the masked tokens
of a micro-batch, and their count varies with the mask ratios and image sizes; averaging the
micro-batch means would weight a token of a small micro-batch more than one of a large one. So
each micro-batch backpropagates its loss *sum* (mean x its masked-token count), and before the
optimizer step the gradients are divided by the masked-token count of the whole global batch
(all-reduced). Every micro-batch's randomness (masks, caption drop, flow-matching noise, token
drop) is seeded from its global index ``(step x world + rank) x accumulation + i``, so one rank
with four micro-batches and four ranks with one compute the same update from the same samples
(tests/test_grad_accum.py).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from djepa_t2i.config import ConfigError, Train
from training.distributed import all_reduce_sum, grad_sync


def micro_batch_size(train: Train, stride: int) -> tuple[int, str]:
    """One rank's micro-batch in ``global_batch``'s units: (images, "images") in phase 1, where
    every image is the same ``fixed_side`` square; else (``token_budget``, "image tokens")."""
    if train.fixed_side:
        per_image = min((train.fixed_side // stride) ** 2, train.max_image_tokens)
        return train.token_budget // per_image, "images"
    return train.token_budget, "image tokens"


def accumulation_steps(train: Train, stride: int, world: int) -> int:
    """Micro-batches per rank per optimizer step: ``global_batch / (world x micro-batch)``; 1
    when ``global_batch`` is unset (the global batch is then whatever the ranks hold)."""
    if train.global_batch is None:
        return 1
    micro, unit = micro_batch_size(train, stride)
    if unit == "images" and train.lookahead < micro:
        raise ConfigError(f"train.lookahead={train.lookahead} < {micro} images per micro-batch "
                          f"(train.token_budget={train.token_budget}): the micro-batch would not fill")
    per_pass = world * micro
    if train.global_batch % per_pass:
        raise ConfigError(f"train.global_batch={train.global_batch} {unit} is not a multiple of "
                          f"{world} ranks x {micro} {unit} per micro-batch (train.token_budget="
                          f"{train.token_budget}); use a multiple of {per_pass}")
    return train.global_batch // per_pass


def micro_batch_seed(seed: int, index: int, stream: int) -> int:
    """A 63-bit seed for RNG ``stream`` of global micro-batch ``index`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index, stream]).generate_state(1, np.uint64)[0] >> 1)


def seed_micro_batch(seed: int, index: int, *generators: torch.Generator) -> None:
    """Seed torch's default RNGs (flow-matching noise) and ``generators`` for micro-batch ``index``."""
    torch.manual_seed(micro_batch_seed(seed, index, 0))
    for k, g in enumerate(generators, 1):
        g.manual_seed(micro_batch_seed(seed, index, k))


class LossTokens:
    """Counts the loss (masked) tokens of each forward: D-JEPA·T2I's prediction projection
    ``u_theta`` (``pred_proj``) sees exactly the masked tokens' rows, once per forward
    (model/djepa.py ``forward``), so its input's first dimension is the count."""

    def __init__(self, model: torch.nn.Module):
        self.n = 0
        self.handle = model.pred_proj.register_forward_pre_hook(self._count)

    def _count(self, module, args) -> None:
        self.n += int(args[0].shape[0])

    def pop(self) -> int:
        n, self.n = self.n, 0
        return n


def scale_grads(params: Iterable[torch.nn.Parameter], factor: torch.Tensor) -> None:
    """``grad *= factor`` in one fused op; a sharded (FSDP2 DTensor) gradient scales its local shard."""
    grads = [p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad
             for p in params if p.grad is not None]
    if grads:
        torch._foreach_mul_(grads, factor)


def accumulate(model: torch.nn.Module, counter: LossTokens, micro_batches: int,
               step: Callable[[int], dict[str, torch.Tensor]], world: int,
               device: torch.device) -> dict[str, torch.Tensor]:
    """Run ``step(i)`` (load micro-batch ``i``, forward it, return its losses) for each of this
    rank's ``micro_batches`` and backpropagate each loss sum, with the gradient all-reduce only
    on the last; then turn the summed gradients into the mean over the global batch's loss
    tokens. Returns the global batch's losses, token-weighted means over every rank's
    micro-batches (the same on every rank and for any split; device tensors, no host sync)."""
    sums: dict[str, torch.Tensor] = {}
    n_local = 0
    for i in range(micro_batches):
        with grad_sync(model, sync=i == micro_batches - 1):
            out = step(i)
            n = counter.pop()
            (out["loss"] * n).backward()
        n_local += n
        for k, v in out.items():
            sums[k] = sums.get(k, 0) + v.detach().float() * n
    names = list(sums)
    # one all-reduce for the count and the loss sums (torch.full: a fill, not a host copy)
    total = all_reduce_sum(torch.stack([torch.full((), float(n_local), device=device)] + [sums[k] for k in names]))
    count = total[0].clamp_min(1.0)
    # DDP and FSDP2 average the gradients over the ranks: x world / global count = sum / count
    scale_grads(model.parameters(), world / count)
    return {k: total[i + 1] / count for i, k in enumerate(names)}
