"""D-JEPA·T2I: denoising joint-embedding predictive architecture for text-to-image.

Three stacks of multimodal blocks over packed, variable-resolution batches:

* context encoder phi: text + the visible image tokens,
* feature predictor gamma: phi's text output + phi's visible outputs + mask tokens at the
  masked positions, producing z_i for every image token,
* target encoder phi-bar: an EMA copy of phi (no gradient) over text + all image tokens -> g_i.

Losses on masked tokens only: flow matching of the token x_i given z_i (model/flow_head.py; the
base D-JEPA's DDPM loss with ``head="diffusion"``, model/diffusion_head.py) and smooth-L1
between a 2-layer projection of z_i and g_i. Generation is Algorithm 1 (generalized
next-token prediction): a cosine schedule over T steps in a random order, each step predicting a
set of tokens with the flow ODE, with classifier-free guidance against a learned null caption.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from djepa_t2i.config import default
from model.batch import PackedImages
from model.blocks import Joint, Stack, build_joint, init_weights
from model.diffusion_head import DiffusionHead
from model.flow_head import FlowHead
from model.masking import cosine_schedule, mask_ratios, num_masked
from model.text_encoder import TextStates
from model.tokenizers import build_tokenizer
from model.vope import axial_angles, image_coords, text_angles


@dataclass
class TextInput:
    """Packed captions for one forward: which rows of ``states`` feed which sample, or the null."""
    flat: torch.Tensor     # (B * L, D_text) the padded states, flattened
    sel: torch.Tensor      # rows of ``flat`` that are real tokens of a used caption
    rows: torch.Tensor     # per packed text token: row of cat([embed(flat[sel]), null])
    lengths: list[int]     # text tokens per sample (1 for the null caption)


class ContextEncoder(nn.Module):
    """phi: input embeddings (image tokens, text states, null caption) and a block stack."""

    def __init__(self, token_dim: int, text_dim: int, width: int, depth: int, heads: int,
                 mlp_ratio: float, attention: str, separate_text: bool = True):
        super().__init__()
        self.img_embed = nn.Linear(token_dim, width)
        self.text_embed = nn.Linear(text_dim, width)
        self.null_text = nn.Parameter(torch.zeros(1, width))
        self.stack = Stack(width, depth, heads, mlp_ratio, attention, separate_text=separate_text)

    def embed_text(self, t: TextInput) -> torch.Tensor:
        e = self.text_embed(t.flat.index_select(0, t.sel))
        return torch.cat([e, self.null_text.to(e.dtype)]).index_select(0, t.rows)

    def forward(self, img_tokens: torch.Tensor, text: TextInput, joint: Joint, need_text: bool = True):
        return self.stack(self.embed_text(text), self.img_embed(img_tokens), joint, need_text)


HEADS = {"flow": FlowHead, "diffusion": DiffusionHead}


class DJEPAT2I(nn.Module):
    """``separate_text``: multimodal blocks with their own text weights (D-JEPA·T2I, Fig. 2b);
    False shares one set of weights (a plain ViT over [condition ; image]: the base D-JEPA).
    ``head``: "flow" (D-JEPA·T2I, Eq. 1) or "diffusion" (D-JEPA's DDPM loss). ``head_mul``: t
    draws per masked token (D-JEPA §3.2: four)."""

    def __init__(self, token_dim: int, text_dim: int, width: int = 768, enc_depth: int = 6,
                 pred_depth: int = 6, heads: int = 12, mlp_ratio: float = 4.0,
                 head_width: int = 1024, head_depth: int = 6, vope: bool = default("model.vope"),
                 vope_fov: float = default("model.vope_fov"), rope_base: float = 10000.0,
                 text_drop: float = default("model.text_drop"), pred_weight: float = 1.0, head_mul: int = 4,
                 mask_min: float = 0.7, mask_std: float = 0.25, attention: str = default("model.attention"),
                 separate_text: bool = True, head: str = default("model.head"), ntk_scale: float = 1.0,
                 name: str = "custom"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown token head {head!r}; choose from {sorted(HEADS)}")
        self.args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.token_dim, self.text_dim, self.width = token_dim, text_dim, width
        self.head_dim = width // heads
        self.vope, self.vope_fov, self.rope_base = vope, vope_fov, rope_base
        self.ntk_scale = ntk_scale  # NTK-aware RoPE at sampling (model.vope.ntk_base); 1 = as trained
        self.text_drop, self.pred_weight, self.head_mul = text_drop, pred_weight, head_mul
        self.mask_min, self.mask_std = mask_min, mask_std
        self.context = ContextEncoder(token_dim, text_dim, width, enc_depth, heads, mlp_ratio,
                                      attention, separate_text)
        self.mask_token = nn.Parameter(torch.zeros(1, width))
        self.predictor = Stack(width, pred_depth, heads, mlp_ratio, attention, text_out=False,
                               separate_text=separate_text)
        self.pred_proj = nn.Sequential(nn.Linear(width, width), nn.GELU(approximate="tanh"),
                                       nn.Linear(width, width))
        self.head = HEADS[head](token_dim, width, head_width, head_depth)
        init_weights(self)
        self.head.net.zero_init()  # adaLN gates and output at zero (D-JEPA App. B)
        for p in (self.mask_token, self.context.null_text):
            nn.init.normal_(p, std=0.02)
        self.target = copy.deepcopy(self.context).requires_grad_(False)
        self.tokenizer = None  # set by build_model / load_model; used by generate()

    # ----------------------------------------------------------------- layout helpers
    def set_grad_checkpointing(self, on: bool = True) -> None:
        for stack in (self.context.stack, self.predictor, self.target.stack):
            stack.grad_checkpointing = on

    def _text_input(self, text: TextStates, sources: list[int | None], device) -> TextInput:
        lens_all = text.seq_lengths()
        L = text.states.shape[1]
        used = [s for s in sources if s is not None]
        sel = [torch.arange(s * L, s * L + lens_all[s]) for s in used]
        n_sel = sum(lens_all[s] for s in used)
        rows, lengths, pos = [], [], 0
        for s in sources:
            if s is None:
                rows.append(torch.tensor([n_sel]))
                lengths.append(1)
            else:
                rows.append(torch.arange(pos, pos + lens_all[s]))
                lengths.append(lens_all[s])
                pos += lens_all[s]
        flat = text.states.to(device).reshape(-1, text.states.shape[-1])
        return TextInput(flat, self._gather(sel, device), self._gather(rows, device), lengths)

    def _coords(self, grids, keep, device, b: float | None = None) -> torch.Tensor:
        out = []
        for (h, w), k in zip(grids, keep):
            c = _cached_coords(h, w, self.vope, self.vope_fov, b).to(device, non_blocking=True)
            out.append(c if k is None else c.index_select(0, k.to(device)))
        return torch.cat(out)

    def _joint(self, text_lens, img_lens, img_coords: torch.Tensor, device) -> Joint:
        ta = text_angles(text_lens, self.head_dim, self.rope_base).to(device, non_blocking=True)
        ia = axial_angles(img_coords, self.head_dim, self.rope_base, self.ntk_scale)
        return build_joint(text_lens, img_lens, ta, ia, device)

    @staticmethod
    def _gather(index_lists: list[torch.Tensor], device) -> torch.Tensor:
        x = torch.cat(index_lists) if index_lists else torch.zeros(0, dtype=torch.long)
        return x.to(device, non_blocking=True)

    def _predict(self, img_tokens, vis_idx, n_img, text_in, enc_joint, full_joint):
        """phi on visible tokens, then gamma on all positions -> z for every image token."""
        xt, xv = self.context(img_tokens.index_select(0, vis_idx), text_in, enc_joint)
        x = self.mask_token.to(xv.dtype).expand(n_img, -1).index_copy(0, vis_idx, xv)
        _, z = self.predictor(xt, x, full_joint, need_text=False)
        return z

    # ----------------------------------------------------------------- training
    def forward(self, images: PackedImages, text: TextStates,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Losses for one packed batch. ``generator`` (CPU) drives caption dropout and masks."""
        dev = images.tokens.device
        B = images.batch_size
        if len(text) != B:
            raise ValueError(f"{B} images but {len(text)} captions")
        lens = [k.numel() if k is not None else h * w for (h, w), k in zip(images.grids, images.keep)]
        drop = (torch.rand(B, generator=generator) < self.text_drop).tolist() if self.training \
            else [False] * B
        text_in = self._text_input(text, [None if d else i for i, d in enumerate(drop)], dev)
        ratios = mask_ratios(B, 1.0, self.mask_std, self.mask_min, 1.0, generator).tolist()
        vis, msk, off = [], [], 0
        for n, r in zip(lens, ratios):
            order = torch.randperm(n, generator=generator) + off
            m = num_masked(n, r)
            msk.append(order[:m])
            vis.append(order[m:])
            off += n
        vis_idx, msk_idx = self._gather(vis, dev), self._gather(msk, dev)
        coords = self._coords(images.grids, images.keep, dev)
        enc_joint = self._joint(text_in.lengths, [v.numel() for v in vis],
                                coords.index_select(0, vis_idx), dev)
        full_joint = self._joint(text_in.lengths, lens, coords, dev)

        z = self._predict(images.tokens, vis_idx, off, text_in, enc_joint, full_joint)
        z = z.index_select(0, msk_idx)
        with torch.no_grad():
            _, g = self.target(images.tokens, text_in, full_joint, need_text=False)
            g = F.layer_norm(g.index_select(0, msk_idx).float(), (self.width,))
        loss_pred = F.smooth_l1_loss(self.pred_proj(z).float(), g)
        loss_head = self.head.loss(images.tokens.index_select(0, msk_idx), z, self.head_mul)
        loss = loss_head + self.pred_weight * loss_pred
        return {"loss": loss, "loss_head": loss_head.detach(), "loss_pred": loss_pred.detach()}

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """Target encoder <- decay * target + (1 - decay) * context encoder (one fused op)."""
        torch._foreach_lerp_(list(self.target.parameters()), list(self.context.parameters()),
                             1.0 - decay)

    # ----------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(self, text: TextStates, sizes: list[tuple[int, int]], *, steps: int, cfg: float,
                 cfg_schedule: str, temperature: float, flow_steps: int, time_shift: float, seed: int,
                 offset_b: float | None = None, tokenizer=None,
                 on_step: Callable[[int, list[int]], None] | None = None,
                 compile: bool = False, _always_uncond: bool = False) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        """Algorithm 1. ``sizes`` are pixel (H, W), any aspect; returns each image's sampled
        tokens (n, token_dim) with its token grid. Decoding to pixels is the engine's
        (``training.generation.decode``), as in MAR, so the network never touches pixels.

        The sampling settings have no defaults here: their one home is ``config.Evaluate``
        (``training.generation`` reads them from the checkpoint's recorded config).

        All bookkeeping (schedule, orders, indices) is computed on the host up front, so the
        loop launches kernels without waiting on the device. ``on_step(k, n_predicted)``
        reports how many tokens each sample predicted at step k. The conditional and
        unconditional rows go through every forward together (one batch of 2B samples), and
        ``compile`` captures the token head's Euler step (model/flow_head.py; flow head only).
        """
        tok = tokenizer or self.tokenizer
        if tok is None:
            raise ValueError("generate() needs a tokenizer (pass tokenizer= or use load_model)")
        if cfg_schedule not in ("linear", "constant"):
            raise ValueError(f"cfg_schedule must be 'linear' or 'constant', got {cfg_schedule!r}")
        if compile and self.head.kind != "flow":
            raise ValueError(f"compile=True needs the flow head; this model has {self.head.kind!r}")
        head_kw = {"compile": True} if compile else {}
        B = len(sizes)
        if len(text) != B:
            raise ValueError(f"{B} sizes but {len(text)} captions")
        dev = next(self.parameters()).device
        grids = [tok.grid(h, w) for h, w in sizes]
        lens = [h * w for h, w in grids]
        N = sum(lens)
        g_host = torch.Generator().manual_seed(seed)
        g_dev = torch.Generator(device=dev).manual_seed(seed)
        offs = [sum(lens[:i]) for i in range(B)]
        orders = [torch.randperm(n, generator=g_host) + o for n, o in zip(lens, offs)]
        guided = cfg != 1.0 or _always_uncond
        rep = 2 if guided else 1
        text_in = self._text_input(text, list(range(B)) + ([None] * B if guided else []), dev)
        coords = self._coords(grids, [None] * B, dev, offset_b).repeat(rep, 1)
        full_joint = self._joint(text_in.lengths, lens * rep, coords, dev)
        scheds = [cosine_schedule(n, steps) for n in lens]
        tokens = torch.zeros(N, self.token_dim, device=dev)
        known = [0] * B
        for k in range(steps):
            nxt = [s[k] for s in scheds]
            pred_counts = [b - a for a, b in zip(known, nxt)]
            if any(pred_counts):
                vis = [o[:a] for o, a in zip(orders, known)]
                pred = [o[a:b] for o, a, b in zip(orders, known, nxt)]
                vis_idx = self._gather(vis + [v + N for v in vis][:len(vis) * (rep - 1)], dev)
                pred_idx = self._gather(pred + [p + N for p in pred][:len(pred) * (rep - 1)], dev)
                enc_joint = self._joint(text_in.lengths, known * rep,
                                        coords.index_select(0, vis_idx), dev)
                z = self._predict(tokens.repeat(rep, 1), vis_idx, N * rep, text_in, enc_joint,
                                  full_joint).index_select(0, pred_idx)
                P = sum(pred_counts)
                scale = self._cfg_scales(cfg, cfg_schedule, lens, nxt, pred_counts, dev)
                x = self.head.sample(z[:P], z_uncond=z[P:] if guided else None, cfg=scale,
                                     temperature=temperature, steps=flow_steps,
                                     time_shift=time_shift, generator=g_dev, **head_kw)
                tokens.index_copy_(0, pred_idx[:P], x.to(tokens.dtype))
            if on_step is not None:
                on_step(k, pred_counts)
            known = nxt
        return [(tokens[o:o + n], gr) for o, n, gr in zip(offs, lens, grids)]

    @staticmethod
    def _cfg_scales(cfg, schedule, lens, nxt, counts, device) -> torch.Tensor | float:
        """Guidance per predicted token; linear: 1 + (cfg - 1) * known_share after the step (MAR)."""
        if schedule == "constant":
            return cfg
        per = [1 + (cfg - 1) * kn / n for kn, n in zip(nxt, lens)]
        s = torch.repeat_interleave(torch.tensor(per), torch.tensor(counts))
        return s[:, None].to(device, non_blocking=True)


