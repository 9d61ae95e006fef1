"""Which tokens are hidden: training mask ratios and the sampler's cosine schedule (MAR)."""
from __future__ import annotations

import math

import torch


def mask_ratios(n: int, mean: float = 1.0, std: float = 0.25, low: float = 0.7, high: float = 1.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws from N(mean, std) truncated to [low, high] (inverse CDF, exact)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    a = normal.cdf(torch.tensor((low - mean) / std, dtype=torch.float64))
    b = normal.cdf(torch.tensor((high - mean) / std, dtype=torch.float64))
    u = a + (b - a) * torch.rand(n, generator=generator, dtype=torch.float64)
    u = u.clamp(1e-12, 1 - 1e-12)
    return (mean + std * torch.special.ndtri(u)).clamp(low, high).float()


def num_masked(n_tokens: int, ratio: float) -> int:
    """ceil(ratio * n), at least one token (there must be something to learn), at most all."""
    return max(1, min(n_tokens, math.ceil(ratio * n_tokens))) if n_tokens else 0


def cosine_schedule(n_tokens: int, steps: int) -> list[int]:
    """Tokens known after each of ``steps`` steps (Algorithm 1 / MAR): the masked share after
    step k is cos(pi/2 (k+1)/T); every step but the last keeps at least one token masked and
    predicts at least one while more than one is masked; the last step predicts the rest."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    masked, known = n_tokens, []
    for k in range(steps):
        if k == steps - 1:
            m = 0
        else:
            m = math.floor(n_tokens * math.cos(math.pi / 2 * (k + 1) / steps))
            m = max(1, min(masked - 1, m)) if masked > 0 else 0
        masked = m
        known.append(n_tokens - m)
    return known
