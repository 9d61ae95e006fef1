"""MAR-B's training step (LTH14/mar, imported from a checkout given at run time) on the shape of
``bench/train_step.py``: the side-by-side reference of issue #15.

    python bench/mar_train_step.py --mar-dir /tmp/mar --batch 128 --grid 16 --compile   # GPU
    python bench/mar_train_step.py --mar-dir /tmp/mar --batch 2 --grid 4 --device cpu   # anywhere

MAR's code is never vendored: ``--mar-dir`` is a checkout of github.com/LTH14/mar (its
``models/mar.py``); without one the script prints ``MAR skipped: ...`` and exits 0. The step is
the one bench/train_step.py times for D-JEPA (bf16 autocast, backward, fused AdamW, weight EMA),
on random KL-16 latents (16 channels, ``--grid`` tokens a side, patch 1 as MAR-B) and random
ImageNet labels; ``--size base`` is MAR-B (``mar_base``'s widths, MAR's published 6 x 1024 head, x4 diffusion
batch, buffer 64).
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from common import add_common, device_of, hardware, peak_memory_gib, timed

import torch

from model.ema import EMA


SIZES = {  # MAR-B as published (README: mar_base, diffloss_d 6, diffloss_w 1024); tiny: smoke runs
    "base": {"encoder_embed_dim": 768, "encoder_depth": 12, "encoder_num_heads": 12,
             "decoder_embed_dim": 768, "decoder_depth": 12, "decoder_num_heads": 12,
             "diffloss_d": 6, "diffloss_w": 1024},
    "tiny": {"encoder_embed_dim": 64, "encoder_depth": 1, "encoder_num_heads": 4,
             "decoder_embed_dim": 64, "decoder_depth": 1, "decoder_num_heads": 4,
             "diffloss_d": 1, "diffloss_w": 64},
}


def load_mar(mar_dir: str):
    """MAR's ``MAR`` class from a checkout, or None (said on stdout) when there is none."""
    if not (Path(mar_dir) / "models" / "mar.py").exists():
        print(f"MAR skipped: no LTH14/mar checkout at {mar_dir} (fetch it there to compare)")
        return None
    sys.path.insert(0, str(Path(mar_dir).resolve()))
    from models.mar import MAR  # type: ignore  # noqa: E402 - the checkout's, at run time
    return MAR


def cpu_cuda_calls() -> None:
    """MAR moves its masks and noise with bare ``.cuda()`` calls; on a CPU-only run those become
    no-ops for this process (the bench's own tensors are placed explicitly)."""
    torch.Tensor.cuda = lambda self, *a, **k: self  # type: ignore[method-assign]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_common(p)
    p.add_argument("--mar-dir", default="/tmp/mar")
    p.add_argument("--size", choices=sorted(SIZES), default="base")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    MAR = load_mar(args.mar_dir)
    if MAR is None:
        return
    torch.set_num_threads(args.threads)
    dev = device_of(args.device)
    if dev.type == "cpu":
        cpu_cuda_calls()
    torch.manual_seed(0)
    model = MAR(img_size=args.grid * 16, vae_stride=16, patch_size=1, vae_embed_dim=args.token_dim,
                mlp_ratio=4.0, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), buffer_size=64,
                diffusion_batch_mul=4, **SIZES[args.size]).to(dev)
    if args.compile:
        for blk in [*model.encoder_blocks, *model.decoder_blocks]:
            blk.compile()
    model.train()
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-4,
                            betas=(0.9, 0.95), weight_decay=0.02, fused=dev.type == "cuda")
    ema = EMA(model)
    imgs = torch.randn(args.batch, args.token_dim, args.grid, args.grid, device=dev)
    labels = torch.randint(0, 1000, (args.batch,), device=dev)
    bf16 = args.precision == "bf16"

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(imgs, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model, 0.9999)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    dt, loss = timed(step, args.steps, args, dev)
    n_params = sum(q.numel() for q in model.parameters() if q.requires_grad)
    print(f"mar_{args.size} ({n_params / 1e6:.1f}M trainable) on {hardware(dev)}, {args.precision}, "
          f"compile={args.compile}")
    print(f"batch {args.batch} x {args.grid ** 2} image tokens ({args.token_dim}-d) + 64 buffer tokens")
    print(f"{args.batch / dt:.1f} img/s  {1000 * dt:.1f} ms/step  peak {peak_memory_gib(dev):.2f} GiB  "
          f"final loss {float(loss):.4f}")


if __name__ == "__main__":
    main()
