"""``t2i lake check|repair``: find the lake files that no longer read, and move them aside.

A partition is written whole and renamed into place (``warehouse.lake``), so a healthy writer
never leaves half a file; a disk that lost blocks, a copy cut short or a person's editor can.
``check`` reads every partition and schema file to the end (a zero-byte file, a bad footer, a
corrupt page or columns of another type are each named with the reason), opens
``warehouse.duckdb`` read-only, and lists temporary files a killed writer left. ``repair`` moves
each damaged file into ``<lake>/_damaged/<table>/`` (never deletes: the bytes stay for a person to
look at), rewrites the schema files and the database file at once (they hold no data), and says
which step to rerun to restore the data: a damaged curation partition also takes its shard's
``shard_runs`` marker aside, so the next ``t2i curate`` redoes exactly that shard. Run ``repair``
while no step writes to the lake: a temporary file it removes may be a live writer's.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import duckdb

from djepa_t2i.config import default
from warehouse import db, files
from warehouse import lake as lk
from warehouse.schema import SCHEMAS

DAMAGED = "_damaged"
CURATION = ("pairs", "filter_scores", "shard_runs")
RERUN = {**{t: "t2i curate {input} --lake {lake}" for t in CURATION},
         "captions": "t2i recaption --lake {lake}",
         "notions": "t2i notions --lake {lake}", "notion_runs": "t2i notions --lake {lake}",
         "weights": "t2i notions --lake {lake} (v0) or t2i feedback --lake {lake} (later versions)",
         "samples": "t2i build-shards --lake {lake}",
         "eval_results": "t2i evaluate --lake {lake}",
         **{t: "none: the record of a past `t2i train` run" for t in ("batch_stats", "checkpoints", "train_runs")}}


@dataclass(frozen=True)
class Damage:
    path: str  # relative to the lake
    reason: str
    table: str | None = None  # None: the database file or a temporary file
    part: str | None = None  # the partition name; None: not a partition

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


def _why(e: Exception) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]


def check_file(fs, path: str, table: str) -> str | None:
    """Why the Parquet file at ``path`` cannot be read as ``table``, or None."""
    if fs.size(path) == 0:
        return "zero bytes"
    try:
        lk.to_arrow(table, files.read_parquet(fs, path))
    except Exception as e:  # noqa: BLE001  (any reader failure is the finding)
        return f"unreadable: {_why(e)}"
    return None


def _check_table(fs, root: str, table: str) -> list[Damage]:
    found = []
    for p in sorted(fs.ls(f"{root}/{table}", detail=False)):
        name = p.rsplit("/", 1)[-1]
        rel = f"{table}/{name}"
        if name.startswith(".") and name.endswith(".tmp"):
            found.append(Damage(rel, "temporary file of an unfinished write"))
        elif name.endswith(".parquet") and not name.startswith("."):
            why = check_file(fs, p, table)
            part = None if name == files.SCHEMA_FILE else name[: -len(".parquet")]
            if why:
                found.append(Damage(rel, why, table, part))
    return found


def check_database(lake: str) -> Damage | None:
    """``warehouse.duckdb`` opened read-only and queried, as a SQL client would."""
    path = os.path.join(lake, db.DATABASE)
    if not os.path.exists(path):
        return None
    try:
        con = duckdb.connect(path, read_only=True)
        try:
            con.execute("SELECT count(*) FROM duckdb_views()").fetchall()
        finally:
            con.close()
    except Exception as e:  # noqa: BLE001
        return Damage(db.DATABASE, f"does not open: {_why(e)}")
    return None


def check(lake: str) -> list[Damage]:
    """Every damaged file of the lake (a local folder), in table order."""
    fs, root = files.lake_fs(lake)
    found = []
    for table in SCHEMAS:
        if fs.isdir(f"{root}/{table}"):
            found += _check_table(fs, root, table)
    bad_db = check_database(root)
    return found + ([bad_db] if bad_db else [])


def curate_input(lake: str) -> str:
    """The folder the lake's shards came from (from a readable ``shard_runs`` row), or INPUT."""
    fs, root = files.lake_fs(lake)
    for part in lk.partitions(lake, "shard_runs"):
        if not check_file(fs, f"{root}/shard_runs/{part}.parquet", "shard_runs"):
            rows = lk.read_table(lake, "shard_runs", [part]).to_pylist()
            if rows and rows[0].get("source_path"):
                return os.path.dirname(rows[0]["source_path"])
    return "INPUT"


def _move_aside(fs, root: str, rel: str) -> str:
    dest = f"{root}/{DAMAGED}/{rel}"
    fs.makedirs(dest.rsplit("/", 1)[0], exist_ok=True)
    n = 1
    while fs.exists(dest):  # a second repair of the same name keeps the first one's bytes too
        dest = f"{root}/{DAMAGED}/{rel}.{n}"
        n += 1
    fs.mv(f"{root}/{rel}", dest)
    return dest


def repair(lake: str, found: list[Damage] | None = None) -> tuple[list[str], list[str]]:
    """Move every damaged file aside; returns (what was done, steps to rerun)."""
    fs, root = files.lake_fs(lake)
    found = check(lake) if found is None else found
    source = curate_input(lake)
    done, rerun = [], []
    for d in found:
        if d.table is None and d.path.endswith(".tmp"):
            fs.rm(f"{root}/{d.path}")
            done.append(f"{d.path}: removed (an unfinished write)")
            continue
        dest = _move_aside(fs, root, d.path)
        done.append(f"{d.path}: moved to {os.path.relpath(dest, root)} ({d.reason})")
        if d.table is None:
            db.write_database(lake)
            done.append(f"{db.DATABASE}: rewritten (it holds views only)")
        elif d.part is None:
            files.write_schema_file(lake, d.table)
            done.append(f"{d.path}: rewritten (it holds the table's columns only)")
        else:
            if d.table in CURATION and d.table != "shard_runs" and lk.has_partition(lake, "shard_runs", d.part):
                marker = _move_aside(fs, root, f"shard_runs/{d.part}.parquet")
                done.append(f"shard_runs/{d.part}.parquet: moved to {os.path.relpath(marker, root)} "
                            f"(so that curation redoes shard {d.part})")
            step = RERUN[d.table].format(lake=lake, input=source)
            if step not in rerun:
                rerun.append(step)
    return done, rerun


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_ in (("check", "list damaged files (exit 1 when there are any)"),
                        ("repair", "move damaged files into <lake>/_damaged/ and say which step to rerun")):
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--lake", default=default("lake"), help="lake directory")


def run(args) -> int:
    lk.require_lake("lake", args.lake)
    found = check(args.lake)
    if args.action == "check":
        for d in found:
            print(d.line())
        print(f"{len(found)} damaged file(s) in {args.lake}" +
              (f"; `t2i lake repair --lake {args.lake}` moves them aside" if found else ""), file=sys.stderr)
        return 1 if found else 0
    done, rerun = repair(args.lake, found)
    for line in done:
        print(line)
    for step in rerun:
        print(f"rerun: {step}")
    if not found:
        print(f"nothing to repair in {args.lake}", file=sys.stderr)
    return 0
