"""The argparse pieces command modules share (``add_arguments`` of flows/, tasks/, training/,
warehouse/): typed integer ranges and the ``--config``/``--set``/``--lake`` options. A bottom
layer like ``djepa_t2i.config``, so no command module imports the CLI above it."""
from __future__ import annotations

import argparse
from typing import Callable


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``, else a one-line error with the range."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def add_config_arguments(p: argparse.ArgumentParser, example: str = "train.steps=100") -> None:
    """``--config FILE`` and repeatable ``--set key.sub=value`` (``djepa_t2i.config.load_config``)."""
    p.add_argument("--config", action="append", default=None, metavar="FILE",
                   help="YAML config file; repeat to merge several in order (a later file's keys win), "
                        "e.g. --config configs/phase1.yaml --config configs/rehearsal.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help=f"config override, e.g. {example} (repeatable)")


def add_flow_arguments(p: argparse.ArgumentParser) -> None:
    """The options every flow command shares: where the lake is, the config, overrides."""
    p.add_argument("--lake", default=None, help="lake directory (default: config lake)")
    add_config_arguments(p)
    p.add_argument("--no-prefect", action="store_true", help="run the plain function, no flow run")
