"""Versioned sampling weights: publication, the CURRENT pointer, and reading the live version.

The feedback contract between notion-stats (v0), the feedback flow (v1, v2, ...) and the
trainer. A version is one immutable partition ``weights/vNNNN.parquet``; ``weights/CURRENT``
names the live one and is replaced atomically after the partition exists, so a trainer that
reads CURRENT always finds a complete version.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pyarrow as pa

from warehouse import lake as lk
from warehouse.files import lake_fs, write_atomic
from warehouse.schema import CURRENT

KINDS = ("notion", "color", "shape", "count", "spatial", "texture", "nonspatial", "style", "source",
         "category", "resolution")
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def versions(lake: str) -> list[str]:
    return [p for p in lk.partitions(lake, "weights") if _VERSION_RE.match(p)]


def next_version(lake: str) -> str:
    vs = versions(lake)
    n = int(_VERSION_RE.match(vs[-1]).group(1)) + 1 if vs else 0
    return f"v{n:04d}"


def resolution_row(stage: str, mu: float, sigma: float, a: float, b: float, reason: str) -> dict:
    """The resolution schedule as a weights row: ``trunc_norm(mu, sigma, a, b)`` in kilopixels."""
    return {"kind": "resolution", "value": stage, "reason": reason,
            "params": json.dumps({"mu": mu, "sigma": sigma, "a": a, "b": b})}


def publish(lake: str, rows: list[dict[str, Any]], why: str) -> str:
    """Write ``rows`` as the next version and make it CURRENT. ``why`` is stored on every row
    that has no reason of its own, so each version records what produced it."""
    version = next_version(lake)
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for r in rows:
        if r.get("kind") not in KINDS:
            raise ValueError(f"weights row kind {r.get('kind')!r} not in {KINDS}")
        out.append({**r, "version": version, "created_at": now, "reason": r.get("reason") or why})
    if not out:
        raise ValueError("refusing to publish an empty weights version")
    lk.write_partition(lake, "weights", version, out)
    set_current(lake, version)
    return version


def set_current(lake: str, version: str) -> None:
    """Point ``weights/CURRENT`` at ``version`` (an atomic replace: readers see the old or the new)."""
    if version not in versions(lake):
        raise KeyError(f"weights version {version!r} does not exist")
    fs, root = lake_fs(lake)
    write_atomic(fs, f"{root}/weights/{CURRENT}", (version + "\n").encode())


def current_version(lake: str) -> str | None:
    """The live version named by ``weights/CURRENT``; None before the first publication."""
    fs, root = lake_fs(lake)
    p = f"{root}/weights/{CURRENT}"
    if not fs.exists(p):
        return None
    return fs.cat_file(p).decode().strip() or None


def load(lake: str, version: str | None = None) -> tuple[str | None, pa.Table]:
    """The rows of ``version`` (default: CURRENT); ``(None, empty)`` if nothing is published."""
    version = version or current_version(lake)
    if version is None:
        return None, lk.read_table(lake, "weights", parts=[])
    return version, lk.read_table(lake, "weights", parts=[version])


def targets(table: pa.Table) -> dict[tuple[str, str], float]:
    """``{(kind, value): target_freq}`` for the non-transformable attributes."""
    d = table.to_pydict()
    return {(k, v): t for k, v, t in zip(d["kind"], d["value"], d["target_freq"])
            if k != "resolution" and t is not None}


def resolution_schedule(table: pa.Table, stage: str) -> dict[str, float] | None:
    """The ``stage`` (start | final) trunc_norm of a weights version, None when it has none."""
    d = table.to_pydict()
    for k, v, p in zip(d["kind"], d["value"], d["params"]):
        if k == "resolution" and v == stage:
            return json.loads(p)
    return None
