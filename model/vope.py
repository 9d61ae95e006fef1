"""Positions: VoPE (vision-oriented position embedding) for image tokens, 1-D RoPE for text.

VoPE maps every token grid onto one field of view of ``fov`` units, so the same content seen at
two resolutions gets the same rotary angles (what makes training at 256 px transfer to 4K), and
centres the shorter side with an offset ``b``. For a W x H grid (W = width in tokens):

    rho = max(W, H) / fov,  b = |W - H| / 2
    (w, h) -> ((w + b) / rho, h / rho)   if W <= H
    (w, h) -> (w / rho, (h + b) / rho)   otherwise

The rotary base frequency is fixed at every resolution (no NTK or YaRN rescaling). ``b`` may be
overridden at generation time to move the content along the shorter side (layout control).
``vope=False`` gives plain 2-D RoPE on integer token coordinates, for the VoPE-vs-RoPE ablation.

The paper's comparison point (§2.2 "Comparison between VoPE and RoPE", Fig. 4a) is RoPE with
NTK-aware scaling at sampling time: for ``s`` times the trained token length per axis the rotary
base grows to ``base * s ** (n / (n - 1))`` (Peng & Quesnelle 2023; ``n`` frequencies per axis),
which leaves the highest frequency alone and divides the lowest by ``s`` (the paper's
"omega' = omega / 2" for 2x). ``ntk_base`` gives that base; ``axial_angles(..., ntk_scale=s)``
applies it to the image axes only (text positions keep the trained base).
"""
from __future__ import annotations

import torch


def vope_coords(h: int, w: int, fov: float, b: float | None = None) -> torch.Tensor:
    """(h*w, 2) float32 (x, y) per token in row-major order of an h x w grid."""
    rho = max(w, h) / fov
    b = abs(w - h) / 2 if b is None else float(b)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    if w <= h:
        x, y = (xs + b) / rho, ys / rho
    else:
        x, y = xs / rho, (ys + b) / rho
    return torch.stack([x.flatten(), y.flatten()], -1).float()


def rope2d_coords(h: int, w: int) -> torch.Tensor:
    """(h*w, 2) integer token coordinates: plain 2-D RoPE (grows with resolution)."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten()], -1).float()


def image_coords(h: int, w: int, *, vope: bool, fov: float, b: float | None = None) -> torch.Tensor:
    if not vope:
        if b is not None:
            raise ValueError("offset b is a VoPE control; this model uses plain 2-D RoPE")
        return rope2d_coords(h, w)
    return vope_coords(h, w, fov, b)


def _inv_freq(n: int, base: float) -> torch.Tensor:
    return base ** (-torch.arange(n, dtype=torch.float64) / n)


def ntk_base(base: float, scale: float, n_freqs: int) -> float:
    """NTK-aware rotary base for ``scale`` x the trained length: the lowest of ``n_freqs``
    frequencies ``base ** (-(n-1)/n)`` becomes exactly ``1/scale`` of itself; the highest (1) stays."""
    if scale <= 0:
        raise ValueError(f"NTK scale must be > 0, got {scale}")
    if n_freqs < 2 or scale == 1:
        return float(base)
    return float(base * scale ** (n_freqs / (n_freqs - 1)))


def axial_angles(coords: torch.Tensor, head_dim: int, base: float, ntk_scale: float = 1.0) -> torch.Tensor:
    """(N, 2) coords -> (N, head_dim/2) angles: first half of the pairs rotate with x, second with y.
    ``ntk_scale`` != 1: NTK-aware RoPE for a grid ``ntk_scale`` x the trained one (module doc)."""
    if head_dim % 4:
        raise ValueError(f"axial rotary needs head_dim divisible by 4, got {head_dim}")
    n = head_dim // 4
    f = _inv_freq(n, ntk_base(base, ntk_scale, n)).to(coords.device)
    c = coords.double()
    return torch.cat([c[:, :1] * f, c[:, 1:] * f], -1).float()


def text_angles(lengths: list[int], head_dim: int, base: float) -> torch.Tensor:
    """1-D RoPE angles for packed text: positions restart at 0 in every sample."""
    pos = torch.cat([torch.arange(n, dtype=torch.float64) for n in lengths]) if lengths else \
        torch.zeros(0, dtype=torch.float64)
    return (pos[:, None] * _inv_freq(head_dim // 2, base)).float()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (N, heads, head_dim); cos/sin (N, head_dim/2); rotates interleaved pairs in float32."""
    xf = x.float()
    x1, x2 = xf[..., 0::2], xf[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], -1).flatten(-2)
    return out.to(x.dtype)
