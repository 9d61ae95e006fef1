"""``t2i generate``: one prompt -> one PNG from a checkpoint directory."""
from __future__ import annotations

import argparse
import re
import sys

import djepa_t2i.env  # noqa: F401
from djepa_t2i.config import resolve_device


def parse_size(s: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (H, W)."""
    m = re.fullmatch(r"(\d+)[xX](\d+)", s.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 768x512 (width x height), got {s!r}")
    return int(m.group(2)), int(m.group(1))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="checkpoint directory (model.safetensors + meta.json)")
    p.add_argument("--prompt", required=True)
    p.add_argument("--size", type=parse_size, default=(256, 256), help="WIDTHxHEIGHT in pixels")
    p.add_argument("--steps", type=int, default=64, help="generalized next-token steps")
    p.add_argument("--cfg", type=float, default=4.0)
    p.add_argument("--cfg-schedule", choices=["linear", "constant"], default="linear")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--flow-steps", type=int, default=32, help="Euler steps of the flow ODE")
    p.add_argument("--time-shift", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--offset-b", type=float, default=None, help="VoPE offset b (layout control)")
    p.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, help="output PNG path")


def run(args) -> int:
    import torch

    from model.checkpoint import load_model
    from training.evaluate import tensor_to_image
    device = resolve_device(args.device)
    model, tok, te, meta = load_model(args.ckpt, ema=not args.no_ema, device=device)
    text = te.encode([args.prompt])
    try:
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            (img,) = model.generate(text, [args.size], steps=args.steps, cfg=args.cfg,
                                    cfg_schedule=args.cfg_schedule, temperature=args.temperature,
                                    flow_steps=args.flow_steps, time_shift=args.time_shift,
                                    seed=args.seed, offset_b=args.offset_b)
    except ValueError as e:
        print(f"t2i generate: {e}", file=sys.stderr)
        return 2
    tensor_to_image(img).save(args.out)
    print(f"wrote {args.out} ({args.size[1]}x{args.size[0]}) model={meta['model']['name']} "
          f"tokenizer={tok.kind} text_encoder={te.backend}:{te.describe()['model_type']}")
    return 0
