import datetime as dt
import json

import pytest

from djepa_t2i.config import Feedback, load_config
from warehouse import lake as lk
from warehouse import weights as wt
from warehouse.feedback_rule import next_rows, publish_next

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
PH1 = {"mu": 0.512, "sigma": 0.12, "a": 0.256, "b": 1.024}
PH2 = {"mu": 1.024, "sigma": 1.0, "a": 0.256, "b": 4.096}


def _v0():
    rows = [{"kind": "color", "value": c, "target_freq": t, "observed_freq": p}
            for c, t, p in [("red", 0.3, 0.4), ("blue", 0.3, 0.4), ("purple", 0.05, 0.02),
                            ("green", 0.2, 0.18)]]
    rows += [{"kind": "count", "value": "four", "target_freq": 0.02, "observed_freq": 0.01},
             {"kind": "shape", "value": "circle", "target_freq": 0.3, "observed_freq": 0.3}]
    rows += [wt.resolution_row("start", *PH1.values(), "v0"), wt.resolution_row("final", *PH2.values(), "v0")]
    return rows


def _by(rows):
    return {(r["kind"], r["value"]): r for r in rows}


SCORES = {("color", "red"): 0.9, ("color", "blue"): 0.55, ("color", "purple"): 0.2,
          ("color", "green"): 0.55}


def test_weak_notions_rise_learned_decay_toward_natural_and_steps_are_bounded():
    rule = Feedback(step_size=0.5, margin=0.05, decay=0.25)
    out = _by(next_rows(_v0(), SCORES, {"colors": 0.5, "overall": 0.4}, {}, 0, rule))
    mean = sum(SCORES.values()) / 4  # 0.55
    purple = out[("color", "purple")]
    # 1 + (0.55 - 0.2) / 0.55 = 1.64 -> bounded at 1.5; red (learned) a quarter of the way from 0.3
    # toward its natural 0.4; blue and green at the mean: x1. Then the color mass (0.85) is kept.
    pre = {"purple": 0.05 * 1.5, "red": 0.3 + 0.25 * (0.4 - 0.3), "blue": 0.3, "green": 0.2}
    scale = 0.85 / sum(pre.values())
    assert json.loads(purple["params"])["factor"] == pytest.approx(1.5)
    assert purple["target_freq"] == pytest.approx(pre["purple"] * scale)
    assert "eval 0.20 < mean(color) 0.55" in purple["reason"] and "bounded x1.50" in purple["reason"]
    assert "color mass kept 0.8500" in purple["reason"]
    assert f"target 0.0500 -> {pre['purple'] * scale:.4f}" in purple["reason"] and purple["eval_score"] == 0.2
    for c in ("red", "blue", "green"):
        assert out[("color", c)]["target_freq"] == pytest.approx(pre[c] * scale)
    assert sum(out[("color", c)]["target_freq"] for c in pre) == pytest.approx(0.85)
    # lifting purple lowers an unchanged sibling: that is what makes the sampler thin it
    assert out[("color", "blue")]["target_freq"] < 0.3
    assert abs(SCORES[("color", "blue")] - mean) < rule.margin
    # nothing measured: kept, and says so
    four = out[("count", "four")]
    assert four["target_freq"] == 0.02 and "no score, no trusted observation: kept" in four["reason"]
    # a trusted observation at target is reported as such, never as "no trusted observation"
    at_target = _by(next_rows(_v0(), {}, {}, {("count", "four"): 2.0}, 100, rule))
    four = at_target[("count", "four")]
    assert four["target_freq"] == 0.02 and "observed 0.0200 >= 0.9 x target 0.0200" in four["reason"]
    assert "no trusted observation" not in four["reason"]
    # natural share is carried for the next version
    assert json.loads(purple["params"])["natural"] == 0.02
    assert out[("category", "colors")]["eval_score"] == 0.5
    # every non-resolution row's own factor is within the step bound (before the mass rescale)
    for (k, v), r in out.items():
        if k in ("color", "count", "shape"):
            assert 1 / 1.5 - 1e-12 <= json.loads(r["params"])["factor"] <= 1.5 + 1e-12


