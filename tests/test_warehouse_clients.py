"""``<lake>/warehouse.duckdb`` as outside clients see it: the Python client and the DuckDB CLI
from PyPI (``duckdb-cli``), from any working directory, while writers run."""
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from warehouse import db
from warehouse import lake as lk
from warehouse import weights as wt

ROOT = Path(__file__).resolve().parent.parent
CLI = shutil.which("duckdb", path=os.path.dirname(sys.executable)) or shutil.which("duckdb")


def outside(lake: str, sql: str) -> list[tuple]:
    """A fresh, read-only Python client on the saved database file (not this package's views)."""
    con = duckdb.connect(os.path.join(lake, db.DATABASE), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def cli(args: list[str], cwd: str) -> str:
    assert CLI, "the duckdb CLI (PyPI duckdb-cli, in the dev extras) is not installed"
    p = subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def pairs(n: int, shard: str) -> list[dict]:
    return [{"key": f"{shard}-{i}", "shard": shard, "status": "passed", "width": 64, "height": 48}
            for i in range(n)]


def test_new_partitions_and_current_appear_without_rewrite(tmp_path):
    L = str(tmp_path / "lake")
    lk.write_partition(L, "pairs", "00000", pairs(3, "00000"))
    path = os.path.join(L, db.DATABASE)
    before = os.stat(path)
    assert outside(L, "SELECT count(*) FROM pairs") == [(3,)]
    # every table has a typed view from the start, empty ones included
    assert outside(L, "SELECT count(*) FROM captions") == [(0,)]
    cols = [r[0] for r in outside(L, "DESCRIBE eval_results")]
    assert cols[:4] == ["checkpoint", "run_id", "step", "benchmark"]
    held = duckdb.connect(path, read_only=True)  # a client that stays open across writes
    lk.write_partition(L, "pairs", "00001", pairs(2, "00001"))
    lk.write_partition(L, "captions", "alt-0", [{"key": "00000-0", "caption": "a red circle"}])
    lk.write_partition(L, "notions", "n0", [{"key": "00000-0", "notion": "red", "kind": "color"}])
    lk.write_partition(L, "notion_runs", "n0", [{"part": "n0", "n_captions": 4}])
    wt.publish(L, [{"kind": "color", "value": "red", "target_freq": 0.2}], "v0")
    assert held.execute("SELECT count(*) FROM pairs").fetchone() == (5,)
    assert held.execute("SELECT notion, n, p FROM notion_stats").fetchall() == [("red", 1, 0.25)]
    assert held.execute("SELECT version FROM sampling_weights_current").fetchall() == [("v0000",)]
    wt.publish(L, [{"kind": "color", "value": "red", "target_freq": 0.3}], "v1")
    assert held.execute("SELECT version, target_freq FROM sampling_weights_current").fetchall() == [("v0001", 0.3)]
    held.close()
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # never rewritten
    assert outside(L, "SELECT count(*) FROM captions_current") == [(1,)]


def test_schema_change_rewrites_database_and_schema_files(tmp_path, monkeypatch):
    L = str(tmp_path)
    lk.write_partition(L, "pairs", "a", pairs(1, "a"))
    ino = os.stat(os.path.join(L, db.DATABASE)).st_ino
    db.ensure_warehouse(L)  # stamp matches: nothing happens
    assert os.stat(os.path.join(L, db.DATABASE)).st_ino == ino
    monkeypatch.setattr(db, "ddl_hash", lambda: "changed")
    db.ensure_warehouse(L)
    assert os.stat(os.path.join(L, db.DATABASE)).st_ino != ino
    assert open(os.path.join(L, db.STAMP)).read() == "changed"
    with pytest.raises(ValueError, match="not start with '_'"):
        lk.write_partition(L, "pairs", "_schema", pairs(1, "x"))
    assert lk.partitions(L, "pairs") == ["a"]


def test_copied_lake_reads_its_own_files_from_another_directory(tmp_path):
    L = tmp_path / "orig" / "lake"
    lk.write_partition(str(L), "pairs", "00000", pairs(4, "00000"))
    wt.publish(str(L), [{"kind": "color", "value": "red", "target_freq": 0.2}], "v0")
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(L, copy)
    lk.write_partition(str(L), "pairs", "00001", pairs(7, "00001"))  # the original moves on
    (tmp_path / "cwd").mkdir()
    out = cli(["-readonly", "-csv", "-noheader", "../elsewhere/copied/warehouse.duckdb", "-c",
               "SELECT count(*) FROM pairs; SELECT version FROM sampling_weights_current"], str(tmp_path / "cwd"))
    assert out.split() == ["4", "v0000"]
    shutil.rmtree(tmp_path / "orig")  # a moved lake: the original is gone
    code = ("import duckdb; c = duckdb.connect('../elsewhere/copied/warehouse.duckdb', read_only=True); "
            "print(c.execute('SELECT count(*), min(key) FROM pairs').fetchone())")
    p = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "cwd", capture_output=True, text=True)
    assert p.stdout.strip() == "(4, '00000-0')", p.stderr
    # a client that ATTACHes the file names the lake itself
    out = cli(["-csv", "-noheader", "-c", "ATTACH '../elsewhere/copied/warehouse.duckdb' AS wh (READ_ONLY); "
               "SET VARIABLE lake_root = '../elsewhere/copied/'; SELECT count(*) FROM wh.pairs"],
              str(tmp_path / "cwd"))
    assert out.split() == ["4"]


