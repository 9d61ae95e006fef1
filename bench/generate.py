"""Sampling throughput of D-JEPA·T2I (Algorithm 1) with classifier-free guidance.

    python bench/generate.py --model djepa_b --batch 256 --steps 64 --cfg 3 --flow-steps 32   # H100
    python bench/generate.py --model djepa_tiny --batch 4 --steps 16 --device cpu

Prints ms/img, peak memory and the achieved FLOP rate. Random weights and random text states:
speed does not depend on what the weights are.
"""
from __future__ import annotations

import argparse

from common import (add_common, bench_model, hardware, peak_memory_gib, peak_tflops,
                    random_batch, timed)

import torch

from model.djepa import count_parameters
from model.flops import sample_flops
from model.tokenizers import PixelTokenizer


class LatentGrid(PixelTokenizer):
    """Stands in for a VAE: one token per latent position, decode = reshape (no VAE cost)."""

    def __init__(self, token_dim: int):
        self.patch_size, self.channels, self.token_dim, self.stride = 1, token_dim, token_dim, 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common(p)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--cfg", type=float, default=3.0)
    p.add_argument("--flow-steps", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    model, dev = bench_model(args)
    model.eval()
    model.tokenizer = LatentGrid(args.token_dim)
    _, text = random_batch(args, dev)
    sizes = [(args.grid, args.grid)] * args.batch
    bf16 = args.precision == "bf16"

    def run():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            return model.generate(text, sizes, steps=args.steps, cfg=args.cfg, cfg_schedule="linear",
                                  temperature=1.0, flow_steps=args.flow_steps, time_shift=1.0, seed=0,
                                  compile=args.compile)

    run()  # warm-up (and compilation)
    dt, _ = timed(run, args.repeats, args, dev)
    fl = sample_flops(model, args.text_len, args.grid ** 2, args.batch, args.steps,
                      args.flow_steps, args.cfg != 1.0)
    peak = peak_tflops(args, dev)
    mfu = f"{100 * fl / dt / 1e12 / peak:.1f}%" if peak else "n/a (no peak given)"
    print(f"{args.model} ({count_parameters(model) / 1e6:.1f}M) on {hardware(dev)}, {args.precision}, "
          f"compile={args.compile}")
    print(f"batch {args.batch} x {args.grid ** 2} tokens, {args.steps} AR steps, cfg {args.cfg}, "
          f"{args.flow_steps} flow steps")
    print(f"{1000 * dt / args.batch:.1f} ms/img  {dt:.2f} s/batch  peak {peak_memory_gib(dev):.2f} GiB  "
          f"{fl / dt / 1e12:.3f} TFLOP/s  MFU {mfu}")


if __name__ == "__main__":
    main()
