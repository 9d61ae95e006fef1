"""Prefect flow ``curate-laion``: one task per img2dataset shard, on Dask via prefect-dask.

The outer flow reads the config and builds the task runner from it (a LocalCluster, or an
existing cluster at ``curate.dask_address``), so a deployment and the CLI behave the same.
Finished shards (a ``shard_runs`` partition exists) are skipped unless ``curate.force``; after
all shards, cross-shard duplicates are settled over the whole lake and the accounting
``in = passed + rejected + quarantined`` is checked (a mismatch raises).
Run in-process with ``t2i curate INPUT --lake LAKE``: Prefect 3 starts an ephemeral API when no
server is configured.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import djepa_t2i.env  # noqa: F401  (offline environment before library imports)
import dask
from djepa_t2i.cli_args import add_config_arguments, int_at_least
from djepa_t2i.config import Config, ConfigPaths, default, load_config
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_dask import DaskTaskRunner
from tqdm import tqdm

from tasks.cross_shard_dedup import cross_shard_dedup
from tasks.curate import curate_shard
from tasks.curate_summary import format_summary, summarize
from tasks.shards import list_shards, shard_name
from tasks.stages import declare_stages
from warehouse.artifacts import publish_summary
from warehouse.db import save_database
from warehouse.lake import ensure_writable


def check_run(input_dir: str, lake: str, cfg: Config) -> None:
    """Every stage of ``curate.order`` known and well-formed (no model is loaded), the input folder
    present and the lake writable, before any shard is touched (a deployment with a bad path fails
    at once, not after every shard). The lake check is a real probe write, so object-storage lakes
    and read-only mounts are caught too; it raises ``LakeNotWritable``."""
    declare_stages(cfg)
    list_shards(input_dir)  # ConfigError: no such folder, or no .tar in it (before the lake is made)
    ensure_writable(lake)


def checked_config(input_dir: str, lake: str, config_path: ConfigPaths, overrides: list[str] | None) -> Config:
    """The validated config, with :func:`check_run` passed."""
    cfg = load_config(config_path, overrides)
    check_run(input_dir, lake, cfg)
    return cfg


def curate_shard_task_fn(tar_path: str, lake: str, cfg_json: str, run_id: str, force: bool) -> dict:
    cfg = Config.model_validate_json(cfg_json)
    return curate_shard(tar_path, lake, cfg, run_id, force)


def _progress(total: int, disable: bool):
    return tqdm(total=total, unit="shard", desc="curate", disable=disable, file=sys.stderr)


def finish(lake: str, shards: list[str], cfg: Config) -> dict:
    """Cross-shard dedup, accounting check, warehouse views; the run's summary."""
    changed = cross_shard_dedup(lake, cfg.curate.dedup.phash_distance) if cfg.curate.dedup.enabled else 0
    s = summarize(lake, [shard_name(t) for t in shards], cfg.curate.order)
    s["cross_shard_duplicates_relabelled"] = changed
    save_database(lake)
    return s


def run_plain(input_dir: str, lake: str, cfg: Config, progress: bool = True) -> dict:
    """The same work without Prefect or Dask: sequential, in this process."""
    check_run(input_dir, lake, cfg)
    shards = list_shards(input_dir)
    run_id = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    with _progress(len(shards), not progress) as bar:
        for t in shards:
            curate_shard(t, lake, cfg, run_id, cfg.curate.force)
            bar.update(1)
    s = finish(lake, shards, cfg)
    s.update(run_id=run_id, seconds=round(time.perf_counter() - t0, 2), runner="in-process")
    return s


curate_shard_task = task(name="curate-shard", cache_policy=NO_CACHE, retries=1,
                         task_run_name="curate-{tar_path}")(curate_shard_task_fn)

