"""Image tokens/s of mixed-resolution packed batches vs fixed-resolution batches (issue 5, >= 0.9x).

    python bench/packing_vs_fixed.py --preset h100                     # djepa_b, 32k-token budget
    python bench/packing_vs_fixed.py --preset tiny --device cpu        # anywhere, seconds

Both streams go through the real data path minus JPEG decode: the mixed stream is the
``FeedbackSampler`` drawing target sides from the phase-2 ``trunc_norm(1.024, 1.0, 0.256, 4.096)``
(kpx) over an index of large native images (aspects 1:2..2:1, so nothing is discarded) and the
``TokenBudgetPacker`` filling the token budget first-fit; the fixed stream is square images at
one side (1024 px) filling the same budget. Images are random latent maps (SD3-VAE shape: 16
channels, 8x down, patch 2 -> 16 px and 64 dims per token) packed by ``model.tokenizers.pack``
(cu_seqlens, random token drop above ``--max-image-tokens``). Batches are built before timing.

The timed region is the trainer's step: bf16 autocast forward, backward, grad clip, fused AdamW,
target-encoder EMA and weight EMA. One synchronize before and after each step, warm-up steps
first, medians over ``--repeats`` steps. Reported: image tokens/s (the budget's unit; each image
also carries ``--text-len`` caption tokens, so the mixed stream, with more images per batch,
does more text work per budget) and the ratio mixed / fixed.
"""
from __future__ import annotations

import argparse
import statistics
import time

from common import compile_parts, device_of, hardware, peak_memory_gib, sync

import numpy as np
import pyarrow as pa
import torch

from model.djepa import MODELS, count_parameters
from model.ema import EMA
from model.text_encoder import TextStates
from model.tokenizers import PixelTokenizer, pack
from training.feedback_sampler import FeedbackSampler
from training.packing import TokenBudgetPacker

PRESETS = {
    # phase 2 of the paper at MAR-B scale on one H100
    "h100": {"model": "djepa_b", "token_budget": 32768, "max_image_tokens": 4096, "stride": 16,
             "patch": 2, "channels": 16, "mu": 1.024, "sigma": 1.0, "a": 0.256, "b": 4.096,
             "fixed_side": 1024, "text_len": 77, "warmup": 5, "repeats": 20},
    # the same shape of problem /16 (like configs/demo_phase2.yaml), seconds on one CPU thread
    "tiny": {"model": "djepa_tiny", "token_budget": 512, "max_image_tokens": 64, "stride": 8,
             "patch": 2, "channels": 4, "mu": 0.064, "sigma": 0.0625, "a": 0.016, "b": 0.256,
             "fixed_side": 64, "text_len": 8, "warmup": 2, "repeats": 5},
}


def native_index(n: int, max_side: float, seed: int = 0) -> pa.Table:
    """Samples large enough that every drawn side is a downscale, aspects 1:2..2:1."""
    rng = np.random.default_rng(seed)
    aspect = np.exp(rng.uniform(np.log(0.5), np.log(2.0), n))
    side = max_side * rng.uniform(1.05, 1.5, n)
    w, h = (side * np.sqrt(aspect)).astype(int), (side / np.sqrt(aspect)).astype(int)
    return pa.table({"key": [f"s{i:06d}" for i in range(n)], "tar": ["bench.tar"] * n,
                     "offset": [0] * n, "size": [0] * n, "caption": ["a random latent"] * n,
                     "width": w.tolist(), "height": h.tolist(),
                     "notions": [[] for _ in range(n)], "tags": [[] for _ in range(n)], "source": ["bench"] * n})


