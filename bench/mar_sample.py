"""Sampling side by side with LTH14/mar (issue #15 item 4): ms/img of D-JEPA·T2I's generate()
against MAR's ``sample_tokens`` in the same process, on the same shapes, and how the cost per
token scales with the token count.

    python bench/mar_sample.py --mar-dir /tmp/mar --size tiny --grids 8 16 32 --threads 1

Matched: transformer widths/depths/heads (``--size``: mar_train_step.SIZES; ours with one weight
set for condition and image, as D-JEPA-B), the denoising MLP (width, depth), 16-d KL-16 latent
tokens, ``--steps`` generation steps, ``--flow-steps`` head steps (MAR: DDPM respaced to that
many, ours: flow Euler steps), CFG on both. Ours conditions on 32 random text states, MAR on a
class label + its 64 buffer tokens. Repeats interleave the two models (ours, MAR, ours, ...);
the median process CPU time per image is reported (robust on a shared box). MAR's code is read
from ``--mar-dir`` at run time, never vendored; without it the script prints ``MAR skipped``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

from common import hardware
from generate import LatentGrid
from mar_train_step import SIZES, cpu_cuda_calls, load_mar

import torch

from model.djepa import DJEPAT2I
from model.text_encoder import TextStates


def ours(size: dict, token_dim: int) -> DJEPAT2I:
    m = DJEPAT2I(token_dim=token_dim, text_dim=384, width=size["encoder_embed_dim"],
                 enc_depth=size["encoder_depth"], pred_depth=size["decoder_depth"],
                 heads=size["encoder_num_heads"], head_width=size["diffloss_w"],
                 head_depth=size["diffloss_d"], separate_text=False).eval()
    m.tokenizer = LatentGrid(token_dim)
    return m


def cpu_seconds(fn) -> float:
    torch.manual_seed(0)
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mar-dir", default="/tmp/mar")
    p.add_argument("--size", choices=sorted(SIZES), default="tiny")
    p.add_argument("--grids", type=int, nargs="+", default=[8, 16, 32], help="tokens per side")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--flow-steps", type=int, default=16)
    p.add_argument("--cfg", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    MAR = load_mar(args.mar_dir)
    if MAR is None:
        return
    torch.set_num_threads(args.threads)
    cpu_cuda_calls()
    size, td = SIZES[args.size], 16
    print(f"{args.size} shapes on {hardware(torch.device('cpu'))}; batch {args.batch}, {args.steps} steps, "
          f"{args.flow_steps} head steps, cfg {args.cfg}; median of {args.repeats}, CPU ms")
    print("tokens | ours ms/img | MAR ms/img | MAR/ours | ours us/token | MAR us/token")
    text = TextStates(torch.randn(args.batch, 32, 384), torch.ones(args.batch, 32, dtype=torch.bool),
                      [32] * args.batch)
    for g in args.grids:
        torch.manual_seed(0)
        a = ours(size, td)
        b = MAR(img_size=g * 16, vae_stride=16, patch_size=1, vae_embed_dim=td, mlp_ratio=4.0,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), buffer_size=64,
                num_sampling_steps=str(args.flow_steps), **size).eval()
        labels = torch.zeros(args.batch, dtype=torch.long)
        runs = {
            "ours": lambda: a.generate(text, [(g, g)] * args.batch, steps=args.steps, cfg=args.cfg,
                                       cfg_schedule="linear", temperature=1.0,  # MAR's sample_tokens
                                       flow_steps=args.flow_steps, time_shift=1.0, seed=0),
            "mar": lambda: b.sample_tokens(args.batch, num_iter=args.steps, cfg=args.cfg, labels=labels),
        }
        with torch.no_grad():
            for f in runs.values():  # warm-up
                f()
            t = {k: [] for k in runs}
            for _ in range(args.repeats):
                for k, f in runs.items():
                    t[k].append(cpu_seconds(f) / args.batch)
        o, m = (1000 * statistics.median(t[k]) for k in ("ours", "mar"))
        print(f"{g * g} | {o:.1f} | {m:.1f} | {m / o:.2f} | {1000 * o / g ** 2:.1f} | {1000 * m / g ** 2:.1f}")


if __name__ == "__main__":
    main()
