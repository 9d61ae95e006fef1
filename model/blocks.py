"""The multimodal transformer block (MMDiT-style, without adaLN) and a stack of them.

Text and image tokens keep separate weights (norms, QKV, output projection, MLP) and meet in one
joint attention per sample over ``[text_i ; image_i]``. Streams are stored modality-major
(all text rows, then all image rows) so each stream's linear layers run as one matmul; a
host-built permutation turns that into the sample-major order the varlen kernels need.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from djepa_t2i.config import default
from model.attention import Segments, packed_attention
from model.vope import apply_rotary


class RMSNorm(nn.Module):
    """RMSNorm with a learnable scale; computed in float32 (bf16 variance is too coarse)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


@dataclass
class Joint:
    """One packed joint sequence: per sample ``[text_i ; image_i]``, plus rotary tables."""
    seg: Segments
    perm: torch.Tensor     # joint position -> row of cat([text rows, image rows])
    unperm: torch.Tensor   # row of cat([text rows, image rows]) -> joint position
    n_text: int
    rope_t: tuple[torch.Tensor, torch.Tensor]  # cos, sin (N_text, head_dim/2)
    rope_i: tuple[torch.Tensor, torch.Tensor]  # cos, sin (N_image, head_dim/2)


def build_joint(text_lens: list[int], img_lens: list[int], text_angles: torch.Tensor,
                img_angles: torch.Tensor, device) -> Joint:
    n_text = sum(text_lens)
    parts, t0, i0 = [], 0, n_text
    for lt, li in zip(text_lens, img_lens):
        parts += [torch.arange(t0, t0 + lt), torch.arange(i0, i0 + li)]
        t0, i0 = t0 + lt, i0 + li
    perm = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)
    unperm = torch.argsort(perm)
    seg = Segments.from_lengths([a + b for a, b in zip(text_lens, img_lens)], device)
    return Joint(seg, perm.to(device, non_blocking=True), unperm.to(device, non_blocking=True),
                 n_text, (text_angles.cos(), text_angles.sin()), (img_angles.cos(), img_angles.sin()))


class Stream(nn.Module):
    """The per-modality weights of one block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, post: bool = True):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(dim // heads)
        self.k_norm = RMSNorm(dim // heads)
        if post:  # a stream whose output nobody reads only contributes keys and values
            self.proj = nn.Linear(dim, dim)
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            hidden = int(dim * mlp_ratio)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                     nn.Linear(hidden, dim))
        self.post = post

    def qkv_heads(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]):
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).unbind(1)
        q = apply_rotary(self.q_norm(q), *rope)
        k = apply_rotary(self.k_norm(k), *rope)
        return q, k, v

    def finish(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        x = x + self.proj(attn.flatten(1))
        return x + self.mlp(self.norm2(x))


class MultimodalBlock(nn.Module):
    """``separate_text=True``: the D-JEPA·T2I block (paper Fig. 2b), text and image weights apart.
    ``False``: one set of weights for both (a plain ViT block over [condition ; image], as the
    class-conditional D-JEPA and MAR run it with their class-embedding buffer tokens)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, attention: str = default("model.attention"),
                 text_out: bool = True, separate_text: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.image = Stream(dim, heads, mlp_ratio)
        self.text = Stream(dim, heads, mlp_ratio, post=text_out) if separate_text else None
        self.text_out = text_out
        self.attention = attention

    def forward(self, xt: torch.Tensor, xi: torch.Tensor, joint: Joint, need_text: bool = True):
        """-> (text out or None when not needed / not built, image out)."""
        text = self.text or self.image
        qt, kt, vt = text.qkv_heads(xt, joint.rope_t)
        qi, ki, vi = self.image.qkv_heads(xi, joint.rope_i)
        q, k, v = (torch.cat([a, b]).index_select(0, joint.perm) for a, b in
                   ((qt, qi), (kt, ki), (vt, vi)))
        o = packed_attention(q, k, v, joint.seg, self.attention).index_select(0, joint.unperm)
        xi = self.image.finish(xi, o[joint.n_text:])
        if not (need_text and self.text_out):
            return None, xi
        return text.finish(xt, o[:joint.n_text]), xi


class Stack(nn.Module):
    """``depth`` multimodal blocks and a final norm per stream.

    ``text_out=False`` builds the last block without a text output path (SD3's "context pre
    only"): the predictor's text output is never read, and unused weights would only cost
    memory and break DDP's every-parameter-gets-a-gradient rule.
    """

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, attention: str,
                 text_out: bool = True, separate_text: bool = True):
        super().__init__()
        self.blocks = nn.ModuleList(
            MultimodalBlock(dim, heads, mlp_ratio, attention, text_out or i < depth - 1,
                            separate_text)
            for i in range(depth))
        self.norm_t = nn.LayerNorm(dim, eps=1e-6) if text_out else None
        self.norm_i = nn.LayerNorm(dim, eps=1e-6)
        self.grad_checkpointing = False

    def forward(self, xt: torch.Tensor, xi: torch.Tensor, joint: Joint, need_text: bool = True):
        last = len(self.blocks) - 1
        if self.blocks:
            joint.seg.prepare(self.blocks[0].attention, xi.device)
        for j, blk in enumerate(self.blocks):
            nt = need_text or j < last
            if self.grad_checkpointing and torch.is_grad_enabled():
                xt, xi = checkpoint(blk, xt, xi, joint, nt, use_reentrant=False)
            else:
                xt, xi = blk(xt, xi, joint, nt)
        xt = self.norm_t(xt) if xt is not None and self.norm_t is not None else None
        return xt, self.norm_i(xi)


def init_weights(module: nn.Module) -> None:
    """Xavier-uniform linears, zero biases, unit norms (as in MAR / DiT)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


