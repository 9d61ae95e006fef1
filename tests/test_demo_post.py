"""make demo-post (issue #27 item 5): its configs parse into the run it claims, and the composition
summary's numbers (per-category Wilson intervals, the multi-object overall, the best control)."""
import pytest

from djepa_t2i.config import ConfigError, auto_steps, load_config
from flows.demo_post import CONFIGS, _checkpoint
from training.composition import MULTI, prompts, summarize
from warehouse.intervals import wilson


def test_preset_configs_parse_into_the_composition_run():
    cfg = load_config(CONFIGS, [])
    assert cfg.train.phase == "sft" and cfg.train.samples_index and cfg.train.steps > 0
    assert cfg.post_train.categories == list(MULTI)
    ev_steps = auto_steps(64) if cfg.evaluate.steps == "auto" else cfg.evaluate.steps  # 32 px: 64 tokens
    assert cfg.post_train.head_steps < cfg.evaluate.flow_steps and cfg.post_train.ar_steps < ev_steps
    assert cfg.evaluate.size == 32 and cfg.model.name == "djepa_tiny"  # the demo's model, unchanged
    assert set(cfg.post_train.rewards) <= {"shapes-geneval", "shapes-clauses"}


def test_preset_needs_make_demo_first(tmp_path):
    with pytest.raises(ConfigError, match=r"no complete checkpoint \(make demo's phase 2\); run `make demo` first$"):
        _checkpoint(tmp_path / "train-phase2", "make demo's phase 2")


def test_composition_prompts_are_the_multi_object_categories_and_colour():
    ps = prompts(2, 0, 32)
    assert [p["category"] for p in ps] == [c for c in (*MULTI, "colors") for _ in range(2)]
    assert ps == prompts(2, 0, 32) and ps != prompts(2, 1, 32)


def _rows(cat, scores, control=None):
    return [{"category": cat, "prompt": "p", "image_index": i, "score": s, "control": control}
            for i, s in enumerate(scores)]


def test_summary_intervals_overall_and_chance():
    rows = (_rows("two_object", [1, 1, 0, 0]) + _rows("counting", [1, 0, 0, 0]) + _rows("position", [0] * 4)
            + _rows("color_attr", [1, 1, 1, 0]) + _rows("colors", [1, 1, 1, 1])
            + _rows("two_object", [1, 0, 0, 0], "shuffled_prompt") + _rows("two_object", [0] * 4, "uniform_noise")
            + _rows("counting", [0] * 4, "shuffled_prompt") + _rows("position", [0] * 4, "shuffled_prompt")
            + _rows("color_attr", [1, 1, 0, 0], "shuffled_prompt") + _rows("colors", [1, 1, 0, 0], "shuffled_prompt"))
    s = summarize(rows)
    assert s["two_object"]["score"] == 0.5 and (s["two_object"]["lo"], s["two_object"]["hi"]) == wilson(0.5, 4)
    assert s["two_object"]["chance"] == 0.25 and s["colors"]["chance"] == 0.5 and s["position"]["chance"] == 0
    m = s["multi_object"]
    assert m["score"] == pytest.approx(6 / 16) and m["n"] == 16 and (m["lo"], m["hi"]) == wilson(6 / 16, 16)
    assert m["chance"] == pytest.approx((0.25 + 0 + 0 + 0.5) / 4)  # the shuffled control's overall
    assert "overall" not in s  # GenEval's overall needs all six categories
    six = summarize(rows + _rows("single_object", [1, 1, 0, 0]))["overall"]
    assert six["score"] == pytest.approx((0.5 + 0.25 + 0 + 0.75 + 1 + 0.5) / 6) and six["n"] == 24
    zero = summarize([r for c in MULTI for r in _rows(c, [0] * 4)])["multi_object"]
    assert zero["lo"] == 0 and zero["hi"] == pytest.approx(wilson(0, 16)[1]) and zero["hi"] > 0.15  # honest at 0/n
