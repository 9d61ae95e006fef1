"""The flow-matching head: a small denoising MLP that turns a predicted feature z_i into a token.

Linear path between noise (t = 0) and data (t = 1): x_t = t x + (1 - t) eps, velocity target
x - eps. The MLP is conditioned on z_i and t through adaLN (MAR's SimpleMLPAdaLN with a flow
objective instead of DDPM). Training draws ``mul`` values of t per token and reuses z, so the
heavy transformer runs once per several denoising examples.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
        args = (t.float() * 1000)[:, None] * freqs[None]
        emb = torch.cat([torch.cos(args), torch.sin(args)], -1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ResBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale, gate = self.ada(c).chunk(3, -1)
        return x + gate * self.mlp(modulate(self.norm(x), shift, scale))


class FlowHead(nn.Module):
    def __init__(self, token_dim: int, cond_dim: int, width: int = 1024, depth: int = 6):
        super().__init__()
        self.token_dim = token_dim
        self.t_embed = TimestepEmbedder(width)
        self.c_embed = nn.Linear(cond_dim, width)
        self.x_in = nn.Linear(token_dim, width)
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token_dim)

    def zero_init(self) -> None:
        """adaLN gates and the output start at zero (MAR/DiT): each block starts as identity."""
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        for lin in (self.final_ada[-1], self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Velocity v(x_t, t | z)."""
        c = self.t_embed(t) + self.c_embed(z)
        h = self.x_in(x)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(c).chunk(2, -1)
        return self.out(modulate(self.final_norm(h), shift, scale))

    def loss(self, x: torch.Tensor, z: torch.Tensor, mul: int = 4) -> torch.Tensor:
        """Mean squared velocity error over ``mul`` draws of (t, eps) per token."""
        x = x.repeat(mul, 1)
        z = z.repeat(mul, 1)
        t = torch.rand(x.shape[0], device=x.device)
        eps = torch.randn_like(x, dtype=torch.float32)
        tt = t[:, None]
        xt = (tt * x.float() + (1 - tt) * eps).to(x.dtype)
        v = self.forward(xt, t, z)
        return F.mse_loss(v.float(), x.float() - eps)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, *, z_uncond: torch.Tensor | None = None, cfg: float = 1.0,
               temperature: float = 1.0, steps: int = 32, time_shift: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Euler integration of the flow ODE from t = 0 to 1, with classifier-free guidance.

        ``time_shift`` > 1 spends more steps at high noise (as in SD3), which large images need;
        ``temperature`` scales the starting noise.
        """
        n = z.shape[0]
        x = torch.randn(n, self.token_dim, device=z.device, generator=generator) * temperature
        ts = shifted_times(steps, time_shift, z.device)
        cond = z if z_uncond is None else torch.cat([z, z_uncond])
        for j in range(steps):
            t = ts[j].expand(cond.shape[0])
            xin = x if z_uncond is None else torch.cat([x, x])
            v = self.forward(xin.to(cond.dtype), t, cond).float()
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
