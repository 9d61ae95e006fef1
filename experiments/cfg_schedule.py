"""Constant vs linear classifier-free guidance at the paper's CFG 6.0 (issue #23 item 7).

The paper says only "CFG 6.0" (Supp. §7); MAR's linear ramp reaches 6 at the last step. Both are
scored by the demo's draw check (18 'a <color> <shape>' prompts x seeds, pixel-read colour and
shape, beside a shuffled-prompt control) on the same checkpoint and seeds; 95% Wilson intervals.

    python -m experiments.cfg_schedule --ckpt runs/demo/train-phase2 --seeds 4
"""
from __future__ import annotations

import argparse
import json

from djepa_t2i.config import default
from training.draw_check import check
from training.generate_cli import resolve_checkpoint
from warehouse.intervals import wilson


def compare(ckpt: str, seeds: int, cfg: float) -> dict:
    """{schedule: draw-check scores with intervals} for both schedules at ``cfg``."""
    out = {}
    for schedule in ("linear", "constant"):
        r = check(str(resolve_checkpoint(ckpt)), seeds=seeds, cfg=cfg, cfg_schedule=schedule)
        n = r["images"]
        out[schedule] = {k: {"p": r[k], "ci95": wilson(r[k], n)} for k in
                         ("color", "shape", "color_shuffled", "shape_shuffled")} | {"images": n}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", default="runs/demo/train-phase2", help="checkpoint, checkpoints folder or run")
    p.add_argument("--seeds", type=int, default=4, help="images per prompt (18 prompts)")
    p.add_argument("--cfg", type=float, default=default("evaluate.cfg"), help="guidance scale (evaluate.cfg: the paper's 6.0)")
    a = p.parse_args(argv)
    print(json.dumps(compare(a.ckpt, a.seeds, a.cfg), indent=1))


if __name__ == "__main__":
    main()
