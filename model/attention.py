"""Attention over packed sequences: many samples of different lengths in one tensor.

One function, several kernels. Every backend computes exactly the same thing: full (non-causal)
attention inside each segment of ``cu_seqlens`` and nothing across segments, so a batch of mixed
resolutions spends no compute on padding. ``max_seqlen`` is passed in as a host integer so that
no kernel launch waits on a device-to-host copy.

No backend materialises an N x N score matrix where it runs by default: flash/varlen (CUDA) and the
CPU's fused SDPA kernel (equal lengths, or a per-sample key mask over a padded batch) stream over
keys. Eager ``flex_attention`` on CPU does build the scores (measured 3.4 GiB for two segments of
~4K tokens, tests/test_hires.py), so a CPU flex call above ``FLEX_CPU_MAX_TOKENS`` runs the padded
SDPA path instead: the same attention (tests/test_model_attention.py), in O(N) memory.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

try:  # GPU only; its PyPI release is a source build, so usually absent
    from flash_attn import flash_attn_varlen_func  # type: ignore
except Exception:  # pragma: no cover - depends on the machine
    flash_attn_varlen_func = None

BACKENDS = ("auto", "flash", "varlen", "flex", "sdpa", "loop")
FLEX_CPU_MAX_TOKENS = 2048  # eager CPU flex holds ~H * N^2 floats several times over: 4 heads x 2048^2 ~ 200 MiB


@dataclass
class Segments:
    """Where each sample's tokens live in a packed sequence (host and device views)."""
    cu_seqlens: torch.Tensor  # int32 (B + 1,) on the device of the tokens
    lengths: list[int]        # host copy: no sync needed to size kernels
    max_seqlen: int
    cache: dict = field(default_factory=dict, repr=False)  # masks shared by every layer

    @classmethod
    def from_lengths(cls, lengths: list[int], device) -> "Segments":
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
        return cls(cu.to(device, non_blocking=True), list(lengths), max(lengths, default=0))

    @property
    def total(self) -> int:
        return sum(self.lengths)

    def prepare(self, backend: str, device) -> None:
        """Build the host-derived tables ``backend`` reads, once per batch and before any block
        runs: a compiled block then only reads cached tensors and two ints (``max_seqlen`` and the
        text row count), so a new batch's lengths change no guard but those ints (no graph break,
        no per-batch recompilation; tests/test_model_attention.py)."""
        backend = resolve_backend(backend, torch.device(device))
        if backend == "sdpa":
            self.padded_index(device)
        elif backend == "flex":
            self.doc_ids(device)

    def doc_ids(self, device) -> torch.Tensor:
        if "doc" not in self.cache:
            self.cache["doc"] = torch.repeat_interleave(
                torch.arange(len(self.lengths)), torch.tensor(self.lengths)).to(device, non_blocking=True)
        return self.cache["doc"]

    def padded_index(self, device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(flat index of each packed token in a (B, max_seqlen) grid, key mask (B, 1, 1, L) or
        None when every sample has the same length): what the padded SDPA path needs, built on
        the host once per batch and shared by every layer."""
        if "pad" not in self.cache:
            L = self.max_seqlen
            idx = torch.cat([torch.arange(n) + i * L for i, n in enumerate(self.lengths)]) \
                if self.lengths else torch.zeros(0, dtype=torch.long)
            mask = None
            if len(set(self.lengths)) > 1:
                mask = (torch.arange(L)[None] < torch.tensor(self.lengths)[:, None])[:, None, None]
                mask = mask.to(device, non_blocking=True)
            self.cache["pad"] = (idx.to(device, non_blocking=True), mask)
        return self.cache["pad"]


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown attention backend {backend!r}; choose from {BACKENDS}")
    if backend != "auto":
        if backend == "flash" and flash_attn_varlen_func is None:
            raise RuntimeError("attention backend 'flash' needs the flash_attn package")
        if backend in ("flash", "varlen") and device.type != "cuda":
            raise RuntimeError(f"attention backend {backend!r} has no CPU kernel; use sdpa or flex")
        return backend
    if device.type == "cuda":
        return "flash" if flash_attn_varlen_func is not None else "varlen"
    return "sdpa"


def packed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seg: Segments,
                     backend: str = "auto") -> torch.Tensor:
    """q, k, v: (N, heads, head_dim) packed; returns (N, heads, head_dim)."""
    backend = resolve_backend(backend, q.device)
    if backend in ("flash", "varlen") and q.dtype == torch.float32:  # kernels are 16-bit only
        return packed_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), seg, backend).float()
    if backend == "flash":
        return flash_attn_varlen_func(q, k, v, seg.cu_seqlens, seg.cu_seqlens,
                                      seg.max_seqlen, seg.max_seqlen)
    if backend == "varlen":
        from torch.nn.attention.varlen import varlen_attn  # optional: CUDA builds only
        return varlen_attn(q, k, v, seg.cu_seqlens, seg.cu_seqlens, seg.max_seqlen, seg.max_seqlen)
    if backend == "loop":
        return _loop(q, k, v, seg)
    if backend == "sdpa" or (q.device.type == "cpu" and seg.total > FLEX_CPU_MAX_TOKENS):
        return _padded_sdpa(q, k, v, seg)
    qh, kh, vh = (x.transpose(0, 1).unsqueeze(0) for x in (q, k, v))  # (1, H, N, Dh)
    return _flex(qh, kh, vh, seg).squeeze(0).transpose(0, 1)


def _padded_sdpa(q, k, v, seg: Segments) -> torch.Tensor:
    """SDPA over a (B, H, max_seqlen, Dh) padded batch with a per-sample key mask: O(B L^2)
    work and memory, where one block-diagonal mask over the packed batch costs O((B L)^2)
    (measured 3x slower when sampling). Equal lengths (fixed-size training, generation) need no
    mask at all, so the fused CPU flash kernel runs."""
    idx, mask = seg.padded_index(q.device)
    L, H, D = seg.max_seqlen, q.shape[1], q.shape[2]
    B = idx.shape[0] // max(L, 1) if mask is None else mask.shape[0]  # equal lengths: N = B * L

    def pad(x):
        return x.new_zeros(B * L, H, D).index_copy(0, idx, x).view(B, L, H, D).transpose(1, 2)

    out = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=mask)
    return out.transpose(1, 2).reshape(B * L, H, D).index_select(0, idx)


def _loop(q, k, v, seg: Segments) -> torch.Tensor:
    """Per-sample reference: the definition every fused backend must match."""
    outs, start = [], 0
    for n in seg.lengths:
        s = slice(start, start + n)
        o = F.scaled_dot_product_attention(*(x[s].transpose(0, 1) for x in (q, k, v)))
        outs.append(o.transpose(0, 1))
        start += n
    return torch.cat(outs, 0)


@lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention  # heavy
    return torch.compile(flex_attention, dynamic=True)


def _flex(qh, kh, vh, seg: Segments) -> torch.Tensor:
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # heavy
    if "flex" not in seg.cache:
        doc = seg.doc_ids(qh.device)
        n = doc.numel()

        def same_doc(b, h, qi, ki):
            return doc[qi] == doc[ki]

        seg.cache["flex"] = create_block_mask(same_doc, None, None, n, n, device=qh.device)
    block = seg.cache["flex"]
    if qh.device.type == "cuda":
        return _compiled_flex()(qh, kh, vh, block_mask=block)
    with warnings.catch_warnings():  # eager flex on CPU is the (unfused) reference path, by design
        warnings.simplefilter("ignore", UserWarning)
        return flex_attention(qh, kh, vh, block_mask=block)
