"""The SFT phase (issue #27 item 1): a quality tier by a saved query, its own index, a third phase."""
import pytest
from _train_data import make_lake

from djepa_t2i import cli
from djepa_t2i.config import ConfigError
from tasks import shard_writer
from training import lake_io
from training import trainer as tr
from warehouse import db, tiers
from warehouse import lake as lk
from warehouse import weights as wt
from test_trainer import tiny_cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    lake, passed = make_lake(root, n=24, shards=2, sizes=((32, 32), (48, 32), (24, 40), (64, 48)))
    # objects the caption names: three (a count), two (a second shape), one (count one)
    lk.write_partition(lake, "notions", "extra", [
        {"key": passed[0], "notion": "three", "kind": "count"},
        {"key": passed[1], "notion": "triangle", "kind": "shape"},
        {"key": passed[2], "notion": "one", "kind": "count"}])
    shard_writer.build(lake, str(root / "shards"), samples_per_shard=12, progress=False)
    # an aesthetic score per passed pair: its index in the sorted keys / 10
    lk.write_partition(lake, "filter_scores", "aesthetic", [
        {"key": k, "shard": k[:5], "filter": "aesthetic", "backend": "test", "score": i / 10, "passed": True}
        for i, k in enumerate(passed)])
    wt.publish(lake, [{"kind": "color", "value": "red", "target_freq": 0.2},
                      wt.resolution_row("start", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0 test")
    return root, lake, passed


def _expected(lake, where):
    _, rows = db.query(lake, f"SELECT count(*) FROM samples s WHERE {where}")
    return rows[0][0]


def test_tier_filters_by_side_aesthetic_and_notion(data):
    root, lake, passed = data
    everything = tiers.tier_rows(lake)
    assert everything.num_rows == len(passed) == _expected(lake, "true")
    assert tiers.tier_rows(lake, min_side=32).num_rows == _expected(lake, "least(width, height) >= 32") > 0
    assert tiers.tier_rows(lake, min_aesthetic=1.5).num_rows == len(passed) - 15
    red = tiers.tier_rows(lake, notion="color:red")
    assert red.num_rows == _expected(lake, "list_contains(notions, 'color:red')") > 0
    assert all("color:red" in n for n in red.column("notions").to_pylist())
    assert tiers.tier_rows(lake, caption_version="alt").num_rows == len(passed)
    assert tiers.tier_rows(lake, caption_version="internvl").num_rows == 0


def test_tier_by_objects_named_counts_the_count_notion_else_the_shapes(data):
    root, lake, passed = data
    keys = lambda t: sorted(t.column("key").to_pylist())  # noqa: E731
    assert keys(tiers.tier_rows(lake, min_objects=2)) == sorted(passed[:2])
    assert keys(tiers.tier_rows(lake, min_objects=3)) == [passed[0]]
    assert tiers.tier_rows(lake, min_objects=1).num_rows == len(passed)
    assert tiers.tier_rows(lake, min_objects=4).num_rows == 0


def test_tier_file_is_the_index_the_trainer_reads(data, tmp_path):
    root, lake, _ = data
    out = tmp_path / "tier.parquet"
    n = tiers.write_tier(lake, str(out), min_side=32)
    t = lake_io.read_index(lake, str(out))
    assert t.num_rows == n and t.schema == lake_io.read_index(lake).schema
    with pytest.raises(ConfigError, match="is empty with"):
        tiers.write_tier(lake, str(tmp_path / "none.parquet"), min_side=10_000)
    with pytest.raises(ConfigError, match=r"no such file \(write it with `t2i sft-tier`\)$"):
        lake_io.read_index(lake, str(tmp_path / "missing.parquet"))


@pytest.mark.slow
def test_sft_trains_a_third_phase_from_a_checkpoint_on_the_tier_only(data, tmp_path, capsys):
    root, lake, _ = data
    tier = tmp_path / "tier.parquet"
    assert cli.main(["sft-tier", "--lake", lake, "--out", str(tier), "--notion", "color:red"]) == 0
    assert "quality tier:" in capsys.readouterr().out
    base = tr.Trainer(tiny_cfg(lake, str(tmp_path / "p2"), **{"train.steps": 2, "train.save_every": 2}))
    try:
        base.fit()
    finally:
        base.close()
    ckpt = tmp_path / "p2" / "checkpoints" / "step_00000002"
    cfg = tiny_cfg(lake, str(tmp_path / "sft"), **{
        "train.phase": "sft", "train.samples_index": str(tier), "train.init_from": str(ckpt),
        "train.steps": 2, "train.save_every": 2, "train.lr": 2e-5, "train.warmup": 0})
    t = tr.Trainer(cfg)
    try:
        t.fit()
        keys = set(t.sampler.keys)
    finally:
        t.close()
    red = set(tiers.read_tier(str(tier)).column("key").to_pylist())
    assert keys == red and len(red) < len(lake_io.read_index(lake))
    _, rows = db.query(lake, "SELECT phase, step FROM checkpoints_live WHERE phase = 'sft'")
    assert rows == [("sft", 2)]
