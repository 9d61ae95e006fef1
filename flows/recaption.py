"""recaption flow: a caption with provenance for every passed pair -> lake/captions.

    t2i recaption --lake runs/lake [--config F] [--set recaption.backend=internvl]
                  [--set recaption.weights=/models/InternVL2-2B-hf] [--force] [--no-prefect]

A thin Prefect wrapper over ``tasks.recaption.recaption`` (partitioning and resume rules there).
"""
from __future__ import annotations

import argparse

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from djepa_t2i.config import ConfigPaths, Recaption, load_config
from flows.step import finish, run_lake_step
from prefect import flow, task

from tasks.recaption import recaption
from warehouse.lake import checked_lake


@task(name="recaption-shards")
def _recaption(lake: str, cfg: Recaption, max_pixels: int, force: bool) -> dict:
    return recaption(lake, cfg, max_pixels, force, progress=False)


@flow(name="recaption")
def recaption_flow(lake: str | None = None, config: ConfigPaths = None,
                   overrides: list[str] | None = None, force: bool = False) -> dict:
    c = load_config(config, overrides)
    lake = checked_lake(c, lake)
    summary = _recaption(lake, c.recaption, c.curate.resolution.max_pixels, force)
    return finish("recaption", lake, summary)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)
    p.add_argument("--force", action="store_true", help="recaption shards already captioned")


def run(args) -> int:
    return run_lake_step(args, lambda c, lake: recaption(lake, c.recaption, c.curate.resolution.max_pixels, args.force),
                         lambda lake: recaption_flow(lake, args.config, args.overrides, args.force))