@lru_cache(maxsize=512)
def _cached_coords(h: int, w: int, vope: bool, fov: float, b: float | None) -> torch.Tensor:
    return image_coords(h, w, vope=vope, fov=fov, b=b)


# --------------------------------------------------------------------- named sizes
# D-JEPA-B/L/H (D-JEPA Tab. 1 and App. B): ViT-B/L/H backbones for both the context encoder and
# the feature predictor, one set of weights for condition and image tokens, and MAR's denoising
# MLPs of 6/8/12 residual blocks (widths 1024/1280/1536 as in MAR-B/L/H). Trainable parameters
# (the EMA target encoder excluded, as D-JEPA App. B counts them) land at 212M/687M/1.4B within a
# few percent (tests/test_model_djepa.py). The T2I model is "an extension of D-JEPA-H" with 2.6B
# parameters (§3.1): D-JEPA-H's blocks with separate text weights (Fig. 2b) double the
# transformer to 2 x 1.26B, which with the head gives 2.6B.

def djepa_tiny(**kw) -> DJEPAT2I:
    """The embedded default: a 0.7M-parameter model that trains on 2 CPU cores in minutes."""
    return DJEPAT2I(**{"width": 64, "enc_depth": 2, "pred_depth": 2, "heads": 4,
                       "head_width": 128, "head_depth": 2, **kw, "name": "djepa_tiny"})