def test_under_sampled_notions_are_lifted_and_floor_cap_hold():
    rule = Feedback(step_size=0.5, min_samples=100, tolerance=0.1, cap=0.32, floor=0.04)
    observed = {("count", "four"): 1.0, ("color", "red"): 30.0, ("color", "purple"): 5.0,
                ("color", "blue"): 30.0, ("color", "green"): 20.0, ("shape", "circle"): 30.0}
    out = _by(next_rows(_v0(), {}, {}, observed, 100, rule))
    four = out[("count", "four")]  # observed 0.01 < 0.9 x 0.02 -> x2 -> bounded 1.5 -> 0.03, floor 0.04
    assert four["observed_freq"] == pytest.approx(0.01)
    assert four["target_freq"] == pytest.approx(0.04) and "clipped" in four["reason"]
    assert "observed 0.0100 < target 0.0200" in four["reason"]
    assert out[("color", "purple")]["target_freq"] == pytest.approx(0.05)  # observed 0.05: on target
    assert out[("color", "red")]["target_freq"] == 0.3  # observed 0.3 = target
    # too few accepted samples: observations are not trusted
    out = _by(next_rows(_v0(), {}, {}, observed, 99, rule))
    assert out[("count", "four")]["target_freq"] == pytest.approx(0.04)  # only the floor applies
    assert "observed" not in out[("count", "four")]["reason"]
    # the cap binds on a weak, already large target (then the color mass 0.85 is kept)
    out = _by(next_rows(_v0(), {("color", "red"): 0.0, ("color", "blue"): 1.0}, {}, {}, 0, rule))
    pre = {"red": 0.32, "blue": min(0.3 + 0.25 * (0.4 - 0.3), 0.32), "purple": 0.05, "green": 0.2}
    assert out[("color", "red")]["target_freq"] == pytest.approx(0.32 * 0.85 / sum(pre.values()))
    assert "clipped to [0.04, 0.32]" in out[("color", "red")]["reason"]


def test_resolution_advances_at_the_configured_score_and_stays():
    rule = Feedback(advance_schedule_at=0.5)
    stay = _by(next_rows(_v0(), {}, {"overall": 0.3}, {}, 0, rule))
    assert json.loads(stay[("resolution", "start")]["params"]) == PH1
    assert "0.30 < advance_schedule_at 0.5" in stay[("resolution", "start")]["reason"]
    adv = next_rows(_v0(), {}, {"overall": 0.6}, {}, 0, rule)
    p1 = json.loads(_by(adv)[("resolution", "start")]["params"])
    assert p1 == {**PH2, "advanced_to": "final"}
    again = _by(next_rows(adv, {}, {"overall": 0.1}, {}, 0, rule))  # a worse score does not go back
    assert json.loads(again[("resolution", "start")]["params"])["advanced_to"] == "final"
    assert wt.resolution_schedule(__import__("pyarrow").Table.from_pylist(
        [{"kind": r["kind"], "value": r["value"], "params": r.get("params"), "target_freq": None}
         for r in adv]), "start")["mu"] == PH2["mu"]


def _eval_rows(ck, step, scores, created):
    rows = []
    for i, ((kind, value), s) in enumerate(scores.items()):
        for j in range(10):
            ok = float(j < round(s * 10))
            pid = f"{kind}-{value}-{j}"
            rows.append({"checkpoint": ck, "run_id": "r", "step": step, "benchmark": "shapes-geneval",
                         "category": "colors", "prompt_id": pid, "notion_kind": kind, "notion": value,
                         "score": ok, "created_at": created, "image_index": 0})
            rows.append({"checkpoint": ck, "run_id": "r", "step": step, "benchmark": "shapes-geneval",
                         "category": "colors", "prompt_id": pid, "notion_kind": "category",
                         "notion": "colors", "score": ok, "created_at": created, "image_index": 0})
    return rows


