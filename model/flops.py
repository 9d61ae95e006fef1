"""Analytical FLOP counts (multiply-add = 2 FLOPs) for MFU in the benchmarks.

Counts the matmuls that dominate: per multimodal block and token 24 D^2 (QKV 6, out 2, MLP
16 at mlp_ratio 4) plus attention 4 S D (scores and values over a sample's joint length S);
the flow head ~2 x its weights per denoising example. Norms, rotary and softmax are left out
(a few percent), so the MFU reported is a slight underestimate, as is usual.
"""
from __future__ import annotations

from model.djepa import DJEPAT2I
from model.masking import cosine_schedule


def _stack(model: DJEPAT2I, depth: int, seqs: list[int]) -> float:
    d = model.width
    r = model.args["mlp_ratio"]
    per_tok = 2 * (4 + 2 * r) * d * d
    return depth * sum(s * per_tok + 4 * s * s * d for s in seqs)


def _head(model: DJEPAT2I, examples: int) -> float:
    return 2.0 * sum(p.numel() for p in model.head.parameters()) * examples


def train_flops(model: DJEPAT2I, text_lens: list[int], img_lens: list[int], mask_ratio: float) -> float:
    """fwd+bwd (3x) for context encoder, predictor, projection, head; fwd (1x) for the target."""
    a = model.args
    vis = [round(n * (1 - mask_ratio)) for n in img_lens]
    masked = sum(img_lens) - sum(vis)
    enc = _stack(model, a["enc_depth"], [t + v for t, v in zip(text_lens, vis)])
    full = [t + n for t, n in zip(text_lens, img_lens)]
    pred = _stack(model, a["pred_depth"], full)
    tgt = _stack(model, a["enc_depth"], full)
    proj = 2 * 2 * model.width ** 2 * masked
    head = _head(model, masked * model.head_mul)
    return 3 * (enc + pred + proj + head) + tgt


def sample_flops(model: DJEPAT2I, text_len: int, img_len: int, batch: int, steps: int,
                 flow_steps: int, cfg: bool) -> float:
    a, rep = model.args, 2 if cfg else 1
    total, known = 0.0, 0
    for nxt in cosine_schedule(img_len, steps):
        enc = _stack(model, a["enc_depth"], [text_len + known] * batch * rep)
        pred = _stack(model, a["pred_depth"], [text_len + img_len] * batch * rep)
        total += enc + pred + _head(model, (nxt - known) * batch * rep * flow_steps)
        known = nxt
    return total
