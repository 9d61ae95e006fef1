"""experiments/feedback_vs_rl (issue #27 item 6): the budget split, and a report whose verdicts
come from the rows (a clear win, a tie at chance)."""
import argparse

import pytest

from experiments import feedback_vs_rl_report as report
from experiments.feedback_vs_rl_design import feedback_plan, split
from tasks import shapes_world as sw


def test_budget_split_counts_every_image():
    assert split(960, 0.5) == (480, 480) and split(41, 0.5) == (20, 21)
    plan = feedback_plan(960, 2, 24)
    assert plan == [304, 304, 304] and sum(plan) + 2 * 24 == 960
    with pytest.raises(ValueError, match="leaves no training"):
        feedback_plan(40, 2, 24)


def _final(right: dict[str, float], n=8, seed=0):
    """Rows of one run: per category ``right`` share of n images, and a shuffled control at 0.1."""
    rows = []
    for c in sw.CATEGORIES:
        k = round(right.get(c, 0.0) * n)
        rows += [{"category": c, "prompt": "p", "image_index": i, "score": float(i < k), "control": None}
                 for i in range(n)]
        rows += [{"category": c, "prompt": "p", "image_index": i, "score": float(i < 1), "control": "shuffled_prompt"}
                 for i in range(n)]
    return rows


def test_report_verdicts_follow_the_rows(tmp_path):
    good = {c: 1.0 for c in sw.CATEGORIES}
    base = {"colors": 1.0, "single_object": 0.5}
    results = {"base": {"checkpoint": "p2", "final": _final(base)}}
    for seed in (0, 1):
        results[f"feedback/{seed}"] = {"final": _final(good), "seen": 900, "generated": 48, "seconds": 10.0}
        results[f"rl/{seed}"] = {"final": _final(base), "final_sft": _final(good), "seen": 480,
                                 "generated": 480, "seconds": 99.0}
    a = argparse.Namespace(results=str(tmp_path), preset="test", cfg={"budget": 960, "final_per_category": 2,
                                                                       "final_images": 4})
    report.write(a, results, 60.0)
    md = (tmp_path / "feedback_vs_rl.md").read_text()
    assert "**data feedback beats SFT + GRPO (D-JEPA·T2I §1), overall: met**" in md
    assert "**SFT + GRPO beats data feedback (SimpleAR's lever), overall: not met**" in md
    assert "**rl improves on phase 2, multi-object: inconclusive**" in md  # 0 vs 0: at chance
    assert "**GRPO improves on its SFT checkpoint, overall: not met**" in md  # rl fell below its SFT
    assert "| rl: SFT only | overall | 1.000" in md
    assert "both" not in md.split("Verdicts")[1]  # no arm, no claim
    assert (tmp_path / "feedback_vs_rl.png").stat().st_size > 0
    assert "| feedback | more phase-2 training" in md and "| 900.000 ± 0.000 | 48.000 ± 0.000 | 948.000" in md
