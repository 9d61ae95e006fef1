"""notion-stats flow: notions of every current caption -> lake/notions, then sampling weights v0.

    t2i notions --lake runs/lake [--config F] [--set notions.temper=0.3] [--no-prefect]
"""
from __future__ import annotations

import argparse

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from djepa_t2i.config import ConfigPaths, Notions, Schedule, load_config
from flows.step import finish, run_lake_step
from prefect import flow, task

from tasks.notion_stats import extract_lake, require_captions
from warehouse.lake import checked_lake
from warehouse.weights_v0 import publish_v0


def notion_stats(lake: str, cfg: Notions, schedule: Schedule, progress: bool = True) -> dict:
    """Plain function under the flow: extract, then publish v0; returns the summary."""
    summary = extract_lake(lake, cfg.spacy_model, cfg.entities, cfg.max_chars, cfg.batch_size,
                           cfg.n_process, progress)
    version, n_rows = publish_v0(lake, cfg, schedule)
    summary.update(weights_version=version, weights_rows=n_rows)
    return summary


@task(name="extract-notions")
def _extract(lake: str, cfg: Notions) -> dict:
    return extract_lake(lake, cfg.spacy_model, cfg.entities, cfg.max_chars, cfg.batch_size,
                        cfg.n_process, progress=False)


@task(name="publish-weights-v0")
def _publish(lake: str, cfg: Notions, schedule: Schedule) -> tuple[str, int]:
    return publish_v0(lake, cfg, schedule)


@flow(name="notion-stats")
def notion_stats_flow(lake: str | None = None, config: ConfigPaths = None,
                      overrides: list[str] | None = None) -> dict:
    c = load_config(config, overrides)
    lake = checked_lake(c, lake)
    require_captions(lake)  # before any task run: one line, not a failed flow
    summary = _extract(lake, c.notions)
    version, n_rows = _publish(lake, c.notions, c.schedule)
    summary.update(weights_version=version, weights_rows=n_rows)
    return finish("notion-stats", lake, summary)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)


def run(args) -> int:
    return run_lake_step(args, lambda cfg, lake: notion_stats(lake, cfg.notions, cfg.schedule),
                         lambda lake: notion_stats_flow(lake, args.config, args.overrides))
