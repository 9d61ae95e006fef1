"""The append-only Parquet lake: every writer owns whole, uniquely named partition files.

Many processes write at once (curation tasks, training ranks, scheduled evaluation) and DuckDB
allows one writer per database file, so nobody writes to a database: each step writes immutable
Parquet files under ``<lake>/<table>/<partition>.parquet``. A partition name is deterministic for
its input (shard id, run+rank+step, checkpoint+benchmark), so re-running a step replaces its own
partition instead of duplicating rows. Writes go to a temporary name and are renamed into place,
so a reader never sees half a file and a killed writer leaves no partial partition.
"""
from __future__ import annotations

import os
import re
import uuid
from typing import Any, Iterable

import pyarrow as pa

from djepa_t2i.config import Config, ConfigError, is_url, require_dir, require_writable
from warehouse.db import ensure_warehouse
from warehouse.files import lake_fs as _fs
from warehouse.files import parquet_bytes, read_parquet, write_atomic
from warehouse.schema import SCHEMAS

_PART_RE = re.compile(r"^[A-Za-z0-9._=-]+$")
RESERVED_PREFIX = "_"  # names of the lake's own files, never partitions


def require_lake(key: str, path: str) -> None:
    """``path`` must be a lake: a directory holding at least one of its tables. A step that reads
    a lake would otherwise lay the warehouse's empty tables into any folder it is given."""
    require_dir(key, path)
    if not is_url(path) and not any(os.path.isdir(os.path.join(path, t)) for t in SCHEMAS):
        raise ConfigError(f"{key}={str(path)!r}: not a lake (it holds none of the lake's tables, "
                          "e.g. pairs/; `t2i curate` makes one)")


def require_rows(lake: str, table: str, step: str) -> None:
    """A step that reads ``table`` refuses a lake where no earlier step wrote it, naming that step
    (one line, exit 2), instead of failing inside its work."""
    require_lake("lake", lake)
    if not partitions(lake, table):
        raise ConfigError(f"lake={str(lake)!r}: no {table} yet (run `{step}` first)")


def checked_lake(cfg: Config, lake: str | None = None, write: bool = True) -> str:
    """The lake a step works on (``lake`` if given, else the config's), which must be a lake (a
    step reads what earlier steps wrote) and, when the step appends to it, be writable."""
    lake = lake or cfg.lake
    require_lake("lake", lake)
    if write:
        require_writable("lake", lake)
    return lake


def table_dir(lake: str, table: str) -> str:
    return f"{_fs(lake)[1]}/{table}"


def to_arrow(table: str, rows: pa.Table | Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts or an Arrow table) cast to the table's declared schema; unknown columns fail."""
    schema = SCHEMAS[table]
    if isinstance(rows, pa.Table):
        extra = set(rows.column_names) - set(schema.names)
        if extra:
            raise ValueError(f"table {table!r}: columns not in schema: {sorted(extra)}")
        cols = [rows[n] if n in rows.column_names else pa.nulls(rows.num_rows, schema.field(n).type)
                for n in schema.names]
        return pa.Table.from_arrays(cols, schema=schema)
    rows = list(rows)
    for r in rows:
        extra = set(r) - set(schema.names)
        if extra:
            raise ValueError(f"table {table!r}: columns not in schema: {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=schema)


class LakeNotWritable(OSError):
    """The lake cannot take a partition (raised before a step does any work)."""


def ensure_writable(lake: str) -> None:
    """Fail fast, with a one-line reason, when ``lake`` cannot be written: create it, write a
    probe the way a partition is written (temporary name, rename) and remove it. A flow calls this
    before its first shard, so an unwritable lake costs nothing instead of a whole run's work."""
    fs, root = _fs(lake)
    probe = f"{root}/.write-probe-{uuid.uuid4().hex}"
    try:
        fs.makedirs(root, exist_ok=True)
        write_atomic(fs, probe, b"")
        fs.rm(probe)
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise LakeNotWritable(f"lake {lake!r} is not writable: {why}") from None


def write_partition(lake: str, table: str, part: str, rows: pa.Table | Iterable[dict]) -> str:
    """Atomically write (or replace) one partition of ``table``; returns its path.

    The first write to a lake (or the first after the schema changed) also lays out the schema
    files and ``warehouse.duckdb``, so every writer leaves a lake that any SQL client can open."""
    if table not in SCHEMAS:
        raise KeyError(f"unknown lake table {table!r}; known: {sorted(SCHEMAS)}")
    if not _PART_RE.match(part) or part.startswith(RESERVED_PREFIX):
        raise ValueError(f"partition name {part!r} must match {_PART_RE.pattern} and not start "
                         f"with {RESERVED_PREFIX!r}")
    data = to_arrow(table, rows)
    ensure_warehouse(lake)
    fs, root = _fs(lake)
    d = f"{root}/{table}"
    fs.makedirs(d, exist_ok=True)
    final = f"{d}/{part}.parquet"
    write_atomic(fs, final, parquet_bytes(data))
    return final


def partitions(lake: str, table: str) -> list[str]:
    """Names of the committed partitions of ``table`` (temporary and schema files excluded)."""
    fs, root = _fs(lake)
    d = f"{root}/{table}"
    if not fs.exists(d):
        return []
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(d, detail=False)]
    return sorted(n[: -len(".parquet")] for n in names
                  if n.endswith(".parquet") and not n.startswith((".", RESERVED_PREFIX)))


def has_partition(lake: str, table: str, part: str) -> bool:
    fs, root = _fs(lake)
    return fs.exists(f"{root}/{table}/{part}.parquet")


def read_table(lake: str, table: str, parts: list[str] | None = None) -> pa.Table:
    """All (or some) partitions of ``table`` as one Arrow table with the declared schema."""
    fs, root = _fs(lake)
    names = partitions(lake, table) if parts is None else parts
    tables = [to_arrow(table, read_parquet(fs, f"{root}/{table}/{n}.parquet")) for n in names]
    if not tables:
        return SCHEMAS[table].empty_table()
    return pa.concat_tables(tables)


def drop_orphan_temps(lake: str, table: str, part: str) -> None:
    """Remove the temporary files a killed writer of ``part`` left beside ``table``'s partitions
    (readers already ignore them; a rewrite of the partition clears them)."""
    fs, root = _fs(lake)
    for p in fs.glob(f"{root}/{table}/.{part}.parquet.*.tmp"):  # write_atomic's temp names, this part only
        fs.rm(p)


def delete_partition(lake: str, table: str, part: str) -> None:
    fs, root = _fs(lake)
    p = f"{root}/{table}/{part}.parquet"
    if fs.exists(p):
        fs.rm(p)
