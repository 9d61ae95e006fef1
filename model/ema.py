"""EMA of the trainable weights, kept for evaluation and sampling.

Distinct from the target encoder (which is an EMA of the context encoder *inside* the
objective): this copy tracks every trainable parameter in float32 and is what checkpoints
evaluate with (``load_model(..., ema=True)``). One fused ``_foreach_lerp_`` per update, no host
sync.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn


class EMA:
    def __init__(self, model: nn.Module):
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().float().clone() for n in self.names}

    def _params(self, model: nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        return [params[n] for n in self.names]

    @torch.no_grad()
    def update(self, model: nn.Module, decay: float) -> None:
        """shadow <- decay * shadow + (1 - decay) * weights."""
        src = [p.detach().float() for p in self._params(model)]
        torch._foreach_lerp_(list(self.shadow.values()), src, 1.0 - decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.names) - set(state)
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {sorted(missing)[:3]}")
        for n in self.names:
            self.shadow[n].copy_(state[n])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for p, n in zip(self._params(model), self.names):
            p.copy_(self.shadow[n])

    @contextmanager
    def applied(self, model: nn.Module):
        """Temporarily swap the EMA weights in (e.g. to sample mid-training), then restore."""
        backup = [p.detach().clone() for p in self._params(model)]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for p, b in zip(self._params(model), backup):
                    p.copy_(b)
