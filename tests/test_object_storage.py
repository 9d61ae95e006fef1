"""A lake on object storage: any fsspec URL, read by DuckDB through the registered fsspec
filesystem; end to end against a moto S3 server on 127.0.0.1 that the test starts."""
import logging

import fsspec
import pytest

from djepa_t2i.cli import main
from warehouse import db
from warehouse import lake as lk
from warehouse import weights as wt


@pytest.fixture(scope="module")
def s3():
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = fsspec.config.conf.get("s3")
    fsspec.config.conf["s3"] = {"endpoint_url": f"http://{host}:{port}", "key": "testing", "secret": "testing"}
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir("lake-bucket")
    try:
        yield fs
    finally:
        fsspec.config.conf.pop("s3")
        if saved is not None:
            fsspec.config.conf["s3"] = saved
        fsspec.filesystem("s3").clear_instance_cache()
        server.stop()


def test_memory_lake_views_weights_and_no_database_file():
    L = "memory://lake-test"
    lk.write_partition(L, "pairs", "00000", [{"key": "a", "status": "passed"}, {"key": "b", "status": "rejected"}])
    wt.publish(L, [{"kind": "color", "value": "red", "target_freq": 0.2}], "v0")
    assert db.save_database(L) is None  # DuckDB writes database files to local disk only
    _, rows = db.query(L, "SELECT status, n FROM funnel ORDER BY status")
    assert rows == [("passed", 1), ("rejected", 1)]
    assert db.query(L, "SELECT version FROM sampling_weights_current")[1] == [("v0000",)]
    assert db.query(L, "SELECT count(*) FROM eval_results")[1] == [(0,)]  # typed empty view


@pytest.mark.slow
def test_curation_into_s3_and_sql_over_it(s3, tmp_path, capsys):
    from djepa_t2i.config import load_config
    from flows.curate_laion import run_plain
    from tasks.mini_laion import make_sample
    make_sample(str(tmp_path / "sample"), n=16, seed=2, per_shard=8)
    L = "s3://lake-bucket/lake"
    s = run_plain(str(tmp_path / "sample"), L, load_config(None, ["curate.workers=1"]), progress=False)
    assert sorted(p.rsplit("/", 1)[-1] for p in s3.ls("lake-bucket/lake/pairs")) == [
        "00000.parquet", "00001.parquet", "_schema.parquet"]
    _, rows = db.query(L, "SELECT status, sum(n) FROM funnel GROUP BY 1 ORDER BY 1")
    got = dict(rows)
    # 16 tar pairs plus the URLs img2dataset failed to fetch (counted in as source_failed)
    assert sum(got.values()) == s["n_in"] == 16 + s["n_source_failed"]
    assert (got.get("passed", 0), got.get("rejected", 0), got.get("quarantined", 0),
            got.get("source_failed", 0)) == (s["n_passed"], s["n_rejected"], s["n_quarantined"],
                                             s["n_source_failed"])
    _, runs = db.query(L, "SELECT sum(n_in) - sum(n_source_failed), sum(n_passed + n_rejected + n_quarantined) FROM shard_runs")
    assert runs == [(16, 16)]
    wt.publish(L, [{"kind": "color", "value": "red", "target_freq": 0.2}], "v0")
    assert main(["sql", "SELECT version, value FROM sampling_weights_current", "--lake", L, "-f", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["version,value", "v0000,red"]
