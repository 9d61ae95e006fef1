"""The argparse pieces command modules share (``add_arguments`` of flows/, tasks/, training/,
warehouse/): typed integer ranges, the ``--config``/``--set``/``--lake`` options, and the one-line
account of a machine fault (``t2i`` and each torchrun rank of the trainer print it, exit 1). A
bottom layer like ``djepa_t2i.config``, so no command module imports the CLI above it."""
from __future__ import annotations

import argparse
import errno
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


FAULTS = {errno.ENOSPC: ("no space left on device", "free space"),
          errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota"),
          errno.EIO: ("input/output error", "check the disk")}


def runtime_fault(e: BaseException) -> str | None:
    """The one-line account of a machine fault (``OSError`` with a fault's errno, also when a
    library wrapped it: Arrow's ``OSError`` and safetensors' ``SafetensorError`` carry the text
    only, ``I/O error: No space left on device (os error 28)``), or None."""
    for err in (e, e.__cause__, e.__context__):
        if err is None:
            continue
        hit = FAULTS.get(getattr(err, "errno", None)) if isinstance(err, OSError) else None
        hit = hit or next((f for f in FAULTS.values() if f[0] in str(err).lower()), None)
        if hit:
            where = f" ({err.filename})" if getattr(err, "filename", None) else ""
            return f"{hit[0]}{where}; {hit[1]}, then rerun the command (finished work is kept)"
    return None
