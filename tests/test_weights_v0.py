import json

import pytest

from tests.lake_fixtures import make_lake
from warehouse import db, weights
from djepa_t2i.config import Notions, Schedule
from warehouse.weights_v0 import compute, publish_v0, tempered_targets


def test_tempering_lifts_tail_caps_head_and_keeps_mass():
    obs = {"head": 0.64, "mid": 0.16, "tail": 0.01}
    t = tempered_targets(obs, Notions(temper=0.5, min_target=0.0, max_target=1.0))
    assert sum(t.values()) == pytest.approx(sum(obs.values()))
    # sqrt: 0.8 : 0.4 : 0.1, scaled to the kind's mass 0.81
    assert t["head"] / t["tail"] == pytest.approx(8.0) and t["head"] / t["mid"] == pytest.approx(2.0)
    assert t["tail"] > obs["tail"] and t["head"] < obs["head"]
    assert tempered_targets(obs, Notions(temper=1.0, min_target=0.0, max_target=1.0)) == pytest.approx(obs)  # temper 1: as observed
    flat = tempered_targets(obs, Notions(temper=0.0, min_target=0.0, max_target=1.0))
    assert len(set(round(v, 12) for v in flat.values())) == 1  # temper 0: flat
    clipped = tempered_targets(obs, Notions(temper=0.5, min_target=0.2, max_target=0.4))
    assert clipped == pytest.approx({"head": 0.4, "mid": 0.81 * 0.4 / 1.3, "tail": 0.2})  # 0.498, 0.062 clipped
    assert tempered_targets({"x": 0.0}, Notions()) == {}


def test_bad_temper_refused():
    from djepa_t2i.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=r"notions\.temper: Input should be less than or equal to 1"):
        load_config(None, ["notions.temper=1.5"])
    with pytest.raises(ConfigError, match="need min_target <= max_target, got 0.6, 0.5"):
        load_config(None, ["notions.min_target=0.6", "notions.max_target=0.5"])


def test_v0_published_and_explained(tmp_path):
    from djepa_t2i.config import load_config
    from flows.notion_stats import notion_stats
    from tasks.recaption import recaption
    lake, _ = make_lake(tmp_path)
    c = load_config(overrides=["notions.temper=0.5", "notions.max_target=0.3"])
    recaption(lake, c.recaption, progress=False)
    s = notion_stats(lake, c.notions, c.schedule, progress=False)
    ver, t = weights.load(lake)
    assert ver == s["weights_version"] == "v0000" and t.num_rows == s["weights_rows"]
    rows = t.to_pylist()
    kinds = {r["kind"] for r in rows}
    assert {"notion", "color", "shape", "count", "spatial", "style", "source", "resolution"} <= kinds
    for phase in ("start", "final"):  # the config's schedule, as configured
        assert weights.resolution_schedule(t, phase) == getattr(c.schedule, phase).model_dump()
    red = next(r for r in rows if (r["kind"], r["value"]) == ("color", "red"))
    _, ((p,),) = db.query(lake, "SELECT p FROM notion_stats WHERE notion='red' AND kind='color'")
    assert red["observed_freq"] == pytest.approx(p)
    assert red["reason"].startswith(f"v0: observed p={p:.4g}") and "tempered^0.5 within color" in red["reason"]
    assert red["weight"] == pytest.approx(red["target_freq"] / red["observed_freq"])
    assert all(r["reason"] for r in rows)
    assert all(r["target_freq"] <= 0.3 + 1e-12 for r in rows if r["kind"] not in ("resolution", "source"))
    src = {r["value"]: r for r in rows if r["kind"] == "source"}
    assert set(src) == {"shapes", "laion"} and sum(r["observed_freq"] for r in src.values()) == pytest.approx(1)
    assert json.loads(red["params"])["temper"] == 0.5
    # the live version is what the view shows; a second publication moves CURRENT
    v2, _ = publish_v0(lake, Notions(temper=0.3), Schedule())
    _, got = db.query(lake, "SELECT DISTINCT version FROM sampling_weights_current")
    assert got == [(v2,)] and v2 == "v0001"


def test_compute_on_empty_lake_gives_only_schedule(tmp_path):
    rows, why = compute(str(tmp_path), Notions(), Schedule())
    assert [r["kind"] for r in rows] == ["resolution", "resolution"] and "over 0 captions" in why
