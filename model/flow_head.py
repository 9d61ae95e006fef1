"""The flow-matching token head of D-JEPA·T2I (paper §2.1, Eq. 1): models p(x_i | z_i).

Linear path between noise (t = 0) and data (t = 1): x_t = t x + (1 - t) eps, velocity target
x - eps, regressed by the denoising MLP (model/denoising_mlp.py). Training draws ``mul`` values of
t per token and reuses z (D-JEPA §3.2: "we independently sample t four times for each token"), so
the heavy transformer runs once per several denoising examples. Sampling integrates the flow ODE
with Euler steps, classifier-free guidance and the SD3 time shift (Supp. §7: shift 4.5).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

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
               temperature: float = 1.0, steps: int = 32, time_shift: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Euler integration of the flow ODE from t = 0 to 1, with classifier-free guidance.

        ``time_shift`` > 1 spends more steps at high noise (as in SD3), which large images need;
        ``temperature`` scales the starting noise. ``cfg`` is a float or one scale per token.
        """
        n = z.shape[0]
        x = torch.randn(n, self.token_dim, device=z.device, generator=generator) * temperature
        ts = shifted_times(steps, time_shift, z.device)
        cond = z if z_uncond is None else torch.cat([z, z_uncond])
        for j in range(steps):
            t = ts[j].expand(cond.shape[0])
            xin = x if z_uncond is None else torch.cat([x, x])
            v = self.net(xin.to(cond.dtype), t, cond).float()
            if z_uncond is not None:
                vc, vu = v[:n], v[n:]
                v = vu + cfg * (vc - vu)
            x = x + (ts[j + 1] - ts[j]) * v
        return x


def shifted_times(steps: int, shift: float, device=None) -> torch.Tensor:
    """(steps + 1,) times from 0 (noise) to 1 (data).

    The noise level s = 1 - t is shifted as s -> shift * s / (1 + (shift - 1) s) (SD3)."""
    if steps < 1 or shift <= 0:
        raise ValueError(f"need steps >= 1 and time_shift > 0, got {steps}, {shift}")
    s = 1 - torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    s = shift * s / (1 + (shift - 1) * s)
    return (1 - s).float().to(device)
