"""``train``: launch and supervise a training run (torchrun when ``nproc > 1``).

The flow starts the trainer as a subprocess (``python -m training.trainer``, or
``python -m torch.distributed.run --standalone --nproc_per_node N -m training.trainer``), streams
its log into the flow run's log and ``<train.out>/train.log``, fails on a non-zero exit, and
records the run in the lake ``train_runs`` table. It resumes by default (``--resume auto``), so
re-running a killed flow continues the same loss curve and data stream.

``t2i train`` runs the trainer in this process (that is also what each torchrun rank runs);
``t2i train --nproc N`` launches torchrun itself, ``--flow`` goes through the Prefect flow.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import int_at_least
from djepa_t2i.config import ConfigPaths, config_list, load_config
from prefect import flow, get_run_logger

from training.trainer import add_arguments as trainer_arguments
from training.trainer import checked_config, train_main
from warehouse import lake as lk
from warehouse.artifacts import publish_summary

ROOT = Path(__file__).resolve().parent.parent


def launch_command(config_path: ConfigPaths, overrides: list[str] | None, nproc: int = 1,
                   resume: str | None = "auto", steps: int | None = None, max_restarts: int = 0) -> list[str]:
    """The trainer's command line. ``max_restarts``: torchrun restarts the whole group that many
    times after a rank dies; each restart runs this command again, so with ``--resume auto`` it
    continues from the last complete checkpoint on the same global data stream."""
    args = []
    for path in config_list(config_path):
        args += ["--config", path]
    for o in overrides or []:
        args += ["--set", o]
    if resume:
        args += ["--resume", resume]
    if steps is not None:
        args += ["--steps", str(steps)]
    if nproc <= 1:
        return [sys.executable, "-m", "training.trainer", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            f"--max-restarts={max_restarts}", "-m", "training.trainer", *args]


def supervise(cmd: list[str], log_path: str | Path, on_line: Callable[[str], None] = print,
              threads_per_proc: int = 1) -> int:
    """Run ``cmd``, tee its merged output to ``log_path`` and ``on_line``, return the exit code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # not inherited: Dask's worker settings (distributed.nanny.pre-spawn-environ) leak into this
    # process. torch takes its thread count from MKL_NUM_THREADS (1 thread with OMP=2, MKL=1), and
    # MALLOC_TRIM_THRESHOLD_=65536 returns memory to the OS on every free (the slowdown they cause
    # is in docs/benchmarks.md)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads_per_proc)
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    # torchrun shares its rendezvous store with the ranks, and a group restarted after a rank died
    # (--max-restarts) read the dead rank's address from it: 'Gloo connectFullMesh failed ...
    # Connection refused' (pytorch issue #135712). Unshared, rank 0 hosts a fresh store each round
    env.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    # the caller's working directory: relative config paths (lake, train.out, weights) must mean
    # what they meant when checked_config read them (ROOT is on PYTHONPATH for -m training.trainer)
    with open(log_path, "a") as log, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, bufsize=1, env=env) as p:
        log.write(f"$ {' '.join(cmd)}\n")
        for line in p.stdout:
            log.write(line)
            log.flush()
            on_line(line.rstrip("\n"))
        return p.wait()


class RunFailed(RuntimeError):
    """The supervised trainer exited non-zero (its ranks' errors are in the log the message names)."""


def record_run(lake: str, run_id: str, row: dict) -> None:
    lk.write_partition(lake, "train_runs", f"{run_id}-{row['started_at']:%Y%m%dT%H%M%S}", [row])


def run_training(config_path: ConfigPaths = None, overrides: list[str] | None = None, nproc: int = 1,
                 resume: str | None = "auto", steps: int | None = None,
                 on_line: Callable[[str], None] = print, max_restarts: int = 0) -> dict:
    """The plain function under the flow: launch, supervise, record; raises on failure."""
    cfg = checked_config(config_path, overrides, resume)  # fail fast, before any process starts
    run_id = cfg.train.resolved_run_id()
    cmd = launch_command(config_path, overrides, nproc, resume, steps, max_restarts)
    started = dt.datetime.now(dt.timezone.utc)
    # each rank gets its share of the cores unless T2I_THREADS_PER_RANK says otherwise
    # (docs/benchmarks.md: training settings chosen by a measurement)
    threads = int(os.environ.get("T2I_THREADS_PER_RANK", max(1, (os.cpu_count() or 1) // max(nproc, 1))))
    rc = supervise(cmd, Path(cfg.train.out) / "train.log", on_line, threads_per_proc=threads)
    row = {"run_id": run_id, "nproc": nproc, "command": json.dumps(cmd), "config": json.dumps(cfg.model_dump(mode="json")),
           "returncode": rc, "status": "completed" if rc == 0 else "failed", "started_at": started,
           "finished_at": dt.datetime.now(dt.timezone.utc), "log_path": str((Path(cfg.train.out) / "train.log").resolve())}
    record_run(cfg.lake, run_id, row)
    if rc != 0:
        raise RunFailed(f"training run {run_id} exited with code {rc}; log: {row['log_path']}")
    return {"run_id": run_id, "returncode": rc, "out": cfg.train.out}


@flow(name="train")
def train(config_path: ConfigPaths = None, overrides: list[str] | None = None, nproc: int = 1,
          resume: str | None = "auto", max_restarts: int = 0) -> dict:
    log = get_run_logger()
    res = run_training(config_path, overrides, nproc, resume, on_line=log.info, max_restarts=max_restarts)
    publish_summary("train", load_config(config_path, overrides).lake, res)
    return res


def add_arguments(p: argparse.ArgumentParser) -> None:
    trainer_arguments(p)
    p.add_argument("--nproc", type=int_at_least(1), default=1, help="processes (torchrun --standalone) on this machine")
    p.add_argument("--max-restarts", type=int_at_least(0), default=0,
                   help="with --nproc > 1: restarts of the whole group after a rank dies (torchrun's "
                        "--max-restarts); a restarted group continues from the last complete checkpoint")
    p.add_argument("--flow", action="store_true", help="run through the Prefect `train` flow")


def run(args: argparse.Namespace) -> int:
    # an empty samples index is one line before any model, process or flow run starts
    lk.require_rows(checked_config(args.config, args.overrides, args.resume).lake, "samples", "t2i build-shards")
    if args.flow:  # (checked above: a config error is one line, not a failed flow run)
        train(args.config, args.overrides, args.nproc, args.resume, args.max_restarts)
        return 0
    if args.nproc > 1:
        try:
            run_training(args.config, args.overrides, args.nproc, args.resume, args.steps,
                         max_restarts=args.max_restarts)
        except RunFailed as e:  # one line, exit 1: the ranks' own errors are in the log it names
            print(f"t2i train: error: {e}", file=sys.stderr)
            return 1
        return 0
    return train_main(args)
