"""The small denoising MLP both token heads share (D-JEPA §3.2, MAR's SimpleMLPAdaLN).

Residual blocks of LayerNorm -> Linear -> SiLU -> Linear, conditioned on the predicted feature
z_i plus a timestep embedding through adaLN (shift, scale, gate). The adaLN gates and the output
start at zero, so every block starts as the identity and the first prediction is 0 (D-JEPA App. B:
"the final linear layer is initialized with zeros").
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of a time in [0, 1] (scaled by 1000, as DDPM step indices), then an MLP."""

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


class DenoisingMLP(nn.Module):
    """f(x_t, t | z) -> a ``token_dim`` prediction (a velocity or a noise, per head)."""

    def __init__(self, token_dim: int, cond_dim: int, width: int = 1024, depth: int = 6):
        super().__init__()
        self.t_embed = TimestepEmbedder(width)
        self.c_embed = nn.Linear(cond_dim, width)
        self.x_in = nn.Linear(token_dim, width)
        self.blocks = nn.ModuleList(ResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.out = nn.Linear(width, token_dim)

    def zero_init(self) -> None:
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        for lin in (self.final_ada[-1], self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.forward_cond(x, self.t_embed(t) + self.c_embed(z))

    def forward_cond(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The MLP given its conditioning ``c = t_embed(t) + c_embed(z)``: a sampler computes
        ``c_embed(z)`` once for all its steps and ``t_embed`` once per step for every row."""
        h = self.x_in(x)
        for blk in self.blocks:
            h = blk(h, c)
        shift, scale = self.final_ada(c).chunk(2, -1)
        return self.out(modulate(self.final_norm(h), shift, scale))
