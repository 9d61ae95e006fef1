"""What every experiment records beside its numbers: hardware, date, wall time, the command, and
mean ± std tables. A number without the machine and the time it took is not a result."""
from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import statistics
import sys
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq
import torch


def hardware() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    threads = torch.get_num_threads()
    gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    return (f"{os.cpu_count()} CPU cores ({cpu}), torch threads {threads}, {gpu}; "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def command() -> str:
    return " ".join([os.path.relpath(sys.argv[0]) if sys.argv else "?"] + sys.argv[1:])


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def provenance(wall: float, what: str) -> list[str]:
    """The Markdown lines every result carries: command, date, hardware, wall time (``what`` ran)."""
    return [f"- command: `{command()}`", f"- date: {now()}", f"- hardware: {hardware()}",
            f"- wall time: {wall / 60:.1f} min ({what})"]


def mean_std(xs: Iterable[float]) -> tuple[float, float]:
    xs = list(xs)
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(m: float, s: float | None = None) -> str:
    if math.isnan(m):
        return "n/a"
    return f"{m:.3f}" if s is None else f"{m:.3f} ± {s:.3f}"


def write_rows(path: str, rows: list[dict]) -> None:
    """Every scored row as zstd Parquet, a column a row lacks as null: typed, readable by DuckDB
    (``SELECT * FROM 'path'``) and pyarrow, and small enough to keep in git (docs/experiments.md)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows])
    pq.write_table(table, path, compression="zstd", compression_level=9)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def preset_parser(prog: str, doc: str, presets: dict, int_keys: tuple[str, ...], work: str
                  ) -> argparse.ArgumentParser:
    """The options both experiments share: a preset, integer overrides of it, seeds, paths."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(presets), default="full")
    for k in int_keys:
        p.add_argument("--" + k.replace("_", "-"), type=int, dest=k)
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--device", default="auto")
    p.add_argument("--work", default=work, help="lakes, shards, checkpoints")
    p.add_argument("--results", default="docs/experiments", help="parquet/png/md/json go here")
    return p


def apply_preset(a: argparse.Namespace, presets: dict) -> argparse.Namespace:
    """``a.cfg``: the preset with every option the user gave on top."""
    cfg = dict(presets[a.preset])
    cfg.update({k: v for k, v in vars(a).items() if k in cfg and v is not None})
    a.cfg = cfg
    return a


def run_cli(main: Callable[[], int], report_only: Callable[[], int]) -> int:
    """An experiment's entry point: ``--report-only`` rewrites the report from the saved
    results.json (after parts were run as separate commands) instead of running ``main``."""
    if "--report-only" in sys.argv:
        sys.argv.remove("--report-only")
        return report_only()
    return main()
