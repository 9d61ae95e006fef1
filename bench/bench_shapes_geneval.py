"""Throughput of the shapes-geneval scorer (detect + GenEval rules) on rendered ground truth.

    .venv/bin/python bench/bench_shapes_geneval.py   # appends nothing; paste into docs/benchmarks.md
"""
from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tasks import shapes_world as sw  # noqa: E402
from tasks.evaluators import shapes_geneval as sg  # noqa: E402


def main() -> None:
    import cv2
    cv2.setNumThreads(1)
    for size in (64, 256, 1024):
        ps = sw.benchmark_prompts(20, seed=0, width=size, height=size)
        imgs = [sw.render(sw.Scene.from_json(p["scene"])) for p in ps]
        t = time.perf_counter()
        ok = sum(sg.score_image(im, p["spec"])[0] for im, p in zip(imgs, ps))
        dt = time.perf_counter() - t
        print(f"{size}px: {len(imgs) / dt:.0f} img/s scored (1 thread), accuracy {ok / len(imgs):.3f}")
    print(f"{platform.processor() or platform.machine()}, python {platform.python_version()}")


if __name__ == "__main__":
    main()
