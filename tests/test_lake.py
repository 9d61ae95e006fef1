import pyarrow as pa
import pytest

from warehouse import db, lake


def rows(n, shard="00000"):
    return [{"key": f"{shard}{i:04d}", "shard": shard, "status": "passed", "width": 64, "height": 32}
            for i in range(n)]


def test_write_replaces_partition_not_duplicates(tmp_path):
    L = str(tmp_path / "lake")
    lake.write_partition(L, "pairs", "00000", rows(5))
    lake.write_partition(L, "pairs", "00000", rows(5))  # re-run of the same shard
    lake.write_partition(L, "pairs", "00001", rows(3, "00001"))
    assert lake.partitions(L, "pairs") == ["00000", "00001"]
    cols, out = db.query(L, "SELECT count(*), count(DISTINCT key) FROM pairs")
    assert out == [(8, 8)]


def test_drop_orphan_temps_removes_only_that_partitions_leftovers(tmp_path):
    L = str(tmp_path / "lake")
    lake.write_partition(L, "pairs", "00000", rows(2))
    d = tmp_path / "lake" / "pairs"
    for name in (".00000.parquet.dead1.tmp", ".00000.parquet.dead2.tmp", ".00001.parquet.live.tmp",
                 ".00000.1.parquet.live.tmp"):  # partition "00000.1" is another writer's
        (d / name).write_bytes(b"half a file")  # what a killed writer leaves (write_atomic's temp names)
    lake.drop_orphan_temps(L, "pairs", "00000")
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == [".00000.1.parquet.live.tmp",
                                                                             ".00001.parquet.live.tmp"]
    assert lake.partitions(L, "pairs") == ["00000"] and lake.read_table(L, "pairs").num_rows == 2


def test_empty_tables_have_typed_views(tmp_path):
    cols, out = db.query(str(tmp_path), "SELECT * FROM eval_results")
    assert out == [] and "score" in cols


def test_unknown_column_and_bad_partition_rejected(tmp_path):
    with pytest.raises(ValueError, match="not in schema"):
        lake.write_partition(str(tmp_path), "pairs", "x", [{"key": "a", "bogus": 1}])
    with pytest.raises(ValueError, match="partition name"):
        lake.write_partition(str(tmp_path), "pairs", "../evil", rows(1))


def test_params_are_bound_not_formatted(tmp_path):
    L = str(tmp_path)
    lake.write_partition(L, "pairs", "p", [{"key": "a'; DROP VIEW pairs; --", "status": "passed"}])
    _, out = db.query(L, "SELECT key FROM pairs WHERE key = ?", ["a'; DROP VIEW pairs; --"])
    assert out == [("a'; DROP VIEW pairs; --",)]


def test_arrow_input_and_save_database(tmp_path):
    L = str(tmp_path)
    t = pa.table({"key": ["a", "b"], "status": ["passed", "rejected"]})
    lake.write_partition(L, "pairs", "p", t)
    path = db.save_database(L)
    import duckdb
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT count(*) FROM pairs").fetchone() == (2,)


def test_funnel_and_grouped_reasons(tmp_path):
    L = str(tmp_path)
    rows = [{"key": "a", "status": "passed"}, {"key": "b", "status": "passed"},
            {"key": "c", "status": "rejected", "stage": "resolution", "reason": "too small: short side 16 px < min_side 64"},
            {"key": "d", "status": "rejected", "stage": "resolution", "reason": "too small: short side 40 px < min_side 64"},
            {"key": "e", "status": "quarantined", "stage": "decode", "reason": "empty image file (0 bytes)"}]
    lake.write_partition(L, "pairs", "p", rows)
    _, f = db.query(L, "SELECT status, stage, n, share FROM funnel")
    assert f == [("quarantined", "decode", 1, 0.2), ("rejected", "resolution", 2, 0.4), ("passed", "", 2, 0.4)]
    _, r = db.query(L, "SELECT stage, reason, n FROM reasons")
    assert r == [("decode", "empty image file", 1), ("resolution", "too small: short side # px < min_side #", 2)]
