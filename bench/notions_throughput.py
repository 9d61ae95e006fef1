"""Notion extraction throughput (captions/s) per entity mode, single process and n_process.

    .venv/bin/python bench/notions_throughput.py [--n 3000] [--unique 1.0] [--n-process 1 2]

Captions are varied LAION-like sentences (shapes-world phrases plus scene words); ``--unique``
is the share of distinct texts (repeats are parsed once). Prints one line per setting.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401
from tasks.notions import NotionExtractor  # noqa: E402

COLORS = "red blue green yellow purple orange light blue dark green black white".split()
SHAPES = "circle square triangle star hexagon cube".split()
SCENE = ("a man riding a horse on the beach at sunset with a dog near the old wooden house in the "
         "city, vintage photo of a woman holding an umbrella in the rain, oil painting").split()


def captions(n: int, unique: float, seed: int = 0) -> list[str]:
    rnd = random.Random(seed)
    base = [f"{rnd.choice(['two', 'three', 'a', 'four'])} {rnd.choice(COLORS)} {rnd.choice(SHAPES)}s "
            f"to the left of a {rnd.choice(COLORS)} {rnd.choice(SHAPES)}, " + " ".join(rnd.choices(SCENE, k=10))
            for _ in range(max(1, int(n * unique)))]
    return [base[i % len(base)] for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--unique", type=float, default=1.0)
    ap.add_argument("--modes", nargs="+", default=["full", "chunks", "tagger"])
    ap.add_argument("--n-process", type=int, nargs="+", default=[1])
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    caps = captions(a.n, a.unique)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, n={a.n}, "
          f"unique={a.unique}, mean words={sum(len(c.split()) for c in caps) / len(caps):.1f}")
    for mode in a.modes:
        ex = NotionExtractor(entities=mode)
        ex.extract_many(caps[:100])  # warm-up
        for npr in a.n_process:
            t = time.perf_counter()
            _, st = ex.extract_many(caps, batch_size=a.batch_size, n_process=npr)
            dt = time.perf_counter() - t
            print(f"mode={mode:7s} n_process={npr} pipes={','.join(ex.nlp.pipe_names)}: "
                  f"{a.n / dt:8.0f} captions/s ({st.rows / a.n:.1f} notions/caption)")


if __name__ == "__main__":
    main()
