"""The shape every lake step shares (issue #24 item 4: the flows' ``run()`` bodies repeated it):
a flow ends by logging its summary, publishing it as a Prefect artifact and returning it; the
``t2i`` command loads the config, checks the lake, runs the plain function (``--no-prefect``) or
the flow, and prints the summary as JSON. Not a flow itself: every flow may import it."""
from __future__ import annotations

import json
from typing import Any, Callable

from djepa_t2i.config import Config, load_config
from prefect import get_run_logger
from warehouse.artifacts import publish_summary
from warehouse.lake import checked_lake


def finish(name: str, lake: str, summary: dict) -> dict:
    """Log ``summary`` in the flow run, publish it as the run's artifact, return it."""
    get_run_logger().info("%s: %s", name, json.dumps(summary, default=str))
    publish_summary(name, lake, summary)
    return summary


def run_lake_step(args: Any, plain: Callable[[Config, str], dict], flow: Callable[[str], dict],
                  check: Callable[[Config, str], None] | None = None) -> int:
    """A lake step's command: ``plain(cfg, lake)`` with ``--no-prefect``, else ``flow(lake)``;
    ``check(cfg, lake)`` runs first, so a refusal is one line before any work."""
    cfg = load_config(args.config, args.overrides)
    lake = checked_lake(cfg, args.lake)
    if check is not None:
        check(cfg, lake)
    summary = plain(cfg, lake) if args.no_prefect else flow(lake)
    print(json.dumps(summary, indent=1, default=str))
    return 0
