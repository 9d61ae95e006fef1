"""``demo``: the whole loop on the embedded default, as one Prefect flow of sub-flows.

make-sample -> curate-laion -> recaption -> notion-stats (weights v0) -> build-shards ->
train phase 1 -> evaluate + feedback (weights v1) -> train phase 2 (trunc_norm resolutions,
starting from phase-1 weights, sampling with the new weights) -> evaluate + feedback -> report.

Every step is the same flow a user runs on its own (and that the deployments in prefect.yaml
run), so the Prefect UI shows one parent run with each step as a child. ``--quick`` shrinks
every size for the test suite.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import djepa_t2i.env  # noqa: F401
from prefect import flow, get_run_logger

from djepa_t2i.env import ROOT
from flows.build_shards import build_shards
from flows.curate_laion import curate_laion
from flows.evaluate_checkpoints import evaluate_checkpoints
from flows.notion_stats import notion_stats_flow
from flows.recaption import recaption_flow
from flows.train import train
from report.page import build_report
from tasks.mini_laion import make_sample
from training.checkpoints import latest
from training.draw_check import check_sizes
from warehouse.artifacts import publish_summary
from warehouse.db import query, save_database
from warehouse.intervals import wilson

SQL_WORTH_RUNNING = [
    ("the curation funnel", "SELECT * FROM funnel"),
    ("the most frequent notions and their share of captions",
     "SELECT notion, kind, n, round(p, 3) AS p FROM notion_stats ORDER BY n DESC LIMIT 15"),
    ("how the sampling weights moved between versions",
     "SELECT version, kind, value, round(target_freq, 4) AS target, round(eval_score, 2) AS eval, "
     "reason FROM weights WHERE kind IN ('color', 'count', 'spatial', 'category') "
     "ORDER BY value, version LIMIT 30"),
]


def _sizes(quick: bool) -> dict:
    """Training, evaluation and sampling sizes live in configs/demo_phase*.yaml; ``quick``
    (the test suite's reduced demo) shrinks them to seconds."""
    if quick:
        return {"n": 48, "draw_seeds": 1, "overrides": [
            "train.steps=6", "train.save_every=3", "train.stats_every=2",
            "evaluate.prompts_per_category=1", "evaluate.images_per_prompt=1",
            "evaluate.steps=4", "evaluate.flow_steps=4", "evaluate.size=16"]}
    return {"n": 1280, "draw_seeds": 4, "overrides": []}


def _overrides(out: str, phase: str, z: dict) -> list[str]:
    return [f"lake={out}/lake", f"shards.out={out}/shards", f"train.out={out}/train-{phase}",
            "train.keep_last=2", f"evaluate.out={out}/eval", *z["overrides"]]


def _last_checkpoint(train_out: str) -> str:
    last = latest(train_out)
    if last is None:
        raise RuntimeError(f"phase 1 wrote no checkpoint under {train_out}")
    return str(last)


DEMO_PARTS = ("sample", "lake", "shards", "train-phase1", "train-phase2", "eval", "report")


def _start_fresh(out: str) -> None:
    """A demo is one run from nothing: an earlier demo's checkpoints would be resumed against a
    lake they were not trained on (the sampler refuses, rightly), so its parts are removed."""
    for part in DEMO_PARTS:
        shutil.rmtree(Path(out) / part, ignore_errors=True)


@flow(name="demo", log_prints=True)
def demo(out: str = "runs/demo", quick: bool = False, seed: int = 0) -> dict:
    """Run the loop end to end under ``out``; returns every step's summary and timing."""
    log = get_run_logger()
    z = _sizes(quick)
    out = str(Path(out).resolve())
    lake, cfg1, cfg2 = f"{out}/lake", str(ROOT / "configs/demo_phase1.yaml"), str(ROOT / "configs/demo_phase2.yaml")
    ov1 = _overrides(out, "phase1", z) + [f"seed={seed}"]
    ov2 = _overrides(out, "phase2", z) + [f"seed={seed}"] + \
        (["train.steps=4", "train.final_schedule_at=2", "train.save_every=2"] if quick else [])
    steps: dict[str, dict] = {}

    def step(name, fn, *a, **k):
        t0 = time.perf_counter()
        log.info("demo: %s ...", name)
        res = fn(*a, **k)
        steps[name] = {"seconds": round(time.perf_counter() - t0, 1), "result": res}
        log.info("demo: %s done in %.1f s", name, steps[name]["seconds"])
        return res

    _start_fresh(out)
    step("make-sample", make_sample, f"{out}/sample", n=z["n"], seed=seed)
    step("curate-laion", curate_laion, f"{out}/sample", lake, cfg1, ov1)
    step("recaption", recaption_flow, lake, cfg1, ov1)
    step("notion-stats", notion_stats_flow, lake, cfg1, ov1)
    step("build-shards", build_shards, lake, f"{out}/shards", cfg1, ov1)
    step("train phase 1", train, cfg1, ov1, 1)
    step("evaluate + feedback (phase 1)", evaluate_checkpoints, lake, cfg1, ov1)
    ov2.append(f"train.init_from={_last_checkpoint(f'{out}/train-phase1')}")
    step("train phase 2", train, cfg2, ov2, 1)
    step("evaluate + feedback (phase 2)", evaluate_checkpoints, lake, cfg2, ov2)
    os.makedirs(f"{out}/report", exist_ok=True)
    step("draw check", check_sizes, _last_checkpoint(f"{out}/train-phase2"), z["draw_seeds"], f"{out}/report")
    step("report", build_report, lake, f"{out}/report")
    save_database(lake)
    res = {"out": out, "lake": lake, "report": f"{out}/report/index.html",
           "checkpoints": [f"{out}/train-phase1/checkpoints", f"{out}/train-phase2/checkpoints"],
           "steps": steps}
    publish_summary("demo", lake, res)
    return res


def format_summary(res: dict) -> str:
    lines = ["", "=" * 72, "djepa-t2i demo: done", "=" * 72]
    for name, s in res["steps"].items():
        lines.append(f"  {name:<32} {s['seconds']:>7.1f} s")
    _, funnel = query(res["lake"], "SELECT status, count(*) FROM pairs GROUP BY status ORDER BY status")
    _, ver = query(res["lake"], "SELECT count(DISTINCT version) FROM weights")
    _, ev = query(res["lake"], "SELECT checkpoint, score, lo, hi, chance FROM eval_summary "
                               "WHERE category = 'overall' ORDER BY step, checkpoint")
    d = res["steps"]["draw check"]["result"]
    lines += ["", "  pairs: " + ", ".join(f"{s}={n}" for s, n in funnel),
              f"  sampling-weights versions: {ver[0][0]}",
              "  shapes-geneval overall per checkpoint (95% CI; best chance control):"]
    lines += [f"    {c}: {s:.3f} ({lo:.3f}-{hi:.3f}; chance {ch if ch is None else round(ch, 3)})"
              for c, s, lo, hi, ch in ev]
    lines += ["  does it draw? 'a <color> <shape>' images with t2i generate's defaults, at the training "
              "side and 2x (95% CI):"]
    lines += [_draw_line(r) for r in d["sizes"]]
    lines += ["", f"  lake:        {res['lake']}   (DuckDB views: {res['lake']}/warehouse.duckdb)",
              f"  checkpoints: {', '.join(res['checkpoints'])}",
              f"  report:      {res['report']}", "", "  three queries worth running:"]
    rel = os.path.relpath(res["lake"])
    rel = res["lake"] if rel.startswith("..") else rel
    for why, sql in SQL_WORTH_RUNNING:
        lines.append(f"    # {why}\n    .venv/bin/t2i sql --lake {rel} \"{sql}\"")
    return "\n".join(lines)


def _share(p: float, n: int) -> str:
    lo, hi = wilson(p, n)
    return f"{p:.0%} ({lo:.0%}-{hi:.0%})"


def _draw_line(r: dict) -> str:
    """One size of the draw check: accuracies with intervals beside the shuffled-prompt control."""
    n = r["images"]
    return (f"    {r['size'][0]}x{r['size'][1]} ({r['settings']['steps']} AR steps, {n} images): colour right "
            f"{_share(r['color'], n)} (shuffled prompts {r['color_shuffled']:.0%}, chance {r['chance']['color']:.0%}); "
            f"shape right {_share(r['shape'], n)} (shuffled {r['shape_shuffled']:.0%}, chance "
            f"{r['chance']['shape']:.0%}); grid {r['grid']}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="where the sample, lake, checkpoints and report go")
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds, for tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print the step summaries as JSON")


def run(args) -> int:
    res = demo(args.out, args.quick, args.seed)
    print(format_summary(res))
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    return 0
