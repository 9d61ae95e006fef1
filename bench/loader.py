"""Data-path throughput on CPU: samples/s of the feedback sampler -> packer -> decode -> pack.

Writes shapes-world JPEGs at LAION-like sizes (256-1536 px sides, several aspects) into
webdataset shards with the real build-shards code, then times ``TrainLoader.next()`` for a few
decode-thread counts with the phase-1 schedule, in wall time and in process CPU per sample (the
figure that holds on a busy machine: samples per CPU-second is what one free core decodes).
Appends a row set to docs/benchmarks.md under "## data path".

    .venv/bin/python bench/loader.py [--n 400] [--workers 0 1 2] [--seconds 20]
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import random
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import djepa_t2i.env  # noqa: E402,F401
import torch  # noqa: E402

from measure import cpu_seconds  # noqa: E402
from model.tokenizers import PixelTokenizer  # noqa: E402
from tasks import shapes_world as sw  # noqa: E402
from tasks import shard_writer  # noqa: E402
from training import lake_io  # noqa: E402
from training.data import TrainLoader  # noqa: E402
from training.feedback_sampler import FeedbackSampler  # noqa: E402
from training.packing import TokenBudgetPacker  # noqa: E402
from warehouse import lake as lk  # noqa: E402

PHASE1 = {"mu": 0.512, "sigma": 0.12, "a": 0.256, "b": 1.024}


def make_data(root: Path, n: int) -> str:
    rng = random.Random(0)
    lake, src = str(root / "lake"), root / "src"
    src.mkdir(parents=True)
    rows = []
    with tarfile.open(src / "00000.tar", "w") as tf:
        for i in range(n):
            side, aspect = rng.choice([256, 512, 768, 1024, 1536]), rng.choice([1.0, 0.75, 4 / 3, 0.5, 2.0])
            w, h = int(side * aspect ** 0.5), int(side / aspect ** 0.5)
            scene = sw.sample_scene(rng, w, h)
            b = io.BytesIO()
            sw.render(scene, supersample=1).save(b, "JPEG", quality=90)
            key = f"00000{i:05d}"
            ti = tarfile.TarInfo(f"{key}.jpg")
            ti.size = len(b.getvalue())
            tf.addfile(ti, io.BytesIO(b.getvalue()))
            rows.append({"key": key, "shard": "00000", "source_path": str(src / "00000.tar"), "status": "passed",
                         "width": w, "height": h, "caption": scene.caption if hasattr(scene, "caption") else "shapes",
                         "source": "shapes"})
    lk.write_partition(lake, "pairs", "00000", rows)
    shard_writer.build(lake, str(root / "shards"), samples_per_shard=100, progress=False)
    return lake


def measure(lake: str, workers: int, seconds: float) -> dict:
    tok = PixelTokenizer(16)
    sampler = FeedbackSampler(lake_io.read_index(lake), stride=16, schedule=PHASE1, seed=0)
    loader = TrainLoader(TokenBudgetPacker(sampler, 16384, 4096, 16), tok, 4096, 0, workers=workers)
    loader.next()  # warm up (thread pool, first decode)
    n, tokens, t0, c0 = 0, 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - t0 < seconds:
        b = loader.next()
        n += len(b.keys)
        tokens += b.tokens
    dtm, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    loader.close()
    w = sampler.pop_window()
    return {"workers": workers, "samples_per_s": n / dtm, "tokens_per_s": tokens / dtm,
            "cpu_ms_per_sample": cpu / max(n, 1) * 1e3,
            "discard_upscale": w["discard"]["upscale"], "accepted": w["accepted"]["samples"]}


def main() -> None:
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        lake = make_data(Path(d), a.n)
        results = [measure(lake, w, a.seconds) for w in a.workers]
    hw = f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared), torch {torch.__version__}"
    lines = [f"\n### {dt.date.today()}: bench/loader.py, {hw}",
             "Phase-1 schedule trunc_norm(0.512, 0.12, 0.256, 1.024), stride 16, budget 16384 tokens, "
             f"{a.n} shapes-world JPEGs (256-1536 px sides, aspects 1:2..2:1), decode + downscale + patchify.",
             "", "| decode threads | samples/s | image tokens/s | samples/s per thread | process CPU ms/sample | samples per CPU-s |",
             "|---|---|---|---|---|---|"]
    for r in results:
        per = r["samples_per_s"] / max(r["workers"], 1)
        lines.append(f"| {r['workers'] or '0 (main thread)'} | {r['samples_per_s']:.1f} | {r['tokens_per_s']:.0f} | {per:.1f} | "
                     f"{r['cpu_ms_per_sample']:.1f} | {1e3 / r['cpu_ms_per_sample']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    print(json.dumps(results))
    if not a.no_write:
        f = ROOT / "docs" / "benchmarks.md"
        body = f.read_text() if f.exists() else "# Benchmarks\n"
        if "## data path" not in body:
            body += "\n## data path\n"
        head, _, tail = body.partition("## data path\n")
        nxt = tail.find("\n## ")
        section, rest = (tail, "") if nxt < 0 else (tail[:nxt], tail[nxt:])
        f.write_text(head + "## data path\n" + section.rstrip("\n") + "\n" + text + rest)


if __name__ == "__main__":
    main()
