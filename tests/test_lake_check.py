"""``t2i lake check|repair`` (issue #25 item 4): damaged lake files are named, moved aside, and
the step it names restores their rows."""
import os

import pytest

from djepa_t2i.cli import main
from djepa_t2i.config import load_config
from flows.curate_laion import run_plain
from lake_fixtures import pair_rows
from tasks.mini_laion import make_sample
from warehouse import db
from warehouse import lake as lk


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """A curated lake of 3 shards (8 pairs each) and its rows, copied fresh by each test."""
    root = tmp_path_factory.mktemp("curated")
    make_sample(str(root / "sample"), n=24, seed=3, per_shard=8)
    run_plain(str(root / "sample"), str(root / "lake"), load_config(), progress=False)
    return root, pair_rows(str(root / "lake"))


@pytest.fixture
def lake(curated, tmp_path):
    import shutil
    root, _ = curated
    shutil.copytree(root / "lake", tmp_path / "lake")
    return str(tmp_path / "lake")


def test_a_healthy_lake_checks_clean(lake, capsys):
    assert main(["lake", "check", "--lake", lake]) == 0
    said = capsys.readouterr()
    assert said.out == "" and said.err == f"0 damaged file(s) in {lake}\n"


def test_damaged_partitions_are_listed_moved_aside_and_restored_by_the_rerun(curated, lake, capsys):
    root, before = curated
    open(f"{lake}/pairs/00001.parquet", "wb").close()  # a zero-byte partition
    with open(f"{lake}/filter_scores/00002.parquet", "r+b") as f:  # a bad footer: the tail overwritten
        f.seek(-16, os.SEEK_END)
        f.write(b"\0" * 16)
    open(f"{lake}/pairs/.00000.parquet.0123abcd.tmp", "wb").write(b"half")
    assert main(["lake", "check", "--lake", lake]) == 1
    said = capsys.readouterr()
    lines = said.out.splitlines()
    assert lines[0] == "pairs/.00000.parquet.0123abcd.tmp: temporary file of an unfinished write"
    assert lines[1] == "pairs/00001.parquet: zero bytes"
    assert lines[2].startswith("filter_scores/00002.parquet: unreadable: ")
    assert len(lines) == 3
    assert said.err == f"3 damaged file(s) in {lake}; `t2i lake repair --lake {lake}` moves them aside\n"

    assert main(["lake", "repair", "--lake", lake]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pairs/.00000.parquet.0123abcd.tmp: removed (an unfinished write)"
    assert out[1] == "pairs/00001.parquet: moved to _damaged/pairs/00001.parquet (zero bytes)"
    assert out[2] == ("shard_runs/00001.parquet: moved to _damaged/shard_runs/00001.parquet "
                      "(so that curation redoes shard 00001)")
    assert out[3].startswith("filter_scores/00002.parquet: moved to _damaged/filter_scores/00002.parquet")
    assert out[5:] == [f"rerun: t2i curate {root / 'sample'} --lake {lake}"]
    assert os.path.getsize(f"{lake}/_damaged/pairs/00001.parquet") == 0  # kept, not deleted
    assert lk.partitions(lake, "shard_runs") == ["00000"]
    assert main(["lake", "check", "--lake", lake]) == 0  # _damaged/ is not part of the lake
    capsys.readouterr()

    run_plain(str(root / "sample"), lake, load_config(), progress=False)
    assert pair_rows(lake) == before  # every row back, once
    assert sorted(lk.partitions(lake, "filter_scores")) == ["00000", "00001", "00002"]
    assert main(["lake", "check", "--lake", lake]) == 0


def test_a_database_file_that_no_longer_opens(curated, lake, capsys):
    with open(f"{lake}/{db.DATABASE}", "r+b") as f:
        f.write(b"garbage!" * 512)
    assert main(["lake", "check", "--lake", lake]) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{db.DATABASE}: does not open: ")
    assert main(["lake", "repair", "--lake", lake]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{db.DATABASE}: moved to _damaged/{db.DATABASE} ({line.split(': ', 1)[1]})"
    assert out[1:] == [f"{db.DATABASE}: rewritten (it holds views only)"]
    import duckdb
    con = duckdb.connect(f"{lake}/{db.DATABASE}", read_only=True)
    try:
        con.execute("SET VARIABLE lake_root = ?", [os.path.abspath(lake) + "/"])
        assert con.execute("SELECT count(*) FROM pairs").fetchone()[0] == len(curated[1])
    finally:
        con.close()


def test_a_partition_of_another_schema_is_named(lake, capsys):
    """A partition whose column has another type (a lake written by another schema version)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"key": [1, 2], "status": ["passed", "passed"], "width": ["wide", "narrow"]}),
                   f"{lake}/pairs/zz-old.parquet")
    assert main(["lake", "check", "--lake", lake]) == 1
    out = capsys.readouterr().out.strip()
    assert out.startswith("pairs/zz-old.parquet: unreadable: "), out


def test_lake_check_refuses_a_folder_that_is_not_a_lake(tmp_path, capsys):
    assert main(["lake", "check", "--lake", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"t2i lake: error: lake='{tmp_path}': not a lake")
