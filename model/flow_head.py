"""The flow-matching token head of D-JEPA·T2I (paper §2.1, Eq. 1): models p(x_i | z_i).

Linear path between noise (t = 0) and data (t = 1): x_t = t x + (1 - t) eps, velocity target
x - eps, regressed by the denoising MLP (model/denoising_mlp.py). Training draws ``mul`` values of
t per token and reuses z (D-JEPA §3.2: "we independently sample t four times for each token"), so
the heavy transformer runs once per several denoising examples. Sampling integrates the flow ODE
with Euler steps, classifier-free guidance and the SD3 time shift (Supp. §7: shift 4.5).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from djepa_t2i.config import default
from model.denoising_mlp import DenoisingMLP


class FlowHead(nn.Module):
    kind = "flow"

    def __init__(self, token_dim: int, cond_dim: int, width: int = 1024, depth: int = 6):
        super().__init__()
        self.token_dim = token_dim
        self.net = DenoisingMLP(token_dim, cond_dim, width, depth)
        self.net.zero_init()

    def loss(self, x: torch.Tensor, z: torch.Tensor, mul: int = 4) -> torch.Tensor:
        """Mean squared velocity error over ``mul`` draws of (t, eps) per token."""
        x = x.repeat(mul, 1)
        z = z.repeat(mul, 1)
        t = torch.rand(x.shape[0], device=x.device)
        eps = torch.randn_like(x, dtype=torch.float32)
        tt = t[:, None]
        xt = (tt * x.float() + (1 - tt) * eps).to(x.dtype)
        v = self.net(xt, t, z)
        return F.mse_loss(v.float(), x.float() - eps)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, z_uncond: torch.Tensor | None = None, cfg=1.0,
               temperature: float = default("evaluate.temperature"), steps: int = 32, time_shift: float = 1.0,
               generator: torch.Generator | None = None, compile: bool = False) -> torch.Tensor:
        """Euler integration of the flow ODE from t = 0 to 1, with classifier-free guidance.

        ``time_shift`` > 1 spends more steps at high noise (as in SD3), which large images need;
        ``temperature`` scales the starting noise. ``cfg`` is a float or one scale per token.

        Launch overhead: everything that does not change along the ODE is computed once (the
        conditional and unconditional rows side by side, their ``c_embed``, the time embedding
        of every step), so one Euler step is the MLP on fixed shapes and nothing else;
        ``compile`` runs that step through ``torch.compile(fullgraph=True)``, with CUDA graphs
        on a GPU (:func:`compiled_euler_step`).
        """
        n = z.shape[0]
        x = torch.randn(n, self.token_dim, device=z.device, generator=generator) * temperature
        ts = shifted_times(steps, time_shift, z.device)
        guided = z_uncond is not None
        c_z = self.net.c_embed(torch.cat([z, z_uncond]) if guided else z)
        c_t = self.net.t_embed(ts[:-1])  # (steps, width): one time for all rows at each step
        dts = (ts[1:] - ts[:-1]).unbind()
        step = compiled_euler_step(z.device.type) if compile else euler_step
        for j in range(steps):
            x = step(self.net, x, c_z + c_t[j], dts[j], cfg, guided)
        return x.clone() if compile else x


def euler_step(net: DenoisingMLP, x: torch.Tensor, c: torch.Tensor, dt: torch.Tensor, cfg,
               guided: bool) -> torch.Tensor:
    """One Euler step x + dt * v; guided: ``c`` holds the conditional rows, then the
    unconditional ones, and v = v_u + cfg (v_c - v_u) (classifier-free guidance)."""
    xin = torch.cat([x, x]) if guided else x
    v = net.forward_cond(xin.to(c.dtype), c).float()
    if guided:
        vc, vu = v.chunk(2)
        v = vu + cfg * (vc - vu)
    return x + dt * v


@lru_cache(maxsize=None)
def compiled_euler_step(device_type: str) -> Callable:
    """:func:`euler_step` as one graph (``fullgraph=True``: a break would fail loudly). On CUDA
    ``reduce-overhead`` replays it as a CUDA graph per row count (one launch per step instead of
    ~10 per MLP block); elsewhere Inductor fuses the elementwise work around the matmuls."""
    mode = "reduce-overhead" if device_type == "cuda" else None
    return torch.compile(euler_step, fullgraph=True, dynamic=None, mode=mode)


def shifted_times(steps: int, shift: float, device=None) -> torch.Tensor:
    """(steps + 1,) times from 0 (noise) to 1 (data).

    The noise level s = 1 - t is shifted as s -> shift * s / (1 + (shift - 1) s) (SD3)."""
    if steps < 1 or shift <= 0:
        raise ValueError(f"need steps >= 1 and time_shift > 0, got {steps}, {shift}")
    s = 1 - torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    s = shift * s / (1 + (shift - 1) * s)
    return (1 - s).float().to(device)