def test_publish_next_from_the_lake(tmp_path):
    lake = str(tmp_path / "lake")
    with pytest.raises(ValueError, match="no live sampling-weights version"):
        publish_next(lake, Feedback())
    v0 = wt.publish(lake, _v0(), "v0 test")
    # an older checkpoint where purple was fine, the latest where it fails
    lk.write_partition(lake, "eval_results", "r-s00000001-shapes-geneval",
                       _eval_rows("r-s00000001", 1, {("color", "purple"): 1.0, ("color", "red"): 0.0}, NOW))
    lk.write_partition(lake, "eval_results", "r-s00000002-shapes-geneval",
                       _eval_rows("r-s00000002", 2, SCORES, NOW + dt.timedelta(hours=1)))
    stats = [{"run_id": "r", "rank": rk, "step": 10, "kind": "accepted", "value": "samples", "count": 50.0,
              "weights_version": v0, "created_at": NOW} for rk in (0, 1)]
    stats += [{"run_id": "r", "rank": rk, "step": 10, "kind": "notion", "value": "count:four", "count": 0.0,
               "weights_version": v0, "created_at": NOW} for rk in (0, 1)]
    stats += [{"run_id": "r", "rank": 0, "step": 10, "kind": "accepted", "value": "samples", "count": 1e6,
               "weights_version": "v9999", "created_at": NOW}]  # another version's window: ignored
    lk.write_partition(lake, "batch_stats", "r-r000-s00000010", stats)
    cfg = load_config(None, ["feedback.min_samples=100"])
    s = publish_next(lake, cfg.feedback)
    assert s["weights_version"] == "v0001" and wt.versions(lake) == ["v0000", "v0001"]
    version, table = wt.load(lake)
    assert version == "v0001"
    rows = _by(table.to_pylist())
    assert json.loads(rows[("color", "purple")]["params"])["factor"] == pytest.approx(1.5)
    assert rows[("color", "purple")]["target_freq"] > 0.05
    assert "shapes-geneval@r-s00000002" in rows[("color", "purple")]["reason"]
    assert rows[("count", "four")]["target_freq"] == pytest.approx(0.03)  # never seen in 100 samples
    assert "100 accepted" in s["why"]
    assert all(r["reason"] for r in table.to_pylist())


def test_no_action_on_a_difference_inside_the_interval():
    """Issue #10 §3: with 4 images per notion purple's 0.2 vs the mean 0.55 is noise (Wilson
    interval 0.04-0.62 at n=5 includes 0.55): no lift. With 200 images it is evidence."""
    rule = Feedback(step_size=0.5, margin=0.05, decay=0.25)
    few = {k: (s, 5) for k, s in SCORES.items()}
    out = _by(next_rows(_v0(), few, {"overall": 0.4}, {}, 0, rule))
    assert "no evidence, kept" in out[("color", "purple")]["reason"]
    assert json.loads(out[("color", "purple")]["params"])["factor"] == 1.0
    many = {k: (s, 200) for k, s in SCORES.items()}
    out = _by(next_rows(_v0(), many, {"overall": 0.4}, {}, 0, rule))
    assert json.loads(out[("color", "purple")]["params"])["factor"] == 1.5


def test_learned_needs_a_score_above_its_own_chance():
    """Issue #16: purple at 1.00 is "learned" by the mean test alone; with its shuffled-prompt
    chance at 0.97 (the model draws purple whatever the prompt) it is kept. The same score over a
    chance of 0.10 still decays toward natural, as without a chance control."""
    rule = Feedback(step_size=0.5, margin=0.05, decay=0.25)
    low = {(c): (0.1, 30, 0.05, 60) for c in [("color", "red"), ("color", "blue"), ("color", "green")]}
    biased = _by(next_rows(_v0(), {**low, ("color", "purple"): (1.0, 30, 0.97, 90)}, {}, {}, 0, rule))
    purple = biased[("color", "purple")]
    assert json.loads(purple["params"])["factor"] == 1.0
    assert ("eval 1.00 (95% CI 0.89-1.00, n=30) but chance 0.97 (shuffled prompts, n=90): no evidence, "
            "kept") in purple["reason"]
    goal = 0.05 + 0.25 * (0.02 - 0.05)  # a quarter of the way from target 0.05 to natural 0.02
    for purple_in in [(1.0, 30, 0.10, 90), (1.0, 30)]:  # above its chance; no chance control
        out = _by(next_rows(_v0(), {**low, ("color", "purple"): purple_in}, {}, {}, 0, rule))
        purple = out[("color", "purple")]
        assert json.loads(purple["params"])["factor"] == pytest.approx(goal / 0.05)
        assert "decay 0.25 toward natural 0.0200 -> x0.85" in purple["reason"]
    assert "eval 1.00 > mean(color) 0.33, above chance 0.10 (n=90): decay" in _by(next_rows(
        _v0(), {**low, ("color", "purple"): (1.0, 30, 0.10, 90)}, {}, {}, 0, rule))[("color", "purple")]["reason"]


def _chance_rows(ck, step, chances, created):
    """Shuffled-prompt control rows: ``round(c * 10)`` of 10 images pass per notion."""
    return [{"checkpoint": ck, "run_id": "r", "step": step, "benchmark": "shapes-geneval",
             "category": "colors", "prompt_id": f"{kind}-{value}-{j}", "notion_kind": kind,
             "notion": value, "score": float(j < round(c * 10)), "created_at": created,
             "image_index": 0, "control": "shuffled_prompt"}
            for (kind, value), c in chances.items() for j in range(10)]


