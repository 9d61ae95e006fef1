"""The training system's one door to the warehouse: everything ``training/`` reads from or writes
to the lake goes through these functions, so the trainer, data path, checkpoints and evaluation
never touch ``warehouse`` modules (or the lake's file layout) directly.

Reads: the ``samples`` index, the live sampling-weights version and its targets/schedule, the
live checkpoints (the ``checkpoints_live`` SQL view), whether a partition exists. Writes: one
partition per batch-statistics window, checkpoint (de)registration and evaluation results.
The warehouse's interval functions are passed through for scores computed in ``training/``.
"""
from __future__ import annotations

import pyarrow as pa

from djepa_t2i.config import Config
from warehouse import db
from warehouse import lake as lk
from warehouse import tiers
from warehouse import weights as wt
from warehouse.intervals import mean_interval, wilson  # noqa: F401  (training.composition's intervals)


def checked_lake(cfg: Config) -> str:
    """The configured lake, which must be a lake and writable (a one-line ``ConfigError`` if not)."""
    return lk.checked_lake(cfg)


def read_index(lake: str, tier: str | None = None) -> pa.Table:
    """The ``samples`` index the feedback sampler draws from, or a quality tier's index file
    (``warehouse.tiers``; the SFT phase); empty is an error (nothing to train on)."""
    t = tiers.read_tier(tier) if tier else lk.read_table(lake, "samples")
    if t.num_rows == 0:
        raise ValueError(f"lake {lake}: the samples index is empty; run `t2i build-shards` first")
    return t


def current_weights_version(lake: str) -> str | None:
    """The version named by ``<lake>/weights/CURRENT`` (None before the first publish)."""
    return wt.current_version(lake)


def weights_targets(lake: str, version: str, stage: str) -> tuple[dict, dict | None]:
    """(per-(kind, notion) targets, the ``stage`` (start | final) resolution trunc_norm) of one
    weights version."""
    _, table = wt.load(lake, version)
    return wt.targets(table), wt.resolution_schedule(table, stage)


def write_rows(lake: str, table: str, part: str, rows: list[dict]) -> str:
    """Write (or replace) one partition of ``table``: batch_stats, checkpoints or eval_results."""
    return lk.write_partition(lake, table, part, rows)


def has_partition(lake: str, table: str, part: str) -> bool:
    return lk.has_partition(lake, table, part)


def live_checkpoints(lake: str) -> list[dict]:
    """Registered checkpoints not since pruned (the ``checkpoints_live`` view), oldest first."""
    cols, rows = db.query(lake, "SELECT * FROM checkpoints_live ORDER BY created_at, run_id, step")
    return [dict(zip(cols, r)) for r in rows]


def current_captions(lake: str) -> list[tuple[str, str | None]]:
    """(caption, appended tags) of every key's current caption (the ``captions_current`` view)."""
    return [(c or "", t) for c, t in db.query(lake, "SELECT caption, tags FROM captions_current")[1]]
