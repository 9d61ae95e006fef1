"""The issue-16 experiments: verdicts from intervals, the colour benchmark on rendered ground
truth, the three sampling arms, the Fig. 4a decay curves, and both experiments end to end at
their smallest configuration (the ``smoke`` preset, marked slow)."""
from __future__ import annotations

import json
import math
import random
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

from experiments import colour_eval as cev
from experiments import feedback_ablation as fa
from experiments import feedback_design as fd
from experiments import feedback_report as fr
from experiments import learning_diagnostic as ld
from experiments import shapes_data as sd
from experiments import verdicts as vd
from experiments import vope_design
from experiments import vope_report
from experiments import vope_resolution as vr
from experiments.vope_design import ntk_scale
from experiments.vope_report import decay
from model.checkpoint import read_meta
from model.vope import _inv_freq, ntk_base
from tasks import shapes_world as sw
from training import evaluate as ce
from training.draw_check import score
from warehouse import weights as wt


def _rows(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# --------------------------------------------------------------------------- verdicts
def test_verdict_needs_the_interval_not_the_points():
    assert vd.verdict(0.01, 0.20, 0.05, True) == vd.MET
    assert vd.verdict(-0.10, 0.03, 0.05, True) == vd.NOT_MET          # rules out a +0.05 gain
    assert vd.verdict(-0.10, 0.12, 0.05, True) == vd.INCONCLUSIVE
    # a clear-looking interval says nothing when neither arm beats chance
    assert vd.verdict(0.01, 0.20, 0.05, False) == vd.INCONCLUSIVE
    assert vd.verdict_within(-0.03, 0.04, 0.05, True) == vd.MET
    assert vd.verdict_within(0.06, 0.30, 0.05, True) == vd.NOT_MET
    assert vd.verdict_within(-0.02, 0.09, 0.05, True) == vd.INCONCLUSIVE


def test_scale_note_says_what_an_inconclusive_verdict_would_need():
    assert vd.scale_note(vd.MET, True, 100, 0.01, 0.2, 0.05) == ""
    assert "longer training" in vd.scale_note(vd.INCONCLUSIVE, False, 100, -0.1, 0.1, 0.05)
    # half-width 0.1 -> 0.025 needs (0.1 / 0.025)^2 = 16x the images
    assert "~1601 images per arm" in vd.scale_note(vd.INCONCLUSIVE, True, 100, -0.1, 0.1, 0.05)


def test_two_zeros_are_inconclusive_not_met():
    zeros = [[0.0] * 40] * 3
    point, lo, hi = vd.boot_diff(zeros, zeros, n_boot=200)
    assert (point, lo, hi) == (0.0, 0.0, 0.0)
    a, chance = vd.share(zeros), vd.share([[0.0, 1.0, 0.0, 0.0, 0.0, 0.0] * 7] * 3)
    assert not vd.beats(a, chance)
    assert vd.verdict(lo, hi, 0.05, vd.beats(a, chance)) == vd.INCONCLUSIVE


def test_boot_diff_counts_the_spread_between_runs():
    rng = np.random.default_rng(0)
    a = [list(rng.random(50) < p) for p in (0.9, 0.5, 0.7)]   # runs that disagree
    b = [list(rng.random(50) < 0.6) for _ in range(3)]
    point, lo, hi = vd.boot_diff(a, b, n_boot=500)
    assert lo < point < hi
    pooled_half = 1.96 * math.sqrt(0.7 * 0.3 / 150 + 0.6 * 0.4 / 150)
    assert (hi - lo) / 2 > pooled_half  # wider than treating 150 images as independent
    one, zero = [[1.0] * 10] * 2, [[0.0] * 10] * 2
    assert vd.boot_diff(one, zero, n_boot=50) == (1.0, 1.0, 1.0)


def test_share_is_wilson_over_pooled_images():
    s = vd.share([[1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    assert s.n == 10 and s.p == pytest.approx(0.3)
    assert s.lo == pytest.approx(0.1078, abs=1e-3) and s.hi == pytest.approx(0.6032, abs=1e-3)
    assert "0.300 [0.11, 0.60] (n=10)" == str(s)


# --------------------------------------------------------------------------- colour benchmark
def _truth(job: dict) -> "sw.Image.Image":
    """The ground truth of a colour prompt: one object of that colour and shape, rendered."""
    obj = sw.Obj(job["shape"], job["color"], 0.5, 0.5, 0.4)
    return sw.render(sw.Scene([obj], job["prompt"], 32, 32, None, "colors"))


def test_colour_benchmark_scores_ground_truth_one_and_controls_near_chance():
    jobs = ce.jobs_for(cev.prompts(), 2, 0)
    assert len(jobs) == 36 and {j["notions"][1] for j in jobs} == {f"color={c}" for c in sw.COLORS}
    rows = cev.evaluate(jobs, lambda batch: [_truth(j) for j in batch], batch_size=12)
    s = cev.colour_summary(rows)
    assert s["overall"] == 1.0 and all(s[f"color={c}"] == 1.0 for c in sw.COLORS)
    assert set(s) >= {"control:uniform_noise", "control:patch_noise", "control:shuffled_prompt"}
    # shuffled prompts share the colour only when the derangement lands on the same colour
    assert s["control:shuffled_prompt"] < 0.4 and s["control:patch_noise"] < 0.5
    assert len(cev.scores_of(rows, "color=purple")) == 6
    assert len(cev.scores_of(rows, control="shuffled_prompt")) == 36
    wrong = dict(jobs[0], color="blue" if jobs[0]["color"] != "blue" else "red")
    assert cev.score(wrong, _truth(jobs[0]))[0] == 0.0


# --------------------------------------------------------------------------- arms
def test_uniform_arm_has_no_notion_targets_and_static_lifts_the_rare_colours(tmp_path):
    counts = sd.build_world(str(tmp_path / "data"), str(tmp_path / "shards"), 60, [(32, 32)],
                            fd.world(0.12), 0, progress=False)
    assert set(counts["color"]) <= set(sw.COLORS) and set(counts["category"]) == {"colors"}
    sched = (0.032, 0.001, 0.032, 0.032)
    sd.run_lake(str(tmp_path / "data"), str(tmp_path / "u"), counts, 60, "start", sched, notion_targets=False)
    sd.run_lake(str(tmp_path / "data"), str(tmp_path / "s"), counts, 60, "start", sched)
    assert wt.targets(wt.load(str(tmp_path / "u"))[1]) == {}
    t = wt.targets(wt.load(str(tmp_path / "s"))[1])
    rare = [c for c in fd.RARE if c in counts["color"]]
    for c in rare:  # tempering lifts a rare colour above its natural share
        assert t[("color", c)] > counts["color"][c] / 60


def test_mix_share_and_running_shares_from_batch_stats_rows():
    mix = [{"step": 10, "value": "samples", "count": 100.0}, {"step": 10, "value": "color:purple", "count": 2.0},
           {"step": 20, "value": "samples", "count": 100.0}, {"step": 20, "value": "color:purple", "count": 8.0},
           {"step": 20, "value": "color:orange", "count": 5.0}]
    assert fr.mix_share(mix, ("purple", "orange")) == pytest.approx(0.075)
    assert fr.cumulative_shares(mix, "purple") == ([10, 20], [0.02, 0.05])
    # at most every other common sample is discarded: 5.5% of the data can reach 2 x 5.5 / 1.055
    assert fr.ceiling(0.055) == pytest.approx(0.104, abs=1e-3) and fr.ceiling(0.5) == pytest.approx(2 / 3)


def test_world_is_long_tailed_in_colour_only():
    rng = random.Random(0)
    scenes = [sw.sample_scene(rng, 32, 32, None, fd.world(0.12)) for _ in range(3000)]
    assert {s.kind for s in scenes} == {"colors"}
    c = Counter(o.color for s in scenes for o in s.objects)
    for rare in fd.RARE:
        assert 0.02 <= c[rare] / 3000 <= 0.04  # 0.12 / 4.24 = 2.8%


# --------------------------------------------------------------------------- Fig. 4a
def test_decay_curves_vope_keeps_the_trained_curve_and_ntk_does_not():
    f = _inv_freq(8, 100.0).numpy()
    assert decay([0.0], f)[0] == pytest.approx(1.0)
    d = decay(np.arange(0, 17), f)
    assert d[8] < 0.7 and (d <= 1.0 + 1e-9).all()          # the bound falls with distance
    frac = np.linspace(0, 1, 9)
    # VoPE at 2x: coordinates are token / rho with rho = 2, i.e. the 1x curve at each image fraction
    np.testing.assert_allclose(decay(frac * 16 / 2, f), decay(frac * 8, f))
    assert not np.allclose(decay(frac * 16, f), decay(frac * 8, f))           # plain RoPE at 2x
    g = _inv_freq(8, ntk_base(100.0, 2.0, 8)).numpy()
    assert not np.allclose(decay(np.arange(17), g), d)                        # NTK: another curve
    assert ntk_scale((64, 64), 32) == 2.0 and ntk_scale((16, 16), 32) == 1.0 and ntk_scale((64, 16), 32) == 2.0


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_feedback_ablation_smoke(tmp_path):
    res = tmp_path / "res"
    assert fa.main(["--preset", "smoke", "--work", str(tmp_path / "work"), "--results", str(res)]) == 0
    rows = _rows(res / "feedback_ablation.parquet")
    assert {"arm", "seed", "split", "step", "notion", "score", "control"} <= set(rows[0])
    final = [r for r in rows if r["split"] == "final" and r["notion_kind"] == "category"]
    for arm in fa.ARMS:
        mine = [r for r in final if r["arm"] == arm]
        assert len([r for r in mine if not r["control"]]) == 18          # 18 prompts x 1 image
        assert {r["control"] for r in mine} == {None, "uniform_noise", "patch_noise", "shuffled_prompt"}
    curve = {(r["arm"], int(r["step"])) for r in rows if r["split"] == "curve" and r["notion"] == "overall"}
    assert curve == {(arm, s) for arm in fa.ARMS for s in (1, 2)}
    mix = [r for r in rows if r["split"] == "mix" and r["notion"] == "samples"]
    assert {r["arm"] for r in mix} == set(fa.ARMS)
    meta = json.loads((res / "feedback_ablation.json").read_text())
    runs = meta["runs"]
    # the full loop published v0001 after step 1 and the running trainer switched to it
    assert runs["feedback-s0"]["published"][0]["version"] == "v0001"
    assert runs["feedback-s0"]["switches"] == [{"after_step": 1, "from": "v0000", "to": "v0001"}]
    assert runs["static-s0"]["published"] == [] and runs["uniform-s0"]["published"] == []
    assert {v["verdict"] for v in meta["verdicts"]} <= {vd.MET, vd.NOT_MET, vd.INCONCLUSIVE}
    md = (res / "feedback_ablation.md").read_text()
    assert "hardware:" in md and "shuffled_prompt" in md and "**the full loop beats static v0" in md
    assert (res / "feedback_ablation.png").stat().st_size > 1000
    assert (res / "feedback_mix.png").stat().st_size > 1000
    # the report is rebuilt from the saved raw results alone
    assert fa.report_only(["--preset", "smoke", "--work", str(tmp_path / "work"),
                           "--results", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "feedback_ablation.json").read_text())
    assert again["verdicts"] == meta["verdicts"]


def test_vope_sizes_reach_the_papers_4x_and_8x_cheapest_first():
    """4x is the paper's 1K -> 4K ratio (VoPE rho 1/4), 8x one doubling past; the runner scores the
    cheap sizes first and the cpu preset fewer images where one image costs ~64x."""
    s = vope_design.settings(32)
    assert (s["4x"], s["8x"], s["1:4"]) == ((128, 128), (256, 256), (64, 16))
    assert [n for n, _ in vope_design.by_cost(32)] == ["0.5x", "1x", "1:4", "4:1", "2x", "4x", "8x"]
    cpu = vr.PRESETS["cpu"]
    assert [vope_design.images_at(cpu, n) for n in ("1x", "2x", "4x", "8x")] == [4, 4, 2, 1]
    assert vope_report.size_label("4x", s["4x"], 32) == "4x (128x128, 1024 tok, rho 1/4)"
    assert vope_report.size_label("0.5x", s["0.5x"], 32) == "0.5x (16x16, 16 tok, rho 2)"


@pytest.mark.slow
def test_vope_resolution_smoke(tmp_path):
    res = tmp_path / "res"
    assert vr.main(["--preset", "smoke", "--work", str(tmp_path / "work"), "--results", str(res)]) == 0
    rows = _rows(res / "vope_resolution.parquet")
    model = [r for r in rows if r["notion_kind"] == "category" and not r["control"]]
    for arm in vope_design.ARMS:
        for s, (h, w) in vope_design.settings(16).items():
            mine = [r for r in model if r["arm"] == arm and r["setting"] == s]
            assert len(mine) == 18 and (int(mine[0]["height"]), int(mine[0]["width"])) == (h, w)
    ntk = {(r["setting"], float(r["ntk_scale"])) for r in model if r["arm"] == "rope-ntk"}
    assert ("2x", 2.0) in ntk and ("0.5x", 1.0) in ntk and ("1:4", 2.0) in ntk and ("8x", 8.0) in ntk
    losses = [float(r["score"]) for r in rows if r["notion_kind"] == "heldout_loss"]
    assert len(losses) == 3 * 7 and all(math.isfinite(x) and x > 0 for x in losses)
    meta = json.loads((res / "vope_resolution.json").read_text())
    claims = [v["claim"] for v in meta["verdicts"]]
    assert "VoPE beats RoPE+NTK at 2x" in claims and "VoPE at 2x within 0.05 of VoPE at 1x" in claims
    assert "VoPE beats RoPE at 8x" in claims and "VoPE at 4x within 0.05 of VoPE at 1x" in claims
    for name in ("vope_resolution.png", "vope_decay.png", *(f"vope_resolution_samples_{a}.png" for a in vope_design.ARMS)):
        assert (res / name).stat().st_size > 500, name
    assert read_meta(meta["runs"]["vope-s0"]["checkpoint"])["model"]["args"]["vope"] is True
    assert read_meta(meta["runs"]["rope-s0"]["checkpoint"])["model"]["args"]["vope"] is False


# --------------------------------------------------------------------------- learning diagnostic
def test_learning_diagnostic_scores_ground_truth_right_and_shuffled_at_chance():
    """The diagnostic's scorer on rendered ground truth: every colour and shape right, and the
    same images against deranged prompts no better than the derangement allows."""
    pr = ld.prompts()
    assert len(pr) == 18 and len(set(pr)) == 18
    images = [sw.render(sw.Scene([sw.Obj(s, c, 0.5, 0.5, 0.6)], sw.a(f"{c} {s}"), 32, 32, None, "colors"))
              for c, s in pr]
    r = score(images, pr)
    assert r["color"] == 1.0 and r["shape"] == 1.0
    assert r["color_shuffled"] < 0.5 and r["shape_shuffled"] < 0.5


def test_learning_diagnostic_runs_end_to_end_and_restores_the_world(tmp_path):
    size_before = sw._SIZE[1]
    curve = ld.main(["--steps", "2", "--n", "24", "--eval_every", "2", "--reps", "1", "--set", "evaluate.steps=2",
                     "--set", "evaluate.flow_steps=2", "--threads", "1", "--obj_size", "0.5,0.6",
                     "--save", str(tmp_path / "d")])  # the demo config's model: 2 heads, base 100, 1 t-draw
    assert [step for step, _ in curve] == [2]
    assert all(0.0 <= v <= 1.0 for v in curve[0][1].values()) and len(curve[0][1]) == 4
    assert sw._SIZE[1] == size_before  # --obj_size does not leak into the shared world
    from PIL import Image
    assert Image.open(tmp_path / "d_2.png").size == (32 * 18 * 3, 32 * 3)
    import torch
    saved = torch.load(tmp_path / "d_2.pt", weights_only=False)
    assert set(saved) == {"ema", "args", "config"}
    assert saved["config"]["model"]["overrides"]["heads"] == 2 and saved["config"]["evaluate"]["steps"] == 2
