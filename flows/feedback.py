"""feedback flow: the latest evaluation + batch statistics -> the next sampling-weights version.

    t2i feedback --lake runs/lake [--config F] [--set feedback.step_size=0.3] [--no-prefect]

The rule is ``warehouse.feedback_rule`` (docs/feedback.md); publication is atomic and the
running trainer picks the new version up at its next ``weights_check_every`` step.
"""
from __future__ import annotations

import argparse

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from djepa_t2i.config import ConfigPaths, load_config
from flows.step import finish, run_lake_step
from prefect import flow

from training.benchmark_fit import check_benchmark
from warehouse.lake import checked_lake
from warehouse.feedback_rule import publish_next


@flow(name="feedback")
def feedback(lake: str | None = None, config_path: ConfigPaths = None,
             overrides: list[str] | None = None) -> dict:
    cfg = load_config(config_path, overrides)
    lake = checked_lake(cfg, lake)
    check_benchmark(lake, cfg, ("feedback",))
    return finish("feedback", lake, publish_next(lake, cfg.feedback))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)


def run(args) -> int:
    return run_lake_step(args, lambda cfg, lake: publish_next(lake, cfg.feedback),
                         lambda lake: feedback(lake, args.config, args.overrides),
                         check=lambda cfg, lake: check_benchmark(lake, cfg, ("feedback",)))
