"""``rehearse``: the production configs, end to end, as one Prefect flow of the same sub-flows a
user runs (``make rehearse``).

configs/phase1.yaml and configs/phase2.yaml, unchanged, with one override file of sizes and
paths (configs/rehearsal.yaml) on top: make-sample -> curate-laion (LAION aesthetic + CLIP NSFW
heads on open_clip, rapidocr, YOLOv8-face) -> recaption (InternVL2, internvl_chat layout) ->
notion-stats -> build-shards -> train phase 1 (T5 text, KL-VAE tokens) -> evaluate on GenEval
(YOLO COCO + CLIP colours) + feedback -> train phase 2 from phase 1 -> t2i generate. The weights
are written first by ``t2i rehearsal-weights`` (tiny, in the published formats) unless
``--weights`` names a folder that already holds them, or the override file points at real ones
(``--no-weights``). The summary lists, per step, the backend the lake recorded.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import int_at_least
from djepa_t2i.config import Config, load_config, require_writable
from prefect import flow, get_run_logger

from djepa_t2i.env import ROOT
from flows.build_shards import build_shards
from flows.curate_laion import curate_laion
from flows.evaluate_checkpoints import evaluate_checkpoints
from flows.notion_stats import notion_stats_flow
from flows.recaption import recaption_flow
from flows.train import train
from tasks.mini_laion import make_sample
from tasks.rehearsal_weights import write_all
from training import generate_cli
from training.checkpoints import latest
from warehouse.artifacts import publish_summary
from warehouse.db import query

PHASE1, PHASE2, OVERRIDE = (str(ROOT / "configs" / f) for f in ("phase1.yaml", "phase2.yaml", "rehearsal.yaml"))
PROMPT = "a photo of a red car"


def _inside(path: str, out: Path) -> bool:
    return Path(path).resolve().is_relative_to(out.resolve())


def start_fresh(out: Path, cfgs: list[Config]) -> None:
    """A rehearsal is one run from nothing: the lake, shards, runs and images its configs name are
    removed, but only those inside ``out`` (a path elsewhere is never deleted)."""
    parts = {out / "sample", out / "generated"}
    for c in cfgs:
        parts |= {Path(p) for p in (c.lake, c.shards.out, c.train.out, c.evaluate.out) if _inside(p, out)}
    for p in parts:
        shutil.rmtree(p, ignore_errors=True)


def checked_configs(override: str, weights: bool, seed: int) -> tuple[Config, Config]:
    """phase1 and phase2 with ``override``, validated before any work; their weights paths must
    exist unless this run writes them (``weights``)."""
    return tuple(load_config([base, override], [f"seed={seed}"], check_paths=not weights)
                 for base in (PHASE1, PHASE2))


def recorded_backends(lake: str) -> dict[str, list[str]]:
    """Per step, the backends the lake recorded (the rehearsal's proof of what ran)."""
    sql = {
        "curate": "SELECT DISTINCT filter || '=' || backend FROM filter_scores ORDER BY 1",
        "recaption": "SELECT DISTINCT source || ':' || coalesce(model_id, '') FROM captions ORDER BY 1",
        "notions": "SELECT DISTINCT spacy_model FROM notion_runs ORDER BY 1",
        "train": "SELECT phase || ': text=' || text_encoder || ':' || coalesce(text_encoder_weights, '') || "
                 "' tokens=' || tokenizer || ':' || coalesce(vae_weights, '') FROM train_backends ORDER BY phase",
        "evaluate": "SELECT DISTINCT benchmark || '=' || backend FROM eval_results ORDER BY 1",
        "feedback": "SELECT DISTINCT version || ': ' || regexp_extract(reason, '\\[([^@\\]]+)@', 1) FROM weights "
                    "WHERE version <> 'v0000' AND reason LIKE '%@%' ORDER BY 1",
    }
    return {step: [r[0] for r in query(lake, q)[1]] for step, q in sql.items()}


def generate(ckpt_dir: str, out: str) -> str:
    """``t2i generate`` on the newest checkpoint, with the sampling its recorded config names."""
    p = argparse.ArgumentParser()
    generate_cli.add_arguments(p)
    generate_cli.run(p.parse_args(["--ckpt", ckpt_dir, "--prompt", PROMPT, "--out", out, "--no-progress"]))
    return out


@flow(name="rehearse", log_prints=True)
def rehearse(out: str = "runs/rehearse", override: str = OVERRIDE, n: int = 40, weights: bool = True,
             seed: int = 0) -> dict:
    """Run the production configs end to end under ``out``; every step's summary and seconds."""
    log = get_run_logger()
    outp = Path(out)
    c1, c2 = [PHASE1, override], [PHASE2, override]
    ov = [f"seed={seed}"]
    cfg1, cfg2 = checked_configs(override, weights, seed)
    steps: dict[str, dict] = {}

    def step(name, fn, *a, **k):
        t0 = time.perf_counter()
        log.info("rehearse: %s ...", name)
        res = fn(*a, **k)
        steps[name] = {"seconds": round(time.perf_counter() - t0, 1), "result": res}
        return res

    start_fresh(outp, [cfg1, cfg2])
    if weights:
        step("rehearsal-weights", write_all, f"{out}/weights")
    step("make-sample", make_sample, f"{out}/sample", n=n, seed=seed)
    lake = cfg1.lake
    step("curate-laion", curate_laion, f"{out}/sample", lake, c1, ov)
    step("recaption", recaption_flow, lake, c1, ov)
    step("notion-stats", notion_stats_flow, lake, c1, ov)
    step("build-shards", build_shards, lake, cfg1.shards.out, c1, ov)
    step("train phase 1", train, c1, ov, 1)
    step("evaluate + feedback", evaluate_checkpoints, lake, c1, ov)
    ck1 = latest(cfg1.train.out)
    if ck1 is None:
        raise RuntimeError(f"phase 1 wrote no checkpoint under {cfg1.train.out}")
    step("train phase 2", train, c2, ov + [f"train.init_from={ck1}"], 1)
    step("generate", generate, cfg2.train.out, f"{out}/generated/rehearsal.png")
    res = {"out": out, "lake": lake, "backends": recorded_backends(lake), "steps": steps}
    publish_summary("rehearse", lake, res)
    return res


def format_summary(res: dict) -> str:
    lines = ["", "djepa-t2i rehearsal of configs/phase1.yaml + phase2.yaml: done", ""]
    lines += [f"  {name:<24} {s['seconds']:>7.1f} s" for name, s in res["steps"].items()]
    lines += ["", "  backends the lake recorded, per step:"]
    lines += [f"    {step:<10} {', '.join(b) or '(none)'}" for step, b in res["backends"].items()]
    lines += ["", f"  lake: {res['lake']}   image: {res['steps']['generate']['result']}"]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/rehearse", help="sample, weights and generated image (the override "
                   "file names the lake, shards and run folders; those inside --out are replaced)")
    p.add_argument("--override", default=OVERRIDE, help="the sizes-and-paths file over phase1/phase2 "
                   "(default: configs/rehearsal.yaml)")
    p.add_argument("--n", type=int_at_least(1), default=40, help="pairs in the mini-LAION sample")
    p.add_argument("--no-weights", action="store_true",
                   help="do not write tiny weights (the override file points at real ones)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="also print the step summaries as JSON")


def run(args) -> int:
    checked_configs(args.override, not args.no_weights, args.seed)  # a bad file or path: one line
    require_writable("--out", args.out)
    res = rehearse(args.out, args.override, args.n, not args.no_weights, args.seed)
    print(format_summary(res))
    if args.json:
        print(json.dumps(res, indent=1, default=str))
    return 0
