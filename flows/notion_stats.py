"""notion-stats flow: notions of every current caption -> lake/notions, then sampling weights v0.

    t2i notions --lake runs/lake [--config F] [--set notions.temper=0.3] [--no-prefect]
"""
from __future__ import annotations

import argparse
import json

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from djepa_t2i.config import Config, ConfigPaths, Notions, load_config
from prefect import flow, get_run_logger, task

from tasks.notion_stats import extract_lake, require_captions
from warehouse.artifacts import publish_summary
from warehouse.lake import checked_lake
from warehouse.weights_v0 import SCHEDULE, Temper, publish_v0


def schedule_of(cfg: Config) -> dict[str, tuple[float, float, float, float]]:
    """The config's phase-2 resolution schedule (start, final) as v0 publishes it."""
    return {k: (v.mu, v.sigma, v.a, v.b) for k, v in
            (("start", cfg.schedule.start), ("final", cfg.schedule.final))}


def _temper(cfg: Notions) -> Temper:
    return Temper(cfg.temper, cfg.min_target, cfg.max_target, cfg.min_count, cfg.max_values_per_kind)


def notion_stats(lake: str, cfg: Notions, progress: bool = True, schedule: dict = SCHEDULE) -> dict:
    """Plain function under the flow: extract, then publish v0; returns the summary."""
    summary = extract_lake(lake, cfg.spacy_model, cfg.entities, cfg.max_chars, cfg.batch_size,
                           cfg.n_process, progress)
    version, n_rows = publish_v0(lake, _temper(cfg), schedule)
    summary.update(weights_version=version, weights_rows=n_rows)
    return summary


@task(name="extract-notions")
def _extract(lake: str, cfg: Notions) -> dict:
    return extract_lake(lake, cfg.spacy_model, cfg.entities, cfg.max_chars, cfg.batch_size,
                        cfg.n_process, progress=False)


@task(name="publish-weights-v0")
def _publish(lake: str, cfg: Notions, schedule: dict) -> tuple[str, int]:
    return publish_v0(lake, _temper(cfg), schedule)


@flow(name="notion-stats")
def notion_stats_flow(lake: str = "runs/lake", config: ConfigPaths = None,
                      overrides: list[str] | None = None) -> dict:
    c = load_config(config, overrides)
    lake = checked_lake(c, lake)
    require_captions(lake)  # before any task run: one line, not a failed flow
    summary = _extract(lake, c.notions)
    version, n_rows = _publish(lake, c.notions, schedule_of(c))
    summary.update(weights_version=version, weights_rows=n_rows)
    get_run_logger().info("notion-stats: %s", json.dumps(summary))
    publish_summary("notion-stats", lake, summary)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)


def run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    lake = checked_lake(cfg, args.lake)
    if args.no_prefect:
        summary = notion_stats(lake, cfg.notions, schedule=schedule_of(cfg))
    else:
        summary = notion_stats_flow(lake, args.config, args.overrides)
    print(json.dumps(summary, indent=1))
    return 0