def djepa_b(**kw) -> DJEPAT2I:
    return DJEPAT2I(**{"width": 768, "enc_depth": 12, "pred_depth": 12, "heads": 12,
                       "head_width": 1024, "head_depth": 6, "separate_text": False,
                       **kw, "name": "djepa_b"})


def djepa_l(**kw) -> DJEPAT2I:
    return DJEPAT2I(**{"width": 1024, "enc_depth": 24, "pred_depth": 24, "heads": 16,
                       "head_width": 1280, "head_depth": 8, "separate_text": False,
                       **kw, "name": "djepa_l"})


def djepa_h(**kw) -> DJEPAT2I:
    return DJEPAT2I(**{"width": 1280, "enc_depth": 32, "pred_depth": 32, "heads": 16,
                       "head_width": 1536, "head_depth": 12, "separate_text": False,
                       **kw, "name": "djepa_h"})


def djepa_t2i_2b6(**kw) -> DJEPAT2I:
    return DJEPAT2I(**{"width": 1280, "enc_depth": 32, "pred_depth": 32, "heads": 16,
                       "head_width": 1536, "head_depth": 12, "separate_text": True,
                       **kw, "name": "djepa_t2i_2b6"})


MODELS = {f.__name__: f for f in (djepa_tiny, djepa_b, djepa_l, djepa_h, djepa_t2i_2b6)}


def build_model(cfg, text_dim: int, tokenizer=None) -> DJEPAT2I:
    """cfg: ``djepa_t2i.config.Model``; the tokenizer fixes the token width."""
    if cfg.name not in MODELS:
        raise ValueError(f"unknown model {cfg.name!r}; choose from {sorted(MODELS)}")
    tok = tokenizer or build_tokenizer(cfg)
    model = MODELS[cfg.name](token_dim=tok.token_dim, text_dim=text_dim, vope=cfg.vope,
                             vope_fov=cfg.vope_fov, text_drop=cfg.text_drop, head=cfg.head,
                             attention=cfg.attention, **cfg.overrides)
    model.tokenizer = tok
    return model


def count_parameters(model: nn.Module, trainable: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


