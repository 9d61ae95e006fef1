"""DuckDB over the lake: a fresh connection with one view per lake table plus derived views.

Views are rebuilt on every connect (cheap: they are only definitions), so a reader always sees
the partitions that exist now, and no process ever holds a write lock on shared state.
``warehouse.duckdb`` in the lake is the same set of views saved for people who open the
database with their own DuckDB client.
"""
from __future__ import annotations

import os
from importlib import resources
from typing import Any

import duckdb

from warehouse import lake as lk
from warehouse.schema import SCHEMAS

CURRENT = "CURRENT"


def _ddl_type(t) -> str:
    import pyarrow as pa
    if pa.types.is_list(t):
        return _ddl_type(t.value_type) + "[]"
    return {"string": "VARCHAR", "int64": "BIGINT", "double": "DOUBLE", "bool": "BOOLEAN"}.get(
        str(t), "TIMESTAMPTZ" if pa.types.is_timestamp(t) else "VARCHAR")


def current_weights_version(lake: str) -> str | None:
    """The live sampling-weights version named by ``<lake>/weights/CURRENT``."""
    import fsspec
    fs, root = fsspec.core.url_to_fs(str(lake))
    p = f"{root.rstrip('/')}/weights/{CURRENT}"
    if not fs.exists(p):
        return None
    return fs.cat_file(p).decode().strip() or None


def _sql_files() -> list[str]:
    d = resources.files("warehouse") / "sql"
    return [f.read_text() for f in sorted(d.iterdir(), key=lambda f: f.name) if f.name.endswith(".sql")]


def view_statements(lake: str) -> list[str]:
    stmts = []
    for table, schema in SCHEMAS.items():
        if lk.partitions(lake, table):
            glob = f"{lk.table_dir(lake, table)}/*.parquet"
            stmts.append(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{glob}', union_by_name=true)")
        else:
            cols = ", ".join(f"CAST(NULL AS {_ddl_type(f.type)}) AS {f.name}" for f in schema)
            stmts.append(f"CREATE OR REPLACE VIEW {table} AS SELECT {cols} WHERE false")
    cur = current_weights_version(lake)
    stmts.append("CREATE OR REPLACE VIEW sampling_weights_current AS SELECT * FROM weights WHERE version = "
                 + ("'" + cur.replace("'", "''") + "'" if cur else "NULL"))
    stmts.extend(_sql_files())
    return stmts


def connect(lake: str, database: str = ":memory:") -> duckdb.DuckDBPyConnection:
    """A connection with every view defined; extensions are never fetched from the network."""
    con = duckdb.connect(database, config={"autoinstall_known_extensions": False,
                                           "autoload_known_extensions": True})
    for s in view_statements(lake):
        con.execute(s)
    return con


def save_database(lake: str) -> str:
    """(Re)write ``<lake>/warehouse.duckdb`` with the current views, atomically."""
    path = os.path.join(lake, "warehouse.duckdb")
    tmp = path + ".tmp"
    for p in (tmp, tmp + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    con = connect(lake, tmp)
    con.close()
    os.replace(tmp, path)
    return path


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
