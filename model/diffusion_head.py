"""The diffusion token head of the base D-JEPA (D-JEPA §3.2, L_diff): models p(x_i | z_i) by DDPM.

As D-JEPA App. B (after MAR and ADM): t_max = 1000 with a linear variance schedule from 1e-4 to
2e-2, the noise eps predicted by the shared denoising MLP, ``mul`` draws of t per token (§3.2).
Sampling walks a respaced schedule of ``steps`` timesteps (MAR samples with 100) with DDPM
posterior steps, classifier-free guidance on the predicted noise and MAR's temperature (a scale on
the noise added at each step).

Departure: ADM also learns the covariance Sigma_theta with a variational-bound term; this head
keeps the posterior variance fixed (beta-tilde) and trains the noise MSE only, which keeps one
loss shape for both heads. ``time_shift`` is a flow-ODE control and has no effect here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from djepa_t2i.config import default
from model.denoising_mlp import DenoisingMLP

T_MAX = 1000


class DiffusionHead(nn.Module):
    kind = "diffusion"

    def __init__(self, token_dim: int, cond_dim: int, width: int = 1024, depth: int = 6):
        super().__init__()
        self.token_dim = token_dim
        self.net = DenoisingMLP(token_dim, cond_dim, width, depth)
        self.net.zero_init()
        betas = torch.linspace(1e-4, 2e-2, T_MAX, dtype=torch.float64)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0).float(), persistent=False)

    def loss(self, x: torch.Tensor, z: torch.Tensor, mul: int = 4) -> torch.Tensor:
        """Mean squared noise-prediction error over ``mul`` draws of (t, eps) per token."""
        x = x.repeat(mul, 1).float()
        z = z.repeat(mul, 1)
        t = torch.randint(0, T_MAX, (x.shape[0],), device=x.device)
        a = self.alphas_cumprod[t][:, None]
        eps = torch.randn_like(x)
        xt = a.sqrt() * x + (1 - a).sqrt() * eps
        pred = self.net(xt.to(z.dtype), t.float() / T_MAX, z)
        return F.mse_loss(pred.float(), eps)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, z_uncond: torch.Tensor | None = None, cfg=1.0,
               temperature: float = default("evaluate.temperature"), steps: int = 100,
               time_shift: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        n = z.shape[0]
        ac = self.alphas_cumprod
        ts = torch.linspace(T_MAX - 1, 0, min(steps, T_MAX), device=z.device).round().long()
        x = torch.randn(n, self.token_dim, device=z.device, generator=generator)
        cond = z if z_uncond is None else torch.cat([z, z_uncond])
        for i, t in enumerate(ts):
            xin = x if z_uncond is None else torch.cat([x, x])
            eps = self.net(xin.to(cond.dtype), (t.float() / T_MAX).expand(cond.shape[0]), cond).float()
            if z_uncond is not None:
                eps = eps[n:] + cfg * (eps[:n] - eps[n:])
            a_t = ac[t]
            a_prev = ac[ts[i + 1]] if i + 1 < len(ts) else torch.ones((), device=z.device)
            x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            beta = 1 - a_t / a_prev
            x = (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x) / (1 - a_t)
            if i + 1 < len(ts):
                var = beta * (1 - a_prev) / (1 - a_t)
                noise = torch.randn(x.shape, device=x.device, generator=generator)
                x = x + var.sqrt() * temperature * noise
        return x
