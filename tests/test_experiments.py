"""Both issue-7 experiments end to end at their smallest configuration (the ``smoke`` preset: a
few training steps, one prompt per category): the real trainer, evaluator and feedback rule run,
and the result files carry the promised columns with finite values."""
from __future__ import annotations

import csv
import json
import math

import pytest

from tasks import shapes_world as sw


def _csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_feedback_ablation_smoke(tmp_path):
    from experiments import feedback_ablation as fa
    res = tmp_path / "res"
    assert fa.main(["--preset", "smoke", "--work", str(tmp_path / "work"), "--results", str(res)]) == 0
    rows = _csv(res / "feedback_ablation.csv")
    assert {"arm", "seed", "split", "step", "metric", "score"} <= set(rows[0])
    final = [r for r in rows if r["split"] == "final"]
    for arm in ("baseline", "feedback", "noise-floor"):
        got = {r["metric"]: float(r["score"]) for r in final if r["arm"] == arm}
        assert set(sw.CATEGORIES) | {"overall"} <= set(got), arm
        assert all(0.0 <= got[m] <= 1.0 for m in list(sw.CATEGORIES) + ["overall"])
    curve = [r for r in rows if r["split"] == "curve" and r["metric"] == "overall"]
    assert sorted({(r["arm"], int(r["step"])) for r in curve}) == [
        ("baseline", 1), ("baseline", 2), ("feedback", 1), ("feedback", 2)]
    meta = json.loads((res / "feedback_ablation.json").read_text())
    runs = meta["runs"]
    # the feedback arm published v0001 after step 1 and the running trainer switched to it
    assert runs["feedback-s0"]["published"][0]["version"] == "v0001"
    assert runs["feedback-s0"]["switches"] == [{"after_step": 1, "from": "v0000", "to": "v0001"}]
    assert runs["baseline-s0"]["switches"] == [] and runs["baseline-s0"]["published"] == []
    assert math.isfinite(meta["summary"]["overall"]["delta"]) and meta["wall_seconds"] > 0
    md = (res / "feedback_ablation.md").read_text()
    assert "| metric | baseline (v0 fixed) | feedback | delta | noise floor |" in md and "hardware:" in md
    assert (res / "feedback_ablation.png").stat().st_size > 1000


@pytest.mark.slow
def test_vope_resolution_smoke(tmp_path):
    from experiments import vope_resolution as vr
    res = tmp_path / "res"
    assert vr.main(["--preset", "smoke", "--work", str(tmp_path / "work"), "--results", str(res)]) == 0
    rows = _csv(res / "vope_resolution.csv")
    assert {"positions", "setting", "height", "width", "metric", "score"} <= set(rows[0])
    overall = {(r["positions"], r["setting"]): float(r["score"]) for r in rows if r["metric"] == "overall"}
    for pos in ("vope", "rope", "noise-floor"):
        for s, (h, w) in vr.settings(16).items():
            assert 0.0 <= overall[(pos, s)] <= 1.0
    losses = [float(r["score"]) for r in rows if r["metric"] == "heldout_loss"]
    assert len(losses) == 2 * 5 and all(math.isfinite(x) and x > 0 for x in losses)
    sizes = {(r["setting"], int(r["height"]), int(r["width"])) for r in rows}
    assert ("2x", 32, 32) in sizes and ("1:4", 32, 8) in sizes and ("4:1", 8, 32) in sizes
    meta = json.loads((res / "vope_resolution.json").read_text())
    assert set(meta["targets"]) == {"vope_2x_within_0.05_of_1x", "vope_2x_better_than_rope"}
    for pos in ("vope", "rope"):
        assert (res / f"vope_resolution_samples_{pos}.png").stat().st_size > 500
    # the two arms differ only in positions: the checkpoints record vope true/false
    from model.checkpoint import read_meta
    assert read_meta(meta["runs"]["vope-s0"]["checkpoint"])["model"]["args"]["vope"] is True
    assert read_meta(meta["runs"]["rope-s0"]["checkpoint"])["model"]["args"]["vope"] is False
