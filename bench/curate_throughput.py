"""Curation throughput on the offline stack: pairs/s end to end and per stage.

    python bench/curate_throughput.py [--n 384] [--workers 2] [--append docs/benchmarks.md]
    python bench/curate_throughput.py --production --n 4096 --workers 1   # on a GPU box

Generates the embedded sample, curates it (1) in one process with one thread per model and
(2) through the Prefect flow on a 2-worker Dask LocalCluster, and reports per-stage rates from
the ``stage_seconds`` that every shard records (images entering a stage / seconds in it). The
load average is printed: on a shared machine it explains most of the variance.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401

TARGET = 20.0  # pairs/s end to end on 2 CPU cores


def stage_rates(lake: str) -> dict[str, tuple[int, float, float]]:
    from warehouse import db
    _, runs = db.query(lake, "SELECT stage_seconds, n_in, stage_cpu_seconds FROM shard_runs")
    secs: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for ss, _n, cs in runs:
        for k, v in json.loads(ss).items():
            secs[k] = secs.get(k, 0.0) + v
        for k, v in json.loads(cs).items():
            cpu[k] = cpu.get(k, 0.0) + v
    _, ent = db.query(lake, "SELECT filter, count(*) FROM filter_scores GROUP BY 1")
    n_in = sum(r[1] for r in runs)
    entered = {"read": n_in, "decode": n_in} | dict(ent)
    return {k: (entered.get(k, 0), secs[k], cpu.get(k, 0.0)) for k in secs}


def production_overrides(tmp: str, clip_model: str) -> list[str]:
    """Random weights in the real formats (open_clip checkpoint, LAION aesthetic MLP, CLIP NSFW
    head, a YOLOv8 .pt): speed is what is measured, so random values are fine."""
    import open_clip
    import torch
    from ultralytics import YOLO

    from tasks.filters.aesthetic import AestheticMLP
    from tasks.filters.nsfw import NsfwMLP
    m = open_clip.create_model(clip_model, pretrained=None)
    dim = int(m.visual.output_dim)
    paths = {k: os.path.join(tmp, f) for k, f in (("clip", "clip.pt"), ("a", "aesthetic.pth"),
                                                  ("n", "nsfw.pth"), ("y", "yolov8n-face.pt"))}
    torch.save({k: v.half() for k, v in m.state_dict().items()}, paths["clip"])
    torch.save(AestheticMLP(dim).state_dict(), paths["a"])
    torch.save(NsfwMLP((dim, 64, 512, 256, 1)).state_dict(), paths["n"])  # LAION L/14 head sizes
    YOLO("yolov8n.yaml").save(paths["y"])
    return [f"curate.clip_model={clip_model}", f"curate.clip_weights={paths['clip']}",
            "curate.aesthetic.backend=laion-mlp", f"curate.aesthetic.weights={paths['a']}",
            "curate.aesthetic.threshold=0", "curate.nsfw.backend=clip-mlp", f"curate.nsfw.weights={paths['n']}",
            "curate.nsfw.threshold=1", "curate.face.backend=yolov8-face", f"curate.face.weights={paths['y']}",
            "curate.chunk=256", "curate.aesthetic.batch_size=256"]


def main() -> int:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=384)
    ap.add_argument("--per-shard", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--append", default=None, help="append a result block to this markdown file")
    ap.add_argument("--production", action="store_true",
                    help="production backends with random weights (CLIP heads, YOLO); for a GPU box")
    ap.add_argument("--clip-model", default="ViT-L-14")
    a = ap.parse_args()
    from djepa_t2i.config import load_config
    from flows.curate_laion import curate_laion, run_plain
    from tasks.mini_laion import make_sample
    tmp = tempfile.mkdtemp(prefix="curate_bench_")
    src = os.path.join(tmp, "in")
    make_sample(src, a.n, seed=0, per_shard=a.per_shard)
    ov = production_overrides(tmp, a.clip_model) if a.production else []
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    s1 = run_plain(src, os.path.join(tmp, "lake1"), load_config(overrides=ov), progress=False)
    e2e_1 = s1["n_in"] / (time.perf_counter() - t)
    rates = stage_rates(os.path.join(tmp, "lake1"))
    cpu_per_pair = sum(v[2] for v in rates.values()) / s1["n_in"]
    t = time.perf_counter()
    s2 = curate_laion(src, os.path.join(tmp, "lake2"), None, ov + [f"curate.workers={a.workers}"])
    e2e_2 = s2["n_in"] / (time.perf_counter() - t)
    load1 = os.getloadavg()[0]
    import torch
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    lines = [f"{'production' if a.production else 'offline'} stack on {dev} ({', '.join(f'{k}={v}' for k, v in sorted(s1['backends'].items()))}), "
             f"{a.n} pairs of the embedded sample, {len(os.listdir(src)) // 3} shards",
             f"- in-process, 1 worker, 1 thread/model: **{e2e_1:.1f} pairs/s** end to end (incl. model load)",
             f"- Prefect flow, Dask LocalCluster({a.workers} workers x 1 thread): **{e2e_2:.1f} pairs/s** end to end "
             f"(incl. Prefect ephemeral API + worker start)", "",
             f"- CPU cost: {cpu_per_pair * 1000:.0f} ms of process CPU per pair over all stages -> "
             f"**{2 / cpu_per_pair:.1f} pairs/s** on 2 dedicated cores (2 workers x 1 thread, excluding start-up)",
             "", "| stage | images in | wall s | CPU s | images/CPU-s (1 thread) |", "|---|---|---|---|---|"]
    for k, (n, sec, cs) in rates.items():
        lines.append(f"| {k} | {n} | {sec:.2f} | {cs:.2f} | {n / cs if cs else float('inf'):.1f} |")
    slow = max(rates, key=lambda k: rates[k][2])
    lines += ["", f"Slowest stage: {slow} ({rates[slow][2] / sum(v[2] for v in rates.values()):.0%} of stage CPU). "
              f"Target >= {TARGET} pairs/s end to end on 2 cores: by CPU cost "
              f"{'met' if 2 / cpu_per_pair >= TARGET else 'NOT met'}; by wall clock on this shared machine "
              f"{'met' if max(e2e_1, e2e_2) >= TARGET else 'NOT met'} "
              f"(load average {load0:.1f} -> {load1:.1f} during the run)."]
    head = (f"### {date.today().isoformat()} - `python bench/curate_throughput.py {' '.join(sys.argv[1:])}`\n\n"
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, Python "
            f"{platform.python_version()}.\n\n")
    text = head + "\n".join(lines) + "\n"
    print(text)
    if a.append:
        with open(a.append) as f:
            cur = f.read()
        if "## curation" not in cur:
            cur = cur.rstrip() + "\n\n## curation\n\n"
        with open(a.append, "w") as f:
            f.write(cur.rstrip() + "\n\n" + text if not cur.endswith("## curation\n\n") else cur + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
