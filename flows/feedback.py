"""feedback flow: the latest evaluation + batch statistics -> the next sampling-weights version.

    t2i feedback --lake runs/lake [--config F] [--set feedback.step_size=0.3] [--no-prefect]

The rule is ``warehouse.feedback_rule`` (docs/feedback.md); publication is atomic and the
running trainer picks the new version up at its next ``weights_check_every`` step.
"""
from __future__ import annotations

import argparse
import json

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli import add_flow_arguments
from djepa_t2i.config import Config, load_config
from prefect import flow, get_run_logger

from warehouse.artifacts import publish_summary
from warehouse.feedback_rule import Rule, publish_next


def run_feedback(lake: str, cfg: Config) -> dict:
    """Plain function: publish the next version; returns version, row count and why."""
    version, n, why = publish_next(lake, Rule.from_config(cfg.feedback), cfg.feedback.benchmark)
    return {"weights_version": version, "rows": n, "why": why}


@flow(name="feedback")
def feedback(lake: str = "runs/lake", config_path: str | None = None,
             overrides: list[str] | None = None) -> dict:
    summary = run_feedback(lake, load_config(config_path, overrides))
    get_run_logger().info("feedback: %s", json.dumps(summary))
    publish_summary("feedback", lake, summary)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    lake = args.lake or cfg.lake
    summary = run_feedback(lake, cfg) if args.no_prefect else feedback(lake, args.config, args.overrides)
    print(json.dumps(summary, indent=1))
    return 0
