"""Curate one img2dataset shard into the lake, as one partition per table.

``curate_shard`` runs ``process_shard`` (tasks/curate_shard.py) and writes its ``filter_scores``,
``pairs`` and ``shard_runs`` partitions, ``shard_runs`` last: its presence marks the shard
finished, so a killed run redoes exactly the unfinished shards and a rerun replaces instead of
duplicating. Cross-shard duplicates are settled afterwards over the whole lake
(tasks/cross_shard_dedup.py) and the run is summed up by tasks/curate_summary.py.
"""
from __future__ import annotations

import hashlib
import json

from djepa_t2i.config import Config
from tasks.curate_rows import shard_done
from tasks.curate_shard import process_shard
from tasks.shards import shard_name
from warehouse import lake as lk

TABLES = ("filter_scores", "pairs", "shard_runs")  # in write order: shard_runs marks the shard finished


def config_hash(cfg: Config) -> str:
    """What decides a shard's rows: the curate settings, minus where/how the work runs."""
    d = cfg.curate.model_dump(exclude={"force", "workers", "dask_address", "chunk", "max_batch_pixels"})
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def curate_shard(tar_path: str, lake: str, cfg: Config, run_id: str = "", force: bool = False) -> dict:
    """Process one shard and write its partitions (shard_runs last = the 'finished' marker).
    A finished shard is skipped unless ``force`` or its curate settings changed."""
    name = shard_name(tar_path)
    h = config_hash(cfg)
    if not force and shard_done(lake, name):
        row = lk.read_table(lake, "shard_runs", [name]).to_pylist()[0]
        if row.get("config_hash") == h:  # same input, same settings: nothing to redo
            return {**row, "skipped": True}
    out = process_shard(tar_path, cfg, run_id)
    out.run["config_hash"] = h
    for table in TABLES:
        lk.drop_orphan_temps(lake, table, name)  # a killed writer's leftovers (readers ignore them)
    lk.delete_partition(lake, "shard_runs", name)  # unmark first: a crash below means "redo"
    for table, rows in zip(TABLES, (out.scores, out.pairs, [out.run])):
        lk.write_partition(lake, table, name, rows)
    return {**out.run, "skipped": False}
