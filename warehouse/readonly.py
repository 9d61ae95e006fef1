"""A read-only DuckDB surface for people's SQL (``t2i sql``, saved queries).

Two locks, because neither holds alone: DuckDB's file sandbox (``enable_external_access=false``
with ``allowed_directories``: the lake and the paths the user names) stops ATTACH, INSTALL and
reads or writes anywhere else, but it would let ``COPY ... TO '<lake>/pairs/00000.parquet'``
replace a partition inside the lake; so only statements DuckDB parses as SELECT (which includes
WITH, DESCRIBE, SHOW, SUMMARIZE) are run. ``lock_configuration`` keeps a statement from undoing
the sandbox. Views are defined before the locks, so reading the lake works as before.
"""
from __future__ import annotations

import os
import unicodedata
from typing import Any, Sequence

import duckdb

from warehouse import db

ALLOWED = {duckdb.StatementType.SELECT}


class ReadOnlyError(duckdb.Error):
    """A statement the read-only surface refuses to run."""


def _sql_list(paths: Sequence[str]) -> str:
    return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"


def _sandbox(con: duckdb.DuckDBPyConnection, paths: Sequence[str]) -> None:
    """Confine file access to ``paths`` (folders by prefix, with a trailing slash; files exactly)
    and lock the configuration."""
    full = [os.path.abspath(p) for p in paths]
    con.execute(f"SET allowed_directories = {_sql_list([os.path.join(p, '') for p in full if os.path.isdir(p)])}")
    con.execute(f"SET allowed_paths = {_sql_list([p for p in full if not os.path.isdir(p)])}")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def connect(lake: str, readable: Sequence[str] = ()) -> duckdb.DuckDBPyConnection:
    """The lake's views on a connection that can read only the lake and ``readable`` paths and
    whose configuration is locked (no extension is installed or auto-loaded)."""
    con = db.connect(lake)  # the warehouse's views (made current first), then the sandbox
    if db.is_local(lake):
        _sandbox(con, [lake, *readable])
    # a lake on object storage is read through a registered fsspec filesystem, which DuckDB's
    # external-access switch would cut off: there only the SELECT-only check applies (known limit)
    return con


def check(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise :class:`ReadOnlyError` unless every statement in ``sql`` is a SELECT."""
    for st in con.extract_statements(sql):
        if st.type not in ALLOWED:
            kind = str(st.type).rsplit(".", 1)[-1]
            raise ReadOnlyError(f"read-only: {kind} statements are refused (only SELECT, WITH, "
                                f"DESCRIBE, SHOW, SUMMARIZE run here): {' '.join(st.query.split())[:80]}")


def query(lake: str, sql: str, params: list[Any] | None = None, readable: Sequence[str] = ()):
    """(column names, rows) of ``sql`` run read-only over the lake's views."""
    con = connect(lake, readable)
    try:
        check(con, sql)
        cur = con.execute(sql, params or [])
        cols = [d[0] for d in cur.description] if cur.description else []
        return cols, cur.fetchall()
    finally:
        con.close()


def escape_controls(text: str) -> str:
    """``text`` safe to print on a terminal: control and format characters (C0/C1 controls,
    escape sequences, bidi overrides such as U+202E) shown as ``\\xNN`` / ``\\uNNNN``."""
    return "".join(c if unicodedata.category(c) not in ("Cc", "Cf") else
                   (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}") for c in text)
