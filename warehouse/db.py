"""DuckDB over the lake: views that find every partition at query time, for any client.

The views never list files: each reads ``lake_root() || '<table>/*.parquet'`` when a query runs,
so partitions written after the view was defined are seen, with no rewrite and no lock (nobody
writes to a database; writers append Parquet, see ``warehouse.lake``). Every table directory holds
an empty ``_schema.parquet`` with the declared columns, so an empty table still has a typed view
and a partition written before a column existed reads it as NULL (``union_by_name``).

``lake_root()`` is the folder of the database file that the client opened (DuckDB's default
``temp_directory`` is ``<database file>.tmp``, always absolute), so a copied or moved lake reads
its own files from any working directory. A client that ATTACHes the file instead of opening it,
or sets ``temp_directory``, names the lake with ``SET VARIABLE lake_root = '/path/to/lake/'``;
this module's own connections do exactly that. ``sampling_weights_current`` reads
``weights/CURRENT`` (written by ``warehouse.weights``) at query time too.

``<lake>/warehouse.duckdb`` is written once per schema (a stamp file holds the hash of its DDL)
with a storage version that the DuckDB CLI from PyPI reads, by the first writer or reader that
finds it missing or out of date; it is replaced atomically, never opened for writing in place,
so a person holding it open in the CLI never blocks a writer.
"""
from __future__ import annotations

import functools
import hashlib
import os
import uuid
from importlib import resources
from typing import Any

import duckdb
import fsspec
import pyarrow as pa

from warehouse.files import write_atomic, write_schema_file
from warehouse.schema import CURRENT, SCHEMAS

DATABASE = "warehouse.duckdb"
STAMP = ".warehouse.sha256"  # hash of the DDL the database file and the schema files were made with
# The newest storage format that duckdb-cli 1.5.x (PyPI) reads; duckdb 2.0 writes a newer one
# by default ("version number 69 ... can only read versions between 64 and 68").
STORAGE_VERSION = "v1.5.0"
_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": True}
LAKE_ROOT_MACRO = """CREATE OR REPLACE MACRO lake_root() AS coalesce(getvariable('lake_root'),
    regexp_replace(current_setting('temp_directory'), '[^/]*$', ''))"""


def _ddl_type(t: pa.DataType) -> str:
    if pa.types.is_list(t):
        return _ddl_type(t.value_type) + "[]"
    return {"string": "VARCHAR", "int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN"}.get(
        str(t), "TIMESTAMPTZ" if pa.types.is_timestamp(t) else "VARCHAR")


def _sql_files() -> list[str]:
    d = resources.files("warehouse") / "sql"
    return [f.read_text() for f in sorted(d.iterdir(), key=lambda f: f.name) if f.name.endswith(".sql")]


def table_view(table: str) -> str:
    """The view of one lake table: every partition plus the schema file, in declared column order."""
    cols = ", ".join(f'"{f.name}"' for f in SCHEMAS[table])
    return (f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} FROM "
            f"read_parquet(lake_root() || '{table}/*.parquet', union_by_name = true)")


def view_statements() -> list[str]:
    """Every statement that defines the warehouse; none depends on where the lake is."""
    return [LAKE_ROOT_MACRO, *(table_view(t) for t in SCHEMAS),
            "CREATE OR REPLACE VIEW sampling_weights_current AS SELECT * FROM weights WHERE version = "
            f"(SELECT trim(content, ' ' || chr(9) || chr(10) || chr(13)) FROM read_text(lake_root() || 'weights/{CURRENT}'))",
            *_sql_files()]


@functools.lru_cache(maxsize=1)
def ddl_hash() -> str:
    h = hashlib.sha256(STORAGE_VERSION.encode())
    for s in view_statements():
        h.update(s.encode())
    for t, schema in sorted(SCHEMAS.items()):
        h.update(f"{t}:{schema}".encode())
    return h.hexdigest()


