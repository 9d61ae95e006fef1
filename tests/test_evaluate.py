import datetime as dt
import json
import os

import numpy as np
import pytest
from PIL import Image

from djepa_t2i.config import load_config
from tasks import shapes_world as sw
from training import evaluate as ce
from warehouse import db
from warehouse import lake as lk

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _register(lake, run_id, step, path, deleted=False, minutes=0):
    lk.write_partition(lake, "checkpoints", f"{run_id}-s{step:08d}" + ("-deleted" if deleted else ""), [{
        "run_id": run_id, "step": step, "path": str(path), "phase": "phase1", "weights_version": "v0000",
        "created_at": NOW + dt.timedelta(minutes=minutes), "deleted": deleted}])


def _fake_ckpt(root, step, complete=True):
    d = root / f"step_{step:08d}"
    d.mkdir(parents=True)
    (d / "meta.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"")
    if complete:
        (d / "COMPLETE").write_text("{}")
    return d


def ground_truth(jobs):
    return [sw.render(sw.Scene.from_json(j["scene"])) for j in jobs]


def blank(jobs):
    return [Image.new("RGB", (j["scene"]["width"], j["scene"]["height"]), sw.BACKGROUND) for j in jobs]


def _cfg(tmp_path, *extra):
    return load_config(None, [f"evaluate.out={tmp_path / 'eval'}", "evaluate.prompts_per_category=3",
                              "evaluate.images_per_prompt=2", "evaluate.batch_size=4", *extra])


def test_pending_skips_incomplete_deleted_and_evaluated(tmp_path):
    lake = str(tmp_path / "lake")
    root = tmp_path / "ckpts"
    _register(lake, "r1", 100, _fake_ckpt(root, 100))
    _register(lake, "r1", 200, _fake_ckpt(root, 200, complete=False))  # half-written
    _register(lake, "r1", 300, root / "step_00000300")  # registered, directory gone
    _register(lake, "r1", 50, _fake_ckpt(root, 50))
    _register(lake, "r1", 50, root / "step_00000050", deleted=True, minutes=5)  # pruned
    todo, skipped = ce.pending_checkpoints(lake, "shapes-geneval")
    assert [r["step"] for r in todo] == [100]
    why = {r["step"]: r["why"] for r in skipped}
    assert set(why) == {200, 300} and all("incomplete" in w for w in why.values())
    cfg = _cfg(tmp_path)
    ce.evaluate_checkpoint(lake, todo[0], cfg.evaluate, ground_truth, progress=False)
    todo, skipped = ce.pending_checkpoints(lake, "shapes-geneval")
    assert todo == [] and {r["step"]: r["why"] for r in skipped}[100] == "already evaluated"
    assert [r["step"] for r in ce.pending_checkpoints(lake, "geneval")[0]] == [100]


def test_ground_truth_generator_scores_one_and_rows_land_in_the_lake(tmp_path):
    lake = str(tmp_path / "lake")
    cfg = _cfg(tmp_path)
    ck = {"run_id": "r1", "step": 7, "path": "unused", "weights_version": "v0003"}
    s = ce.evaluate_checkpoint(lake, ck, cfg.evaluate, ground_truth, progress=False)
    assert s["summary"] == {c: 1.0 for c in (*sw.CATEGORIES, "overall")}
    assert s["images"] == 6 * 3 * 2
    t = lk.read_table(lake, "eval_results", parts=["r1-s00000007-shapes-geneval"]).to_pylist()
    assert len(t) == s["rows"]
    cat_rows = [r for r in t if r["notion_kind"] == "category" and r["control"] is None]
    assert len(cat_rows) == 36 and {r["image_index"] for r in cat_rows} == {0, 1}
    # three chance controls per image: noise never passes; the ground truth scored against a
    # shuffled prompt of its category passes only by coincidence
    ctl = [r for r in t if r["control"] is not None and r["notion_kind"] == "category"]
    assert len(ctl) == 3 * 36
    by = {c: [r["score"] for r in ctl if r["control"] == c] for c in ("uniform_noise", "patch_noise",
                                                                      "shuffled_prompt")}
    assert sum(by["uniform_noise"]) == sum(by["patch_noise"]) == 0
    assert sum(by["shuffled_prompt"]) / 36 < 0.5
    assert s["controls"]["uniform_noise"] == 0.0
    assert len({r["seed"] for r in cat_rows}) == 36
    for r in cat_rows:  # every image saved under its prompt id
        assert r["image_path"].endswith(f"{r['prompt_id']}_{r['image_index']}.png")
        assert os.path.exists(r["image_path"])
    assert all(r["weights_version"] == "v0003" and r["backend"] == "shapes-segmentation" for r in t)
    cols, rows = db.query(lake, "SELECT category, score, n_images FROM eval_summary ORDER BY category")
    assert rows == sorted([(c, 1.0, 6) for c in sw.CATEGORIES] + [("overall", 1.0, 36)])
    _, ci = db.query(lake, "SELECT lo, hi, chance FROM eval_summary WHERE category = 'colors'")
    assert ci[0][0] == pytest.approx(0.6097, abs=1e-3) and ci[0][1] == 1.0  # Wilson, 6 of 6
    assert 0 <= ci[0][2] < 1
    cols, rows = db.query(lake, "SELECT notion_kind, count(*) FROM eval_notion_scores GROUP BY 1 ORDER BY 1")
    assert {k for k, _ in rows} == {"color", "count", "shape", "spatial"}
    # re-running replaces the partition: no duplicates
    ce.evaluate_checkpoint(lake, ck, cfg.evaluate, ground_truth, progress=False)
    assert lk.read_table(lake, "eval_results").num_rows == len(t)


def test_shuffled_prompt_control_writes_per_notion_chance_rows(tmp_path):
    """Issue #16: per notion X, the images made for a prompt that did NOT name X, scored against a
    deranged prompt that does: X's chance. The category rows (eval_summary, eval_controls) keep
    one row per image and control."""
    lake = str(tmp_path / "lake")
    cfg = _cfg(tmp_path)
    ce.evaluate_checkpoint(lake, {"run_id": "r1", "step": 7, "path": ""}, cfg.evaluate, ground_truth,
                           progress=False)
    t = lk.read_table(lake, "eval_results").to_pylist()
    notions = {p["id"]: set(p["notions"]) for p in ce.benchmark_prompts(cfg.evaluate)}
    source = {r["seed"]: r["prompt_id"] for r in t if r["control"] is None and r["notion_kind"] == "category"}
    shuffled = {r["seed"]: r for r in t if r["control"] == "shuffled_prompt" and r["notion_kind"] == "category"}
    chance = [r for r in t if r["control"] is not None and r["notion_kind"] != "category"]
    assert {r["control"] for r in chance} == {"shuffled_prompt"}
    assert len(chance) == sum(len(notions[r["prompt_id"]] - notions[source[seed]])
                              for seed, r in shuffled.items()) > 36
    for r in chance:  # a notion of the deranged prompt, not of the image's own; the image's score
        name = f"{r['notion_kind']}={r['notion']}"
        assert name in notions[r["prompt_id"]] and name not in notions[source[r["seed"]]]
        assert r["score"] == shuffled[r["seed"]]["score"]
    _, ctl = db.query(lake, "SELECT control, count(*), sum(n_images) FROM eval_controls GROUP BY 1 ORDER BY 1")
    assert ctl == [(c, 6, 36) for c in ("patch_noise", "shuffled_prompt", "uniform_noise")]
    _, rows = db.query(lake, "SELECT notion_kind, notion, chance, chance_n FROM eval_notion_scores")
    got = {(k, n): (c, cn) for k, n, c, cn in rows}
    want: dict[tuple[str, str], list[float]] = {}
    for r in chance:
        want.setdefault((r["notion_kind"], r["notion"]), []).append(r["score"])
    assert set(want) <= set(got)
    for key, scores in want.items():
        assert got[key] == (pytest.approx(sum(scores) / len(scores)), len(scores))
    assert all(got[k] == (None, None) for k in set(got) - set(want))


def test_blank_generator_scores_zero(tmp_path):
    lake = str(tmp_path / "lake")
    s = ce.evaluate_checkpoint(lake, {"run_id": "r", "step": 1, "path": ""}, _cfg(tmp_path).evaluate,
                               blank, progress=False)
    assert s["summary"]["overall"] == 0.0
    with pytest.raises(ValueError, match="returned 1 images for 4"):
        ce.evaluate_checkpoint(lake, {"run_id": "r", "step": 2, "path": ""}, _cfg(tmp_path).evaluate,
                               lambda jobs: blank(jobs)[:1], progress=False)
    assert not lk.has_partition(lake, "eval_results", "r-s00000002-shapes-geneval")


def test_geneval_benchmark_needs_metadata(tmp_path):
    with pytest.raises(ValueError, match="evaluate.metadata"):
        ce.benchmark_prompts(_cfg(tmp_path, "evaluate.benchmark=geneval").evaluate)


def _tiny_checkpoint(path):
    import torch
    from model.checkpoint import save_model
    from model.djepa import djepa_tiny
    from model.tokenizers import PixelTokenizer
    torch.manual_seed(0)
    tok = PixelTokenizer(8)
    m = djepa_tiny(token_dim=tok.token_dim, text_dim=384)
    m.tokenizer = tok
    ema = {k: v.detach().clone() for k, v in m.named_parameters()}
    save_model(str(path), m, ema, {"step": 3, "run_id": "tiny"})
    (path / "COMPLETE").write_text(json.dumps({"step": 3}))


@pytest.mark.slow
def test_tiny_random_checkpoint_end_to_end(tmp_path):
    """A randomly initialised model through load_model(ema=True) -> generate -> score -> lake."""
    from flows.evaluate_checkpoints import evaluate
    lake = str(tmp_path / "lake")
    ck = tmp_path / "ckpts" / "step_00000003"
    _tiny_checkpoint(ck)
    _register(lake, "tiny", 3, ck)
    over = [f"evaluate.out={tmp_path / 'eval'}", "evaluate.prompts_per_category=1",
            "evaluate.steps=2", "evaluate.flow_steps=2", "evaluate.size=32", "evaluate.batch_size=6",
            "evaluate.run_feedback=false", "evaluate.device=cpu", "evaluate.images_per_prompt=1"]
    s = evaluate(lake, None, over, progress=False)
    assert [e["checkpoint"] for e in s["evaluated"]] == ["tiny-s00000003"]
    t = lk.read_table(lake, "eval_results").to_pylist()
    cats = [r for r in t if r["notion_kind"] == "category" and r["control"] is None]
    assert len(cats) == 6 and {r["category"] for r in cats} == set(sw.CATEGORIES)
    assert all(0.0 <= r["score"] <= 1.0 for r in t)
    img = np.asarray(Image.open(cats[0]["image_path"]))
    assert img.shape == (32, 32, 3)
    first = {r["prompt_id"]: open(r["image_path"], "rb").read() for r in cats}
    # determinism: a second evaluation of the same checkpoint writes identical images
    lk.delete_partition(lake, "eval_results", "tiny-s00000003-shapes-geneval")
    evaluate(lake, None, over, progress=False)
    again = {r["prompt_id"]: open(r["image_path"], "rb").read()
             for r in lk.read_table(lake, "eval_results").to_pylist() if r["notion_kind"] == "category" and r["control"] is None}
    assert again == first
    assert evaluate(lake, None, over, progress=False)["evaluated"] == []  # nothing pending


def test_report_plots(tmp_path):
    from warehouse import weights as wt
    from report import evaluation
    lake = str(tmp_path / "lake")
    assert evaluation.render(lake, str(tmp_path / "empty")) == []
    cfg = _cfg(tmp_path)
    for step, fn in ((1, blank), (2, ground_truth)):
        ce.evaluate_checkpoint(lake, {"run_id": "r", "step": step, "path": ""}, cfg.evaluate, fn, progress=False)
    wt.publish(lake, [{"kind": "color", "value": "red", "target_freq": 0.2}], "v0")
    wt.publish(lake, [{"kind": "color", "value": "red", "target_freq": 0.3}], "v1")
    figs = evaluation.render(lake, str(tmp_path / "report"))
    titles = [t for t, _ in figs]
    assert titles[0] == "shapes-geneval: score per category across checkpoints"
    assert "shapes-geneval: per-notion scores at r-s00000002" in titles
    assert sum(t.startswith("samples @") for t in titles) == 2
    assert titles[-1] == "sampling weights: target frequency per version"
    for _, p in figs:
        assert Image.open(p).size[0] > 100


def test_a_damaged_or_failing_checkpoint_does_not_stop_the_others(tmp_path):
    """A truncated checkpoint is skipped with the bad file named; one whose weights fail to load
    is recorded as failed with the reason; the good one is still evaluated."""
    import torch
    from safetensors.torch import load_file, save_file

    from training import checkpoints as ckpts
    lake, root = str(tmp_path / "lake"), tmp_path / "ckpts"
    good = _fake_ckpt(root, 100)
    save_file({"w": torch.zeros(4)}, str(good / "model.safetensors"))
    stage = ckpts.stage_dir(root / "step_00000200")
    stage.mkdir(parents=True)
    save_file({"w": torch.zeros(64)}, str(stage / "model.safetensors"))
    (stage / "meta.json").write_text("{}")
    ckpts.commit(stage, root / "step_00000200", 200, 1)
    cut = root / "step_00000200" / "model.safetensors"
    cut.write_bytes(cut.read_bytes()[:-10])
    bad = _fake_ckpt(root, 300)
    (bad / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")  # legacy marker, no sizes
    for step in (100, 200, 300):
        _register(lake, "r1", step, root / f"step_{step:08d}")

    def generate_fn_for(ck):
        load_file(os.path.join(ck["path"], "model.safetensors"))  # what loading a checkpoint does first
        return ground_truth

    out = ce.evaluate_pending(lake, _cfg(tmp_path).evaluate, generate_fn_for, progress=False)
    assert len(out["evaluated"]) == 1
    assert [f["checkpoint"] for f in out["failed"]] == ["r1-s00000300"]
    assert out["failed"][0]["why"].startswith("SafetensorError")
    skipped = {s["checkpoint"]: s["why"] for s in out["skipped"]}
    assert skipped["r1-s00000200"].endswith("model.safetensors: 318 bytes, 328 recorded (truncated or overwritten)")
