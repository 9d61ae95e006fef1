"""Packed image batches: many images of different sizes in one token sequence.

The data path (feedback sampler) and the model agree on this one structure. Images are
patchified into tokens and concatenated; ``cu_seqlens`` marks where each image starts, so
attention is block-diagonal per sample (variable-length attention) and no padding is spent.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedImages:
    tokens: torch.Tensor            # (N_total, D) patch tokens (pixels or latents), all images
    grids: list[tuple[int, int]]     # per image (h, w) in tokens; N_i = h * w unless dropped
    cu_seqlens: torch.Tensor         # int32 (B + 1,), offsets of each image's tokens in `tokens`
    keep: list[torch.Tensor | None]  # per image: kept token indices (random token drop) or None

    @property
    def batch_size(self) -> int:
        return len(self.grids)

    def to(self, device) -> "PackedImages":
        return PackedImages(self.tokens.to(device), self.grids, self.cu_seqlens.to(device),
                            [k.to(device) if k is not None else None for k in self.keep])


def cu_seqlens_from_lengths(lengths: list[int], device=None) -> torch.Tensor:
    c = torch.zeros(len(lengths) + 1, dtype=torch.int32, device=device)
    c[1:] = torch.tensor(lengths, dtype=torch.int32, device=device).cumsum(0)
    return c
