"""CPU time of one 64x64 image from the demo model (issue #15 item 3): ``t2i generate``'s path.

    python bench/sample_demo.py                       # demo_phase1's model and evaluate defaults
    python bench/sample_demo.py --steps 64 --flow-steps 32 --cfg 4   # generate()'s own defaults

The model of configs/demo_phase1.yaml (djepa_tiny, pixel tokenizer, patch 4: 256 tokens at 64 px)
with random weights and a random 12-token caption of the offline text encoder's width (384):
speed does not depend on the weights. Same seed every repeat; the median of ``--repeats`` after
one warm-up, in process CPU seconds (robust on a shared box) and wall seconds. ``--out`` saves the
image tensor, so two code versions can be compared for equality.
"""
from __future__ import annotations

import argparse
import statistics
import time

from common import hardware

import torch

from djepa_t2i.config import load_config
from model.djepa import build_model
from model.text_encoder import TextStates
from training.generation import decode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default="configs/demo_phase1.yaml")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="default: the config's evaluate.steps")
    p.add_argument("--flow-steps", type=int, default=None)
    p.add_argument("--cfg", type=float, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--compile", action="store_true", help="generate(compile=True)")
    p.add_argument("--out", default=None, help="save the image tensor here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, [])
    ev = cfg.evaluate
    steps, flow, scale = args.steps or ev.steps, args.flow_steps or ev.flow_steps, args.cfg or ev.cfg
    torch.manual_seed(0)
    model = build_model(cfg.model, 384).eval()
    text = TextStates(torch.randn(1, 12, 384), torch.ones(1, 12, dtype=torch.bool), [12])
    kw = {"compile": True} if args.compile else {}

    def run():
        return decode(model.tokenizer, model.generate(
            text, [(args.size, args.size)], steps=steps, flow_steps=flow, cfg=scale,
            cfg_schedule=ev.cfg_schedule, temperature=ev.temperature, time_shift=ev.time_shift, seed=0, **kw))[0]

    run()
    cpu, wall = [], []
    for _ in range(args.repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        img = run()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    if args.out:
        torch.save(img, args.out)
    print(f"{cfg.model.name} {args.size}x{args.size} on {hardware(torch.device('cpu'))}: {steps} steps, "
          f"{flow} flow steps, cfg {scale}, compile={args.compile}")
    print(f"median of {args.repeats}: {statistics.median(cpu):.3f} CPU s/img, "
          f"{statistics.median(wall):.3f} wall s/img (CPU s: {' '.join(f'{c:.3f}' for c in cpu)})")


if __name__ == "__main__":
    main()