def test_view_chance_and_the_rule_reading_it_from_the_lake(tmp_path):
    """The view's ``chance``/``chance_n`` on a hand-built partition (NULL without control rows),
    and ``publish_next`` keeps a notion whose score is no better than its chance."""
    from warehouse import db
    lake = str(tmp_path / "lake")
    wt.publish(lake, _v0(), "v0 test")
    scores = {("color", "red"): 0.9, ("color", "blue"): 0.1, ("color", "purple"): 0.1,
              ("color", "green"): 0.1}
    rows = _eval_rows("r-s00000001", 1, scores, NOW)
    rows += _chance_rows("r-s00000001", 1, {("color", "red"): 0.8, ("color", "blue"): 0.0}, NOW)
    lk.write_partition(lake, "eval_results", "r-s00000001-shapes-geneval", rows)
    _, got = db.query(lake, "SELECT notion, score, n_images, chance, chance_n FROM eval_notion_scores "
                            "ORDER BY notion")
    a = pytest.approx
    assert got == [("blue", a(0.1), 10, 0.0, 10), ("green", a(0.1), 10, None, None),
                   ("purple", a(0.1), 10, None, None), ("red", a(0.9), 10, a(0.8), 10)]
    publish_next(lake, Feedback(margin=0.05))
    red = _by(wt.load(lake)[1].to_pylist())[("color", "red")]
    assert "eval 0.90 (95% CI 0.60-0.98, n=10) but chance 0.80 (shuffled prompts, n=10)" in red["reason"]
    assert json.loads(red["params"])["factor"] == 1.0


def _solid(color: str, size: int = 32):
    from PIL import Image, ImageDraw
    from tasks import shapes_world as sw
    img = Image.new("RGB", (size, size), sw.BACKGROUND)
    ImageDraw.Draw(img).rectangle([8, 8, 23, 23], fill=sw.COLORS[color])
    return img


def _colour_eval_lake(tmp_path, draw) -> dict:
    """Publish v0 (six colours, target 0.1, natural 0.2), evaluate ``draw(job) -> colour`` on the
    colour benchmark with its real scorer and controls, publish the next version; its rows."""
    from experiments import colour_eval as cev
    from training import evaluate as ce
    lake = str(tmp_path / "lake")
    v0 = [{"kind": "color", "value": c, "target_freq": 0.1, "observed_freq": 0.2} for c in cev.sw.COLORS]
    wt.publish(lake, v0, "v0 test")
    rows = cev.evaluate(ce.jobs_for(cev.prompts(), 4, seed=0), lambda js: [_solid(draw(j)) for j in js])
    for r in rows:
        r.update(checkpoint="r-s00000001", run_id="r", step=1, benchmark=cev.BENCHMARK, created_at=NOW)
    lk.write_partition(lake, "eval_results", "r-s00000001-shapes-colour", rows)
    publish_next(lake, Feedback(margin=0.05, decay=0.25, benchmark=cev.BENCHMARK))
    return _by(wt.load(lake)[1].to_pylist())


def test_a_model_that_draws_purple_for_everything_gets_no_learned_purple(tmp_path):
    """The artifact of docs/experiments.md ("The loop acted on an artifact"), end to end: purple
    prompts score 1.00 only because every image is purple; purple's chance is 1.00 too: kept."""
    purple = _colour_eval_lake(tmp_path, lambda job: "purple")[("color", "purple")]
    assert purple["eval_score"] == 1.0 and json.loads(purple["params"])["factor"] == 1.0
    assert "eval 1.00 (95% CI 0.76-1.00, n=12) but chance 1.00 (shuffled prompts, n=" in purple["reason"]
    assert "no evidence, kept" in purple["reason"]


def test_a_colour_drawn_only_when_asked_for_is_learned(tmp_path):
    """Red drawn exactly when the prompt says red (purple otherwise): score 1.00, chance 0.00,
    so red decays a quarter of the way toward its natural share."""
    red = _colour_eval_lake(tmp_path, lambda job: "red" if job["color"] == "red" else "purple")[("color", "red")]
    assert red["eval_score"] == 1.0 and "above chance 0.00 (n=" in red["reason"]
    assert json.loads(red["params"])["factor"] == pytest.approx((0.1 + 0.25 * (0.2 - 0.1)) / 0.1)
