"""The lake's file primitives, below both ``warehouse.lake`` (partitions) and ``warehouse.db``
(the schema files and the database): a lake URL's filesystem, atomic writes, Parquet bytes and
Parquet reads that leave no work to Arrow's threads.

A write goes to a temporary name beside its target and is renamed into place, so a reader never
sees half a file and a killed writer leaves nothing partial.
"""
from __future__ import annotations

import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.schema import SCHEMAS

SCHEMA_FILE = "_schema.parquet"


def lake_fs(lake: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem of ``lake`` (a path or an fsspec URL) and its root without a trailing slash."""
    fs, root = fsspec.core.url_to_fs(str(lake))
    return fs, root.rstrip("/")


def write_atomic(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place."""
    d, name = path.rsplit("/", 1)
    tmp = f"{d}/.{name}.{uuid.uuid4().hex}.tmp"
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
    except BaseException:  # a full disk or a kill mid-write: no temp file left behind
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    fs.mv(tmp, path)  # rename: atomic on a local filesystem, a single PUT on object stores


def read_parquet(fs: fsspec.AbstractFileSystem, path: str) -> pa.Table:
    """One Parquet file, decoded in this thread. A file object from fsspec hands Arrow Python
    bytes, and freeing them takes the GIL; ``pq.read_table`` (dataset readahead) and a threaded
    ``ParquetFile.read`` both leave some of those frees to Arrow's pool threads after the table is
    returned (measured: in 61 and 51 of 300 reads). One that lands while the interpreter finalizes
    unwinds that thread through a noexcept destructor: 'terminate called without an active
    exception', exit -6, about 1 in 30 `t2i curate` runs on a loaded 2-core VM (issue #25). Read
    without threads, every buffer is freed here, before this returns (0 of 300)."""
    with fs.open(path, "rb") as f:
        return pq.ParquetFile(f, pre_buffer=False).read(use_threads=False)


def parquet_bytes(data: pa.Table) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(data, buf, compression="zstd")
    return buf.getvalue().to_pybytes()


def write_schema_file(lake: str, table: str) -> None:
    """The zero-row ``_schema.parquet`` that gives ``table``'s view its columns and types."""
    fs, root = lake_fs(lake)
    fs.makedirs(f"{root}/{table}", exist_ok=True)
    write_atomic(fs, f"{root}/{table}/{SCHEMA_FILE}", parquet_bytes(SCHEMAS[table].empty_table()))
