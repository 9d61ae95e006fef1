"""The rows curation writes for one shard: ``pairs``, ``filter_scores`` and its ``shard_runs`` row.

Every input pair ends in exactly one of ``STATUSES``; :func:`count_statuses` is the one count of
them (the shard's row, the rows made storable, the cross-shard relabelling and the summary all
use it) and :func:`shard_run_row` the one builder of a ``shard_runs`` row, which is written last:
:func:`shard_done` is the "finished" test every later step uses.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

import pyarrow as pa

from tasks import img2dataset_meta as i2d
from tasks.stages import Result, Stage
from warehouse import lake as lk

STATUSES = ("passed", "rejected", "quarantined", i2d.SOURCE_FAILED)  # every input pair ends in exactly one
BASE_COLUMNS = ("shard", "source_path", "run_id", "created_at")  # the shard's columns on each of its rows


class AccountingError(AssertionError):
    """A pair counted twice or not at all: the run's totals cannot be trusted."""


@dataclass
class ShardOutput:
    pairs: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    run: dict = field(default_factory=dict)


def shard_done(lake: str, shard: str) -> bool:
    """Whether the shard's ``shard_runs`` row is in the lake: it is written last, so the shard is finished."""
    return lk.has_partition(lake, "shard_runs", shard)


def shard_base(shard: str, tar_path: str, run_id: str) -> dict:
    """The columns every row of one shard's curation carries."""
    return {"shard": shard, "source_path": tar_path, "run_id": run_id, "created_at": datetime.now(timezone.utc)}


def count_statuses(statuses: Iterable[str]) -> dict[str, int]:
    """``{"n_passed": .., "n_rejected": .., "n_quarantined": .., "n_source_failed": ..}``."""
    statuses = list(statuses)
    return {f"n_{st}": statuses.count(st) for st in STATUSES}


def shard_run_row(base: dict, pairs: list[dict], n_refused: int, errors: list[str], seconds: float,
                  **extra) -> dict:
    """The ``shard_runs`` row of a shard whose rows are ``pairs`` (``extra``: timings, backends,
    source stats, config hash)."""
    return {**base, "n_in": len(pairs), **count_statuses(p["status"] for p in pairs), "n_refused": n_refused,
            "errors": json.dumps(errors), "seconds": seconds, **extra}


class PairRows:
    """The ``pairs`` rows of one shard, each with img2dataset's columns whatever became of the pair."""

    def __init__(self, base: dict, parquet_rows: dict[str, dict] | None):
        self.base, self.parquet_rows, self.rows = base, parquet_rows or {}, []

    def emit(self, key: str, status: str, stage: str | None = None, reason: str | None = None,
             score: float | None = None, **columns) -> None:
        src = self.parquet_rows.get(key)
        self.rows.append({**self.base, **(i2d.pair_columns(src) if src else {}), "key": key, "status": status,
                          "stage": stage, "reason": reason, "score": score, **columns})


def score_row(shard: str, key: str, stage: Stage, r: Result) -> dict:
    return {"key": key, "shard": shard, "filter": stage.name, "backend": stage.backend, "score": float(r.score),
            "passed": bool(r.passed), "details": json.dumps(r.details, default=str)}


_NOT_STORABLE = (pa.ArrowException, ValueError, TypeError, OverflowError)


def storable(out: ShardOutput) -> ShardOutput:
    """The rows as the lake will store them: a pair row Arrow cannot type (a value no reader
    checked) becomes a quarantined row with the reason, and its scores are dropped."""
    try:
        lk.to_arrow("pairs", out.pairs)
        return out
    except _NOT_STORABLE:
        pass
    bad = set()
    for i, row in enumerate(out.pairs):
        try:
            lk.to_arrow("pairs", [row])
        except _NOT_STORABLE as e:
            bad.add(row["key"])
            out.pairs[i] = {**{k: row[k] for k in BASE_COLUMNS}, "key": escape(row["key"]), "status": "quarantined",
                            "stage": "store", "reason": f"row not storable: {type(e).__name__}: {e}"}
    out.scores = [r for r in out.scores if r["key"] not in bad]
    out.run.update(count_statuses(p["status"] for p in out.pairs))
    return out


def escape(key: str) -> str:
    """A key Arrow can store: undecodable name bytes (tar's surrogateescape) as ``\\xNN``."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
