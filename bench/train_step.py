"""Training-step throughput of D-JEPA·T2I on random latents (MAR's benchmark shape by default).

    python bench/train_step.py --model djepa_b --batch 128 --grid 16 --compile     # H100
    python bench/train_step.py --model djepa_tiny --batch 8 --device cpu            # anywhere

Prints img/s, ms/step, peak memory and MFU (analytical FLOPs, model/flops.py). The timed loop
has no host syncs: one synchronize after warm-up and one at the end.
"""
from __future__ import annotations

import argparse

from common import (add_common, bench_model, hardware, peak_memory_gib, peak_tflops,
                    random_batch, timed)

import torch

from model.djepa import count_parameters
from model.ema import EMA
from model.flops import train_flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common(p)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--no-weight-ema", action="store_true", help="skip the evaluation EMA update")
    args = p.parse_args()
    model, dev = bench_model(args, args.grad_checkpointing)
    model.train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4,
                            betas=(0.9, 0.95), weight_decay=0.02, fused=dev.type == "cuda")
    ema = None if args.no_weight_ema else EMA(model)
    images, text = random_batch(args, dev)
    gen = torch.Generator().manual_seed(0)
    bf16 = args.precision == "bf16"

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(images, text, gen)
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.update_ema(0.996)
        if ema is not None:
            ema.update(model, 0.9999)
        return out["loss"].detach()

    for _ in range(args.warmup):
        step()
    dt, loss = timed(step, args.steps, args, dev)
    n = args.grid ** 2
    # expected FLOPs at the mean of the mask-ratio distribution (0.867)
    fl = train_flops(model, [args.text_len] * args.batch, [n] * args.batch, 0.867)
    peak = peak_tflops(args, dev)
    mfu = f"{100 * fl / dt / 1e12 / peak:.1f}%" if peak else "n/a (no peak given)"
    print(f"{args.model} ({count_parameters(model) / 1e6:.1f}M trainable) on {hardware(dev)}, "
          f"{args.precision}, compile={args.compile}, attention={args.attention}")
    print(f"batch {args.batch} x {n} image tokens ({args.token_dim}-d) + {args.text_len} text tokens")
    print(f"{args.batch / dt:.1f} img/s  {1000 * dt:.1f} ms/step  peak {peak_memory_gib(dev):.2f} GiB  "
          f"{fl / dt / 1e12:.3f} TFLOP/s  MFU {mfu}  final loss {float(loss):.4f}")


if __name__ == "__main__":
    main()
