"""evaluate-checkpoints flow: score every complete, not yet evaluated checkpoint, then feedback.

    t2i evaluate --lake runs/lake [--config F] [--set evaluate.prompts_per_category=16] [--no-prefect]

Scheduled by the ``evaluate-checkpoints/scheduled`` deployment (prefect.yaml). Safe beside a
running trainer: only checkpoints registered in the lake with a ``COMPLETE`` directory are read,
and each checkpoint+benchmark writes one idempotent ``eval_results`` partition.
"""
from __future__ import annotations

import argparse
import json

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from djepa_t2i.config import Config, ConfigPaths, load_config, require_writable
from prefect import flow, get_run_logger, task

from training import evaluate as ce
from training.benchmark_fit import check_benchmark
from warehouse.artifacts import publish_summary
from warehouse.lake import checked_lake
from warehouse.feedback_rule import publish_next


def checked(lake: str | None, config_path: ConfigPaths, overrides: list[str] | None) -> tuple[Config, str]:
    """The validated config and the lake, with the image folder writable: before any checkpoint loads."""
    cfg = load_config(config_path, overrides)
    lake = checked_lake(cfg, lake)
    require_writable("evaluate.out", cfg.evaluate.out)
    check_benchmark(lake, cfg, ("evaluate", "feedback") if cfg.evaluate.run_feedback else ("evaluate",))
    return cfg, lake


def evaluate(lake: str, config_path: ConfigPaths = None, overrides: list[str] | None = None,
             progress: bool = True) -> dict:
    """Plain function under the flow: evaluate pending checkpoints, then run feedback."""
    cfg, lake = checked(lake, config_path, overrides)
    summary = ce.evaluate_pending(lake, cfg.evaluate, progress=progress)
    if cfg.evaluate.run_feedback and summary["evaluated"]:
        summary["feedback"] = publish_next(lake, cfg.feedback)
    return summary


@task(name="evaluate-checkpoint")
def _evaluate_one(lake: str, ckpt: dict, cfg) -> dict:
    return ce.evaluate_checkpoint(lake, ckpt, cfg, progress=False)


@task(name="feedback")
def _feedback(lake: str, cfg) -> dict:
    return publish_next(lake, cfg)


@flow(name="evaluate-checkpoints")
def evaluate_checkpoints(lake: str | None = None, config_path: ConfigPaths = None,
                         overrides: list[str] | None = None) -> dict:
    cfg, lake = checked(lake, config_path, overrides)
    log = get_run_logger()
    todo, skipped = ce.pending_checkpoints(lake, cfg.evaluate.benchmark)
    if cfg.evaluate.max_checkpoints:
        todo = todo[: cfg.evaluate.max_checkpoints]
    for s in skipped:
        log.info("skip %s: %s", ce.checkpoint_id(s["run_id"], s["step"]), s["why"])
    done = [_evaluate_one(lake, ck, cfg.evaluate) for ck in todo]
    summary = {"evaluated": done, "skipped": [{"checkpoint": ce.checkpoint_id(s["run_id"], s["step"]),
                                               "why": s["why"]} for s in skipped]}
    if cfg.evaluate.run_feedback and done:
        summary["feedback"] = _feedback(lake, cfg.feedback)
    log.info("evaluate-checkpoints: %s", json.dumps(summary, default=str))
    publish_summary("evaluate-checkpoints", lake, summary)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)


def run(args) -> int:
    _, lake = checked(args.lake, args.config, args.overrides)
    if args.no_prefect:
        summary = evaluate(lake, args.config, args.overrides)
    else:
        summary = evaluate_checkpoints(lake, args.config, args.overrides)
    print(json.dumps(summary, indent=1, default=str))
    return 0
