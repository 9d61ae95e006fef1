"""``t2i sql``: ad-hoc SQL or a saved query over the warehouse views, printed as a table.

    t2i sql "SELECT * FROM notion_stats ORDER BY n DESC LIMIT 20" --lake runs/lake
    t2i sql --query top_notions --param color --param 10 --format csv

Values given with ``--param`` are bound as parameters ($1, $2, ...), never pasted into the SQL.
A bad statement prints DuckDB's message and exits 1, with no traceback. Statements run read-only
(``warehouse.readonly``): only SELECTs, reading only the lake and the ``--read`` paths; cells are
printed with control characters escaped, as are column names and error messages; CSV and JSON
are escaped when printed to a terminal and left as data when piped.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import re
import sys
from typing import Any, Sequence

import duckdb

from djepa_t2i.cli_args import int_at_least
from djepa_t2i.config import ConfigError, default, require_exists
from warehouse import db, readonly
from warehouse.lake import require_lake


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sql", nargs="?", help="SQL statement (or use --query NAME)")
    p.add_argument("--lake", default=default("lake"), help="lake directory")
    p.add_argument("--query", "-q", help="name of a saved query in warehouse/queries/")
    p.add_argument("--param", "-p", action="append", default=[], help="bound parameter, repeatable")
    p.add_argument("--format", "-f", choices=("table", "csv", "json"), default="table")
    p.add_argument("--max-width", type=int_at_least(2), default=60, help="table format: truncate cells")
    p.add_argument("--read", action="append", default=[], metavar="PATH",
                   help="a file or folder outside the lake the SQL may read, repeatable")


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return v


def format_table(cols: Sequence[str], rows: Sequence[Sequence[Any]], max_width: int = 60) -> str:
    """A plain aligned text table; numbers right-aligned, long cells cut with '…'."""
    def s(v):
        t = "NULL" if v is None else readonly.escape_controls(str(_cell(v)).replace("\n", " "))
        return t if len(t) <= max_width else t[: max_width - 1] + "…"
    cells = [[s(v) for v in r] for r in rows]
    cols = [readonly.escape_controls(c) for c in cols]  # a PIVOT turns lake values into names
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    num = [all(isinstance(r[i], (int, float)) or r[i] is None for r in rows) for i in range(len(cols))]
    line = lambda vals: "  ".join(v.rjust(w) if n else v.ljust(w)  # noqa: E731
                                  for v, w, n in zip(vals, widths, num)).rstrip()
    out = [line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def render(cols, rows, fmt: str, max_width: int = 60) -> str:
    if fmt == "json":
        return json.dumps([{c: _cell(v) for c, v in zip(cols, r)} for r in rows], ensure_ascii=False,
                          default=str, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows([[_cell(v) for v in r] for r in rows])
        return buf.getvalue().rstrip("\n")
    return format_table(cols, rows, max_width)


def run(args) -> int:
    if bool(args.sql) == bool(args.query):
        raise ConfigError("give either a SQL statement or --query NAME")
    try:
        sql = db.saved_query(args.query) if args.query else args.sql
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    params = list(args.param)
    if args.query:  # saved queries take optional positional params: pad with NULLs
        n = max([int(m) for m in re.findall(r"\$(\d+)", sql)] or [0])
        params += [None] * (n - len(params))
    require_lake("lake", args.lake)
    for path in args.read:
        require_exists("--read", path)
    try:
        cols, rows = readonly.query(args.lake, sql, params, args.read)
    except duckdb.Error as e:
        # DuckDB quotes the offending value, which may be a hostile caption
        print(f"SQL error: {readonly.escape_controls(' '.join(str(e).split()))}", file=sys.stderr)
        return 1
    text = render(cols, rows, args.format, args.max_width)
    if args.format != "table" and sys.stdout.isatty():  # table cells are escaped already
        text = "\n".join(readonly.escape_controls(line) for line in text.split("\n"))
    print(text)
    return 0