def is_local(lake: str) -> bool:
    return isinstance(fsspec.core.url_to_fs(str(lake))[0], fsspec.implementations.local.LocalFileSystem)


def lake_root_url(lake: str) -> str:
    """The lake as DuckDB addresses it, with a trailing slash: an absolute path or an fsspec URL."""
    fs, root = fsspec.core.url_to_fs(str(lake))
    if is_local(lake):
        return os.path.abspath(root).rstrip("/") + "/"
    return fs.unstrip_protocol(root.rstrip("/")) + "/"


def _new_connection(lake: str, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A connection that reads ``lake`` (through its fsspec filesystem when it is not local);
    extensions are never fetched from the network."""
    con = duckdb.connect(database, config=_CONFIG)
    con.execute("SET enable_progress_bar = false")  # batch jobs log, they have no terminal to draw on
    if not is_local(lake):
        con.register_filesystem(fsspec.core.url_to_fs(str(lake))[0])
    con.execute("SET VARIABLE lake_root = ?", [lake_root_url(lake)])
    return con


def write_schema_files(lake: str) -> None:
    """An empty ``_schema.parquet`` with the declared columns in every table directory."""
    for table in SCHEMAS:
        write_schema_file(lake, table)


def write_database(lake: str) -> str:
    """(Re)write ``<lake>/warehouse.duckdb`` in ``STORAGE_VERSION``, atomically; returns its path."""
    path = os.path.join(fsspec.core.url_to_fs(str(lake))[1], DATABASE)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    con = _new_connection(lake)
    try:
        quoted = tmp.replace("'", "''")  # ATTACH takes no parameters
        con.execute(f"ATTACH '{quoted}' AS warehouse_new (STORAGE_VERSION '{STORAGE_VERSION}')")
        con.execute("USE warehouse_new")
        for s in view_statements():
            con.execute(s)
        con.execute("USE memory")
        con.execute("DETACH warehouse_new")
    except BaseException:  # a full disk mid-write: no temporary database left behind
        con.close()
        for leftover in (tmp, f"{tmp}.wal"):
            if os.path.exists(leftover):
                os.remove(leftover)
        raise
    finally:
        con.close()
    os.replace(tmp, path)
    return path


def ensure_warehouse(lake: str) -> str | None:
    """Make the lake's schema files and database current (a no-op when the stamp matches).

    Returns the database path, or None for a lake on object storage: DuckDB writes database files
    only to local disk, and such a lake is read through :func:`connect`."""
    fs, root = fsspec.core.url_to_fs(str(lake))
    root = root.rstrip("/")
    local = is_local(lake)
    stamp = f"{root}/{STAMP}"
    want = ddl_hash()
    current = fs.exists(stamp) and fs.cat_file(stamp).decode() == want
    if not current or (local and not fs.exists(f"{root}/{DATABASE}")):
        write_schema_files(lake)
        if local:
            write_database(lake)
        write_atomic(fs, stamp, want.encode())
    return os.path.join(root, DATABASE) if local else None


def connect(lake: str) -> duckdb.DuckDBPyConnection:
    """An in-memory connection with every view defined over ``lake`` (local path or fsspec URL)."""
    ensure_warehouse(lake)
    con = _new_connection(lake)
    for s in view_statements():
        con.execute(s)
    return con


def save_database(lake: str) -> str | None:
    """Make ``<lake>/warehouse.duckdb`` current and return its path (None on object storage)."""
    return ensure_warehouse(lake)


def query(lake: str, sql: str, params: list[Any] | None = None):
    """Run ``sql`` with bound ``params`` and return (column names, rows)."""
    con = connect(lake)
    try:
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()


def saved_query(name: str) -> str:
    f = resources.files("warehouse") / "queries" / f"{name}.sql"
    if not f.is_file():
        names = sorted(p.name[:-4] for p in (resources.files("warehouse") / "queries").iterdir()
                       if p.name.endswith(".sql"))
        raise KeyError(f"no saved query {name!r}; available: {', '.join(names)}")
    return f.read_text()