@flow(name="curate-shards")
def _curate_shards(shards: list[str], lake: str, cfg_json: str, run_id: str, force: bool,
                   progress: bool = False) -> list[dict]:
    futs = [curate_shard_task.submit(t, lake, cfg_json, run_id, force) for t in shards]
    out = []
    with _progress(len(futs), not progress) as bar:
        for f in as_completed(futs):
            out.append(f.result())
            bar.update(1)
    return out


def worker_api_settings() -> dict:
    """The Prefect API for the Dask workers' task runs. With no server configured, this process
    runs an ephemeral API the workers do not know of; each worker would start a temporary server
    of its own (measured: minutes on the loaded 2-core VM, its task runs invisible to this flow).
    The ephemeral API's loopback URL goes into the settings the task runner ships with each task."""
    if PREFECT_API_URL.value():
        return {}
    return {PREFECT_API_URL: str(get_client(sync_client=True).api_url)}


# Dask starts LocalCluster workers with MALLOC_TRIM_THRESHOLD_=65536, so every large buffer is
# mapped fresh and returned to the OS on free; these thresholds keep them mapped (the curation CPU
# they save: docs/scale.md, bench/worker_malloc.py). Only pre-spawn-environ reaches a worker before
# it starts.
WORKER_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "67108864"}


def task_runner(cfg: Config) -> DaskTaskRunner:
    if cfg.curate.dask_address:
        return DaskTaskRunner(address=cfg.curate.dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": cfg.curate.workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})

@flow(name="curate-laion", log_prints=True)
def curate_laion(input_dir: str, lake: str, config_path: ConfigPaths = None,
                 overrides: list[str] | None = None, progress: bool = False) -> dict:
    """Curate every img2dataset shard under ``input_dir`` into the lake at ``lake``."""
    cfg = checked_config(input_dir, lake, config_path, overrides)
    shards = list_shards(input_dir)
    run_id = uuid.uuid4().hex[:12]
    t0 = time.perf_counter()
    with temporary_settings(worker_api_settings()), dask.config.set(
            {"distributed.nanny.pre-spawn-environ": {
                **dask.config.get("distributed.nanny.pre-spawn-environ"), **WORKER_MALLOC}}):
        _curate_shards.with_options(task_runner=task_runner(cfg))(
            shards, lake, cfg.model_dump_json(), run_id, cfg.curate.force, progress)
    s = finish(lake, shards, cfg)
    s.update(run_id=run_id, seconds=round(time.perf_counter() - t0, 2),
             runner=f"dask:{cfg.curate.dask_address or f'LocalCluster({cfg.curate.workers})'}")
    print(format_summary(s))
    publish_summary("curate-laion", lake, s)
    return s


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="folder of img2dataset shards (NNNNN.tar + NNNNN.parquet)")
    p.add_argument("--lake", default=default("lake"), help="lake directory")
    add_config_arguments(p, "curate.ocr.max_text_area=0.1")
    p.add_argument("--dask-address", default=None, help="existing Dask scheduler (default: a LocalCluster)")
    p.add_argument("--workers", type=int_at_least(1), default=None, help="LocalCluster workers (curate.workers)")
    p.add_argument("--force", action="store_true", help="redo shards that are already finished")
    p.add_argument("--no-prefect", action="store_true", help="run in this process without Prefect/Dask")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args) -> int:
    ov = list(args.overrides)
    if args.dask_address:
        ov.append(f"curate.dask_address={json.dumps(args.dask_address)}")  # quoted: [::1]:8786 is not YAML
    if args.workers is not None:
        ov.append(f"curate.workers={args.workers}")
    if args.force:
        ov.append("curate.force=true")
    if args.no_prefect:
        s = run_plain(args.input, args.lake, load_config(args.config, ov))  # run_plain checks the stages and paths
        print(format_summary(s))
    else:
        # checked here too: an error raised inside the flow would be logged by Prefect as a traceback
        checked_config(args.input, args.lake, args.config, ov)
        s = curate_laion(args.input, args.lake, args.config, ov, progress=True)
    if args.json:
        print(json.dumps(s, indent=2, default=str))
    return 0
