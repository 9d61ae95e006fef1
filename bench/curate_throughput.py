"""Curation throughput on the offline stack: pairs/s end to end, orchestration share, CPU per stage.

    python bench/curate_throughput.py [--n 1024] [--workers 2] [--append docs/benchmarks.md]
    python bench/curate_throughput.py --production --n 1024 --workers 1 --set curate.device=cuda  # GPU box

Generates the embedded sample, curates it (1) in one process with one thread per model (skip with
``--no-inprocess``) and (2) through the Prefect flow on a Dask LocalCluster, and reports, side by
side from the flow run: pairs/s end to end against the recorded baseline (``--baseline``, 14.1
pairs/s at 1,024 pairs, docs/benchmarks.md 2026-11-24), the orchestration share (wall and CPU:
bench/curate_run_report.py says how each is counted) and the CPU per pair per stage from the
shards' own ``stage_cpu_seconds``. The CPU of the run is every process's: this one's, and its
children's (Dask workers, the Prefect API) reaped or still alive. The load average is printed:
on a shared machine it explains most of the wall-clock variance.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401

BASELINE = 14.1  # pairs/s end to end at 1,024 pairs, Prefect + LocalCluster(2), 2026-11-24 (docs/benchmarks.md)


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
    head = AestheticMLP(dim).state_dict()
    head["layers.7.bias"].fill_(5.0)  # a random head scores ~0, often < 0: every pair must reach OCR, NSFW, face
    torch.save(head, paths["a"])
    torch.save(NsfwMLP((dim, 64, 512, 256, 1)).state_dict(), paths["n"])  # LAION L/14 head sizes
    YOLO("yolov8n.yaml").save(paths["y"])
    return [f"curate.clip_model={clip_model}", f"curate.clip_weights={paths['clip']}",
            "curate.aesthetic.backend=laion-mlp", f"curate.aesthetic.weights={paths['a']}",
            "curate.aesthetic.threshold=0", "curate.nsfw.backend=clip-mlp", f"curate.nsfw.weights={paths['n']}",
            "curate.nsfw.threshold=1", "curate.face.backend=yolov8-face", f"curate.face.weights={paths['y']}",
            "curate.chunk=256", "curate.aesthetic.batch_size=256"]


def run_cpu_seconds() -> float:
    """CPU seconds of this process, its reaped children and its live descendants so far."""
    import resource

    import psutil  # heavy (comes with distributed)
    own = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for f in ("ru_utime", "ru_stime"))
    live = 0.0
    for c in psutil.Process().children(recursive=True):
        try:
            t = c.cpu_times()
            live += t.user + t.system
        except psutil.Error:
            pass
    return own + live


def model_load_cpu(cfg) -> float:
    """Process CPU of building the stages once (what each worker pays before its first shard)."""
    from tasks.model_cache import build_pipeline
    t = time.process_time()
    build_pipeline(cfg)
    return time.process_time() - t


def main() -> int:
    ap = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--per-shard", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline", type=float, default=BASELINE, help="pairs/s to compare the flow run with")
    ap.add_argument("--no-inprocess", action="store_true", help="skip the in-process run")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--append", default=None, help="append a result block to this markdown file")
    ap.add_argument("--production", action="store_true",
                    help="production backends with random weights (CLIP heads, YOLO); for a GPU box")
    ap.add_argument("--clip-model", default="ViT-L-14")
    a = ap.parse_args()
    from curate_run_report import lines as report_lines  # bench/, beside this script
    from curate_run_report import shard_totals, shares
    from djepa_t2i.config import load_config
    from flows.curate_laion import curate_laion, run_plain
    from tasks.mini_laion import make_sample
    tmp = tempfile.mkdtemp(prefix="curate_bench_")
    src = os.path.join(tmp, "in")
    make_sample(src, a.n, seed=0, per_shard=a.per_shard)
    ov = (production_overrides(tmp, a.clip_model) if a.production else []) + a.overrides
    cfg = load_config(overrides=ov)
    load_cpu = model_load_cpu(cfg)
    load0 = os.getloadavg()[0]
    inproc = []
    if not a.no_inprocess:
        t = time.perf_counter()
        s1 = run_plain(src, os.path.join(tmp, "lake1"), cfg, progress=False)
        inproc = [f"- in-process, 1 worker, 1 thread/model: **{s1['n_in'] / (time.perf_counter() - t):.1f} "
                  f"pairs/s** end to end (incl. model load); stage CPU "
                  f"{shares(shard_totals(os.path.join(tmp, 'lake1')), 1.0, 1)['stage_cpu_ms_per_pair']:.1f} ms/pair"]
    c0, t = run_cpu_seconds(), time.perf_counter()
    curate_laion(src, os.path.join(tmp, "lake2"), None, ov + [f"curate.workers={a.workers}"])
    wall = time.perf_counter() - t
    run_cpu = run_cpu_seconds() - c0
    load1 = os.getloadavg()[0]
    tot = shard_totals(os.path.join(tmp, "lake2"))
    sh = shares(tot, wall, a.workers, run_cpu, load_cpu)
    import torch
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    ratio = sh["pairs_per_s"] / a.baseline
    out = [f"{'production' if a.production else 'offline'} stack on {dev}, curate.device={cfg.curate.device}, "
           f"{a.n} pairs of the embedded sample in shards of {a.per_shard}; Prefect flow on a Dask "
           f"LocalCluster({a.workers} workers x 1 thread), incl. the Prefect ephemeral API and worker start",
           *report_lines(tot, sh, a.workers, run_cpu, load_cpu), "", *inproc,
           f"- against the baseline {a.baseline} pairs/s: **{ratio:.2f}x** (goal 2x: "
           f"{'met' if ratio >= 2 else 'NOT met'}); orchestration <= 10%: wall {'met' if sh['wall_share'] <= 0.1 else 'NOT met'}, "
           f"CPU {'met' if sh['cpu_share'] <= 0.1 else 'NOT met'}; CPU bound on {a.workers} dedicated cores "
           f"{a.workers / sh['run_cpu_ms_per_pair'] * 1e3:.1f} pairs/s (run CPU per pair)",
           f"- load average {load0:.1f} -> {load1:.1f} during the run"]
    head = (f"### {date.today().isoformat()} - `python bench/curate_throughput.py {' '.join(sys.argv[1:])}`\n\n"
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, Python "
            f"{platform.python_version()}.\n\n")
    text = head + "\n".join(out) + "\n"
    print(text)
    if a.append:
        with open(a.append) as f:
            cur = f.read()
        with open(a.append, "w") as f:
            f.write(cur.rstrip() + "\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
