"""The reduced demo: every stage of the loop runs for real, in one process, at tiny sizes."""
import pytest

from warehouse.db import query


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    from flows.demo import demo
    tmp_path = tmp_path_factory.mktemp("quick")
    return tmp_path, demo(str(tmp_path / "demo"), quick=True)


@pytest.mark.slow
def test_quick_demo_runs_the_whole_loop(quick_demo):
    from flows.demo import format_summary

    tmp_path, res = quick_demo
    lake = res["lake"]
    assert list(res["steps"]) == ["make-sample", "curate-laion", "recaption", "notion-stats", "build-shards",
                                  "train phase 1", "evaluate + feedback (phase 1)", "train phase 2",
                                  "evaluate + feedback (phase 2)", "draw check", "report"]
    # every input pair accounted exactly once
    _, [(n_in, n_keys)] = query(lake, "SELECT sum(n_in), (SELECT count(DISTINCT key) FROM pairs) FROM shard_runs")
    _, states = query(lake, "SELECT status, count(*) FROM pairs GROUP BY status")
    assert n_in == n_keys == sum(n for _, n in states) == 49  # 48 pairs + 1 URL img2dataset failed to fetch
    # notions of the shapes world are in the warehouse
    _, kinds = query(lake, "SELECT DISTINCT kind FROM notion_stats")
    assert {"color", "shape"} <= {k for (k,) in kinds}
    # both phases trained and were evaluated; feedback published a version after each evaluation
    _, ck = query(lake, "SELECT DISTINCT run_id FROM checkpoints ORDER BY run_id")
    assert [r for (r,) in ck] == ["train-phase1", "train-phase2"]
    _, ev = query(lake, "SELECT count(DISTINCT checkpoint) FROM eval_results")
    assert ev[0][0] >= 2
    _, vs = query(lake, "SELECT DISTINCT version FROM weights ORDER BY version")
    assert [v for (v,) in vs] == ["v0000", "v0001", "v0002"]
    # phase 2 trained under the feedback version published after phase 1
    _, wv = query(lake, "SELECT DISTINCT weights_version FROM batch_stats WHERE run_id = 'train-phase2'")
    assert {v for (v,) in wv} == {"v0001"}
    assert (tmp_path / "demo" / "report" / "index.html").is_file()
    # every evaluation stored its chance controls, and eval_summary carries intervals beside them
    _, ctl = query(lake, "SELECT DISTINCT control FROM eval_results WHERE control IS NOT NULL ORDER BY 1")
    assert [c for (c,) in ctl] == ["patch_noise", "shuffled_prompt", "uniform_noise"]
    _, rows = query(lake, "SELECT lo, score, hi, chance FROM eval_summary")
    assert rows and all(0 <= lo <= s <= hi <= 1 and ch is not None for lo, s, hi, ch in rows)
    # the draw check at the training side and 2x (quick: 16 and 32 px), in the report and summary
    d = res["steps"]["draw check"]["result"]
    assert [(r["size"], r["images"]) for r in d["sizes"]] == [([16, 16], 18), ([32, 32], 18)]
    assert all(0 <= r["color"] <= 1 and 0 <= r["color_shuffled"] <= 1 for r in d["sizes"])
    report = tmp_path / "demo" / "report"
    assert (report / "draws.png").is_file() and (report / "draws_2x.png").is_file()
    page = (report / "index.html").read_text()
    assert "<h2>draw check</h2>" in page and "<td>32x32</td>" in page
    text = format_summary(res)
    assert "pairs: passed=" in text and "t2i sql" in text and "does it draw?" in text
    assert "    16x16 (4 AR steps, 18 images): colour right" in text and "    32x32 (4 AR steps" in text


@pytest.mark.slow
def test_quick_demo_post_runs_sft_grpo_and_the_composition_check(quick_demo):
    """make demo-post's path on the quick demo (issue #27 item 5): tier, SFT, GRPO, evaluation."""
    from flows.demo_post import demo_post, format_summary
    tmp_path, _ = quick_demo
    res = demo_post(str(tmp_path / "demo"), quick=True)
    post = tmp_path / "demo" / "post-train"
    assert list(res["steps"]) == ["sft tier", "train sft", "grpo", "evaluate"]
    assert (post / "summary.json").is_file() and (post / "sft_tier.parquet").is_file()
    ev = res["evaluation"]
    assert list(ev) == ["phase 2", "sft", "sft + grpo"]
    assert ev["phase 2"]["checkpoint"].startswith(str(tmp_path / "demo" / "train-phase2"))
    assert ev["sft + grpo"]["checkpoint"].startswith(str(post / "grpo"))
    for e in ev.values():
        c = e["composition"]
        assert set(c) == {"two_object", "counting", "position", "color_attr", "colors", "multi_object"}
        assert all(0 <= v["lo"] <= v["score"] <= v["hi"] <= 1 and v["chance"] is not None for v in c.values())
        assert c["multi_object"]["n"] == 4 and e["colour"]["images"] == 18
    _, rows = query(res["lake"], "SELECT phase, count(*) FROM checkpoints_live WHERE phase IN ('sft', 'post-train') GROUP BY ALL ORDER BY 1")
    assert rows == [("post-train", 1), ("sft", 1)]
    _, ro = query(res["lake"], "SELECT DISTINCT category FROM rollouts WHERE split = 'train'")
    assert {c for (c,) in ro} <= {"two_object", "counting", "position", "color_attr"}
    assert "target multi-object >= 0.5:" in format_summary(res)
