"""The reduced demo: every stage of the loop runs for real, in one process, at tiny sizes."""
import pytest

from warehouse.db import query


@pytest.mark.slow
def test_quick_demo_runs_the_whole_loop(tmp_path):
    from flows.demo import demo, format_summary

    res = demo(str(tmp_path / "demo"), quick=True)
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