def test_cli_reads_every_view(tmp_path):
    L = str(tmp_path / "lake")
    lk.write_partition(L, "pairs", "00000", pairs(2, "00000"))
    names = [r[0] for r in outside(L, "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1")]
    assert {"pairs", "notion_stats", "eval_summary", "sampling_weights_current", "training_exposure"} <= set(names)
    version = cli(["-csv", "-noheader", "-c", "SELECT version()"], str(tmp_path)).strip()
    sql = "; ".join(f"SELECT '{n}', count(*) FROM {n}" for n in names)
    out = cli(["-readonly", "-csv", "-noheader", os.path.join(L, db.DATABASE), "-c", sql], str(tmp_path))
    counts = dict(line.split(",") for line in out.split())
    assert counts["pairs"] == "2" and counts["funnel"] == "1" and len(counts) == len(names), version


def _readme_cli_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [m.group(1) for m in re.finditer(r"^\s+(duckdb runs/demo/lake/warehouse\.duckdb .+)$", text, re.M)]


def test_readme_queries_run_as_written_in_the_cli(tmp_path):
    cmds = _readme_cli_commands()
    assert len(cmds) >= 3
    L = str(tmp_path / "runs" / "demo" / "lake")
    lk.write_partition(L, "pairs", "00000", pairs(2, "00000"))
    lk.write_partition(L, "batch_stats", "r-s1", [
        {"run_id": "r", "rank": 0, "step": 1, "kind": k, "value": v, "count": c,
         "created_at": dt.datetime.now(dt.timezone.utc)}
        for k, v, c in [("notion", "color:red", 3.0), ("resolution", "256", 2.0), ("resolution", "512", 1.0)]])
    outs = [cli(shlex.split(c)[1:], str(tmp_path)) for c in cmds]
    assert any("color:red" in o and "512" in o for o in outs), outs


READER = r"""
import duckdb, json, os, sys, time
path, stop = sys.argv[1], sys.argv[2]
queries = ["SELECT count(*) FROM pairs", "SELECT count(*) FROM shard_runs", "SELECT * FROM funnel",
           "SELECT count(*) FROM batch_stats_agg", "SELECT count(*) FROM checkpoints_live",
           "SELECT count(*) FROM sampling_weights_current", "SELECT count(*) FROM training_exposure"]
n, errors, seen = 0, [], {}
while not os.path.exists(stop):
    if not os.path.exists(path):
        time.sleep(0.05)
        continue
    try:
        con = duckdb.connect(path, read_only=True)
        for q in queries:
            seen[q] = con.execute(q).fetchall()[0][0] if q.startswith("SELECT count") else len(con.execute(q).fetchall())
        con.close()
        n += 1
    except duckdb.Error as e:
        errors.append(str(e))
print(json.dumps({"n": n, "errors": errors[:5], "n_errors": len(errors), "seen": seen}))
"""


@pytest.mark.slow
def test_reader_in_a_loop_during_curation_and_training(tmp_path):
    from _train_data import make_lake as make_train_lake
    from test_trainer import run, tiny_cfg

    from djepa_t2i.config import load_config
    from flows.curate_laion import run_plain
    from tasks import shard_writer
    from tasks.mini_laion import make_sample

    sample = tmp_path / "sample"
    make_sample(str(sample), n=16, seed=3, per_shard=8)
    lake = str(tmp_path / "lake")
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, os.path.join(lake, db.DATABASE), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        s = run_plain(str(sample), lake, load_config(None, ["curate.workers=1"]), progress=False)
        _, rows = make_train_lake(tmp_path / "train", n=12, shards=1, sizes=((32, 32), (48, 32)))
        tlake = str(tmp_path / "train" / "lake")
        for t in ("pairs", "captions", "notions", "notion_runs"):  # the training data joins the lake
            for p in lk.partitions(tlake, t):
                lk.write_partition(lake, t, f"train-{p}", lk.read_table(tlake, t, [p]))
        shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
        wt.publish(lake, [wt.resolution_row("phase1", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0")
        run(tiny_cfg(lake, str(tmp_path / "run")))
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=60)
    got = json.loads(out)
    assert got["n_errors"] == 0, got["errors"]
    assert got["n"] >= 3, got
    assert outside(lake, "SELECT count(*) FROM pairs") == [(s["n_in"] + 12,)]
    assert outside(lake, "SELECT count(DISTINCT step) FROM batch_stats") == [(3,)]
    assert outside(lake, "SELECT step FROM checkpoints_live ORDER BY step") == [(3,), (6,)]
    assert outside(lake, "SELECT sum(n) FROM training_exposure WHERE kind = 'accepted'")[0][0] > 0
