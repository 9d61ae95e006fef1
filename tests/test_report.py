"""The report a person reads: numbers beside the plots, a curation gallery with reasons, training
exposure over time; and flow summaries as Prefect artifacts."""
import datetime as dt
import html
import re

import pytest
from PIL import Image

from tests.lake_fixtures import make_lake
from warehouse import artifacts
from warehouse import lake as lk
from report.page import build_report


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    L, rows = make_lake(root)
    scores = [{"key": r["key"], "shard": r["shard"], "filter": "aesthetic", "backend": "offline-nrq",
               "score": 2.0 if r["status"] == "rejected" else 6.5, "passed": r["status"] == "passed"} for r in rows]
    for shard in sorted({r["shard"] for r in rows}):
        lk.write_partition(L, "filter_scores", shard, [s for s in scores if s["shard"] == shard])
    lk.write_partition(L, "notions", "n", [{"key": "000000000", "notion": "red", "kind": "color"},
                                          {"key": "000000001", "notion": "red", "kind": "color"},
                                          {"key": "000000001", "notion": "circle", "kind": "shape"}])
    lk.write_partition(L, "notion_runs", "n", [{"part": "n", "n_captions": 4}])
    t0 = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    for step in (2, 4, 6):
        stats = [("notion", "color:red", 3.0), ("notion", "shape:circle", float(step)), ("accepted", "samples", 5.0),
                 ("resolution", "256", 3.0), ("resolution", "512", 2.0)]
        lk.write_partition(L, "batch_stats", f"run1-r000-s{step:08d}", [
            {"run_id": "run1", "rank": 0, "step": step, "kind": k, "value": v, "count": c,
             "created_at": t0 + dt.timedelta(minutes=step)} for k, v, c in stats])
    return L, rows


def test_report_shows_numbers_gallery_and_exposure(lake, tmp_path):
    L, rows = lake
    path = build_report(L, str(tmp_path))
    page = open(path).read()
    # the funnel table beside the funnel plot: 12 passed (0.8571 of 14), 2 rejected at aesthetic
    fig = page[page.index("<h3>filter funnel</h3>"):]
    fig = fig[: fig.index("</div>")]
    assert "curation_funnel.png" in fig and "<td>passed</td><td></td><td class='num'>12</td><td class='num'>0.8571</td>" in fig
    assert "<td>rejected</td><td>aesthetic</td><td class='num'>2</td>" in fig
    # top notions with shares in %: red in 2 of 4 captions
    assert "<td>color</td><td>red</td><td class='num'>2</td><td class='num'>50</td>" in page
    # training exposure: 9 red of 15 accepted = 60 %, circle 2+4+6 = 12 -> 80 %
    exp = page[page.index("<h3>training exposure: run1</h3>"):]
    assert "training_exposure_run1.png" in exp[:400]
    assert "<td>shape:circle</td><td class='num'>12</td><td class='num'>80</td>" in exp
    assert "<td>color:red</td><td class='num'>9</td><td class='num'>60</td>" in exp
    # the gallery: rejected pairs with their stage, passed ones with their filter scores
    gal = page[page.index("<h3>rejected at aesthetic</h3>"):]
    assert gal.count("class='tile no'") == 2 and "(no image)" in gal  # the rejected keys have no image
    passed = page[page.index("<h3>passed every stage</h3>"):]
    tiles = re.findall(r"<img src='(gallery/[^']+)'>", passed)
    assert len(tiles) == 6 and "aesthetic 6.5" in html.unescape(passed)
    for t in tiles:
        w, h = Image.open(tmp_path / t).size
        assert max(w, h) <= 150 and min(w, h) > 0
    for png in re.findall(r"<img src='([^']+\.png)'>", page):
        assert Image.open(tmp_path / png).size[0] > 300


def test_summary_markdown_has_the_flow_tables(lake):
    L, _ = lake
    md = artifacts.summary_markdown("curate-laion", L, {"n_in": 14, "n_passed": 12, "nested": {"x": 1}})
    assert md.startswith("# curate-laion\n")
    assert "| n_in | 14 |" in md and "nested" not in md
    assert "## funnel" in md and "| passed |  | 12 | 0.8571 |" in md
    assert artifacts.publish_summary("curate-laion", L, {}) is None  # outside a flow run: nothing


@pytest.mark.slow
def test_flow_publishes_artifacts(lake, tmp_path):
    from prefect import flow
    from prefect.artifacts import Artifact
    L, _ = lake
    build_report(L, str(artifacts.report_path(L).parent))

    @flow(name="notion-stats-artifact-test")
    def f():
        return artifacts.publish_summary("notion-stats", L, {"weights_version": "v0000"})

    assert f() == "notion-stats-summary"
    a = Artifact.get("notion-stats-summary")
    assert "| weights_version | v0000 |" in a.data and "| color | red | 2 | 0.5 |" in a.data
    link = Artifact.get("notion-stats-report")
    assert link.data.startswith("[HTML report](file://") and link.data.endswith("index.html)")


def test_sample_grid_shows_model_images_of_every_category(tmp_path, monkeypatch):
    """Control rows (no image) must not use up the grid, and every category gets its share: with
    3 categories x 3 prompts and 2 per category, the grid holds 6 model images, 2 of each."""
    from report import evaluation as ev
    L = str(tmp_path / "lake")
    rows = []
    for cat in ("color_attr", "colors", "single_object"):
        for i in range(3):
            img = tmp_path / f"{cat}{i}.png"
            Image.new("RGB", (8, 8), "red").save(img)
            base = {"checkpoint": "ck", "run_id": "r", "step": 1, "benchmark": "b", "category": cat,
                    "prompt_id": f"{cat}-{i}", "prompt": f"{cat} {i}", "notion": cat, "score": 1.0,
                    "image_index": 0, "notion_kind": "category"}
            rows += [{**base, "image_path": str(img)},
                     {**base, "image_path": None, "control": "shuffled_prompt"}]
    lk.write_partition(L, "eval_results", "ck-b", rows)
    shown = []
    monkeypatch.setattr(ev, "save_figure", lambda fig, outdir, name: shown.append(
        [a.get_title() for a in fig.axes if a.get_images()]) or name)
    assert len(ev.sample_grids(L, str(tmp_path / "out"))) == 1
    titles = shown[0]
    assert len(titles) == 6
    assert sorted(t.split(" ")[0] for t in titles) == ["color_attr"] * 2 + ["colors"] * 2 + ["single_object"] * 2
