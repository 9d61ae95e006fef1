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
import time
from pathlib import Path

import djepa_t2i.env  # noqa: F401
from prefect import flow, get_run_logger

from djepa_t2i.env import ROOT
from warehouse.artifacts import publish_summary

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
    if quick:
        return {"n": 48, "phase1_steps": 6, "phase2_steps": 4, "save_every": 3, "prompts": 1,
                "eval_steps": 4, "flow_steps": 4, "eval_size": 16, "stats_every": 2}
    return {"n": 320, "phase1_steps": 400, "phase2_steps": 200, "save_every": 200, "prompts": 4,
            "eval_steps": 16, "flow_steps": 16, "eval_size": 32, "stats_every": 10}


def _overrides(out: str, phase: str, z: dict) -> list[str]:
    return [f"lake={out}/lake", f"shards.out={out}/shards", f"train.out={out}/train-{phase}",
            f"train.save_every={z['save_every']}", "train.keep_last=2",
            f"train.stats_every={z['stats_every']}",
            f"evaluate.out={out}/eval", f"evaluate.prompts_per_category={z['prompts']}",
            f"evaluate.steps={z['eval_steps']}", f"evaluate.flow_steps={z['flow_steps']}",
            f"evaluate.size={z['eval_size']}"]


def _last_checkpoint(train_out: str) -> str:
    from model.trainer import list_checkpoints
    ckpts = list_checkpoints(train_out)
    if not ckpts:
        raise RuntimeError(f"phase 1 wrote no checkpoint under {train_out}")
    return str(ckpts[-1])


@flow(name="demo", log_prints=True)
def demo(out: str = "runs/demo", quick: bool = False, seed: int = 0) -> dict:
    """Run the loop end to end under ``out``; returns every step's summary and timing."""
    from flows.build_shards import build_shards
    from flows.curate_laion import curate_laion
    from flows.evaluate_checkpoints import evaluate_checkpoints
    from flows.notion_stats import notion_stats_flow
    from flows.recaption import recaption_flow
    from flows.train import train
    from tasks.sample import make_sample
    from warehouse.report import build_report

    log = get_run_logger()
    z = _sizes(quick)
    out = str(Path(out).resolve())
    lake, cfg1, cfg2 = f"{out}/lake", str(ROOT / "configs/demo_phase1.yaml"), str(ROOT / "configs/demo_phase2.yaml")
    ov1 = _overrides(out, "phase1", z) + [f"train.steps={z['phase1_steps']}", f"seed={seed}"]
    ov2 = _overrides(out, "phase2", z) + [f"train.steps={z['phase2_steps']}", f"seed={seed}"]
    steps: dict[str, dict] = {}

    def step(name, fn, *a, **k):
        t0 = time.perf_counter()
        log.info("demo: %s ...", name)
        res = fn(*a, **k)
        steps[name] = {"seconds": round(time.perf_counter() - t0, 1), "result": res}
        log.info("demo: %s done in %.1f s", name, steps[name]["seconds"])
        return res

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
    step("report", build_report, lake, f"{out}/report")
    from warehouse.db import save_database
    save_database(lake)
    res = {"out": out, "lake": lake, "report": f"{out}/report/index.html",
           "checkpoints": [f"{out}/train-phase1/checkpoints", f"{out}/train-phase2/checkpoints"],
           "steps": steps}
    publish_summary("demo", lake, res)
    return res


def format_summary(res: dict) -> str:
    from warehouse.db import query
    lines = ["", "=" * 72, "djepa-t2i demo: done", "=" * 72]
    for name, s in res["steps"].items():
        lines.append(f"  {name:<32} {s['seconds']:>7.1f} s")
    _, funnel = query(res["lake"], "SELECT status, count(*) FROM pairs GROUP BY status ORDER BY status")
    _, ver = query(res["lake"], "SELECT count(DISTINCT version) FROM weights")
    _, ev = query(res["lake"], "SELECT checkpoint, round(avg(score), 3) FROM eval_results "
                               "GROUP BY checkpoint ORDER BY checkpoint")
    lines += ["", "  pairs: " + ", ".join(f"{s}={n}" for s, n in funnel),
              f"  sampling-weights versions: {ver[0][0]}",
              "  shapes-geneval mean score per checkpoint: "
              + ", ".join(f"{c}={s}" for c, s in ev),
              "", f"  lake:        {res['lake']}   (DuckDB views: {res['lake']}/warehouse.duckdb)",
              f"  checkpoints: {', '.join(res['checkpoints'])}",
              f"  report:      {res['report']}", "", "  three queries worth running:"]
    rel = os.path.relpath(res["lake"])
    rel = res["lake"] if rel.startswith("..") else rel
    for why, sql in SQL_WORTH_RUNNING:
        lines.append(f"    # {why}\n    .venv/bin/t2i sql --lake {rel} \"{sql}\"")
    return "\n".join(lines)


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
