import pytest

from warehouse import db, weights


def test_publish_versions_and_current(tmp_path):
    L = str(tmp_path)
    assert weights.load(L)[0] is None
    v0 = weights.publish(L, [{"kind": "color", "value": "red", "target_freq": 0.1},
                             weights.resolution_row("start", 0.512, 0.12, 0.256, 1.024, "paper phase 1")],
                         why="v0 from notion_stats")
    v1 = weights.publish(L, [{"kind": "color", "value": "red", "target_freq": 0.2, "reason": "eval low"}], why="fb")
    assert (v0, v1) == ("v0000", "v0001")
    ver, t = weights.load(L)
    assert ver == "v0001" and weights.targets(t) == {("color", "red"): 0.2}
    _, t0 = weights.load(L, "v0000")
    assert weights.resolution_schedule(t0, "start") == {"mu": 0.512, "sigma": 0.12, "a": 0.256, "b": 1.024}
    _, rows = db.query(L, "SELECT version, reason FROM sampling_weights_current")
    assert rows == [("v0001", "eval low")]
    # the pointer's writer and reader (warehouse.weights) and the view agree after a move back
    assert weights.current_version(L) == "v0001"
    weights.set_current(L, "v0000")
    assert weights.current_version(L) == "v0000" == weights.load(L)[0]
    assert (tmp_path / "weights" / "CURRENT").read_text() == "v0000\n"
    _, rows = db.query(L, "SELECT DISTINCT version FROM sampling_weights_current")
    assert rows == [("v0000",)]


def test_no_current_version_before_the_first_publication(tmp_path):
    assert weights.current_version(str(tmp_path)) is None
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "CURRENT").write_text("\n")  # an empty pointer names nothing
    assert weights.current_version(str(tmp_path)) is None


def test_bad_rows_refused(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        weights.publish(str(tmp_path), [{"kind": "bogus", "value": "x"}], why="x")
    with pytest.raises(ValueError, match="empty"):
        weights.publish(str(tmp_path), [], why="x")
    with pytest.raises(KeyError):
        weights.set_current(str(tmp_path), "v0042")