def latent(h_px: int, w_px: int, args, gen: torch.Generator) -> torch.Tensor:
    f = args.stride // args.patch  # pixels per latent pixel
    return torch.randn(args.channels, h_px // f, w_px // f, generator=gen)


def mixed_batches(args, n: int, gen: torch.Generator) -> list[list[torch.Tensor]]:
    sampler = FeedbackSampler(native_index(4096, 1000 * args.b * 2 ** 0.5), stride=args.stride,
                              schedule={"mu": args.mu, "sigma": args.sigma, "a": args.a, "b": args.b}, seed=0)
    packer = TokenBudgetPacker(sampler, args.token_budget, args.max_image_tokens, args.stride)
    return [[latent(d.out_h, d.out_w, args, gen) for d in packer.next_batch()] for _ in range(n)]


def fixed_batches(args, n: int, gen: torch.Generator) -> list[list[torch.Tensor]]:
    per_image = (args.fixed_side // args.stride) ** 2
    if per_image > args.max_image_tokens or per_image > args.token_budget:
        raise ValueError(f"fixed side {args.fixed_side} px = {per_image} tokens > max_image_tokens "
                         f"{args.max_image_tokens} or token budget {args.token_budget}")
    k = args.token_budget // per_image
    return [[latent(args.fixed_side, args.fixed_side, args, gen) for _ in range(k)] for _ in range(n)]


def run_stream(name: str, batches, model, opt, ema, args, dev, gen) -> dict:
    tok = PixelTokenizer(args.patch, args.channels)
    packed = []
    for imgs in batches:
        p = pack(imgs, tok, args.max_image_tokens, gen).to(dev)
        text = TextStates(torch.randn(len(imgs), args.text_len, args.text_dim),
                          torch.ones(len(imgs), args.text_len, dtype=torch.bool),
                          [args.text_len] * len(imgs)).to(dev)
        packed.append((p, text, int(p.cu_seqlens[-1])))
    mgen = torch.Generator().manual_seed(0)
    bf16 = (dev.type == "cuda" and args.precision == "bf16") or args.precision == "bf16-cpu"

    def step(images, text):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(images, text, mgen)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.update_ema(0.996)
        ema.update(model, 0.9999)
        return out["loss"].detach()

    for i in range(args.warmup):
        step(*packed[i][:2])
    times, tokens = [], []
    for images, text, n in packed[args.warmup:]:
        sync(dev)
        t0 = time.perf_counter()
        loss = step(images, text)
        sync(dev)
        times.append(time.perf_counter() - t0)
        tokens.append(n)
    rates = [n / t for n, t in zip(tokens, times)]
    timed = packed[args.warmup:]
    return {"name": name, "tok_s": statistics.median(rates), "ms": 1000 * statistics.median(times),
            "tok_s_total": sum(tokens) / sum(times), "fill": statistics.mean(tokens) / args.token_budget,
            "images": statistics.mean(p.batch_size for p, _, _ in timed),
            "loss": float(loss)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="h100")
    for k, v in PRESETS["h100"].items():
        p.add_argument("--" + k.replace("_", "-"), type=type(v), default=None, help=f"h100: {v}")
    p.add_argument("--text-dim", type=int, default=384)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["bf16", "fp32", "bf16-cpu"], default="bf16",
                   help="bf16 autocast on CUDA (fp32 on CPU unless bf16-cpu)")
    p.add_argument("--attention", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile blocks + flow head (dynamic)")
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    for k, v in PRESETS[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    dev = device_of(args.device)
    torch.manual_seed(0)
    model = MODELS[args.model](token_dim=args.channels * args.patch ** 2, text_dim=args.text_dim,
                               attention=args.attention).to(dev).train()
    if args.grad_checkpointing:
        model.set_grad_checkpointing(True)
    if args.compile:
        compile_parts(model)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4,
                            betas=(0.9, 0.95), weight_decay=0.02, fused=dev.type == "cuda")
    ema = EMA(model)
    gen = torch.Generator().manual_seed(0)
    n = args.warmup + args.repeats
    mixed, fixed = mixed_batches(args, n, gen), fixed_batches(args, n, gen)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # fixed first, then mixed: the mixed stream cannot profit from a warmer allocator/cache
    res = [run_stream("fixed", fixed, model, opt, ema, args, dev, gen),
           run_stream("mixed", mixed, model, opt, ema, args, dev, gen)]
    prec = "bf16" if (dev.type == "cuda" and args.precision == "bf16") or args.precision == "bf16-cpu" else "fp32"
    print(f"{args.model} ({count_parameters(model) / 1e6:.1f}M trainable) on {hardware(dev)}, {prec}, "
          f"compile={args.compile}, attention={args.attention}, preset {args.preset}")
    print(f"token budget {args.token_budget}, max {args.max_image_tokens} tokens/image, {args.stride} px/token, "
          f"{args.channels * args.patch ** 2}-d tokens, {args.text_len} text tokens/image; mixed: "
          f"trunc_norm({args.mu}, {args.sigma}, {args.a}, {args.b}) kpx; fixed: {args.fixed_side} px; "
          f"median of {args.repeats} steps after {args.warmup} warm-up")
    for r in res:
        print(f"  {r['name']}: {r['images']:.1f} images/batch, fill {100 * r['fill']:.1f}% of budget, "
              f"{r['ms']:.1f} ms/step, {r['tok_s']:.1f} image tokens/s (aggregate {r['tok_s_total']:.1f}), "
              f"loss {r['loss']:.4f}")
    fx, mx = res[0]["tok_s"], res[1]["tok_s"]
    print(f"tokens/s mixed {mx:.1f} fixed {fx:.1f} ratio {mx / fx:.3f} (target >= 0.9)  "
          f"peak_mem_gib {peak_memory_gib(dev):.2f}")


if __name__ == "__main__":
    main()
