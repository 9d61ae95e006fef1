import math
import os

import pytest
import torch
from _train_data import make_lake

from djepa_t2i.config import ConfigError, load_config
from tasks import shard_writer
from training import checkpoints as ckpts
from training import trainer as tr
from warehouse import db
from warehouse import weights as wt


def tiny_cfg(lake, out, **kw):
    sets = {"lake": lake, "model.name": "djepa_tiny", "model.patch_size": 8, "model.overrides": "{width: 32, head_width: 32}",
            "train.out": out, "train.steps": 6, "train.token_budget": 64, "train.max_image_tokens": 32,
            "train.lookahead": 4, "schedule.start": "{mu: 0.032, sigma: 0.01, a: 0.016, b: 0.064}",
            "train.save_every": 3, "train.stats_every": 2, "train.weights_check_every": 2,
            "train.warmup": 2, "train.lr": 1e-3, "train.ema": 0.9, "train.log_every": 100, "train.device": "cpu"}
    sets.update(kw)
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    lake, _ = make_lake(root, n=40, shards=2, sizes=((32, 32), (48, 32), (24, 40), (64, 48), (16, 24)))
    shard_writer.build(lake, str(root / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [{"kind": "color", "value": "red", "target_freq": 0.2},
                      wt.resolution_row("start", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0 test")
    return root, lake


def run(cfg, resume=None, steps=None):
    t = tr.Trainer(cfg, resume=resume)
    try:
        return t, t.fit(steps)
    finally:
        t.close()


def test_exact_resume_same_losses_and_samples(data):
    root, lake = data
    out_a = str(root / "run_a")
    a, hist = run(tiny_cfg(lake, out_a, **{"train.num_workers": 2}))  # prefetching decode threads
    assert [h["step"] for h in hist] == list(range(1, 7))
    for h in hist:  # never upscaled, stride multiples
        assert all(hh % 8 == 0 and ww % 8 == 0 for hh, ww in h["sizes"]) and h["tokens"] <= 64
    ck = os.path.join(out_a, "checkpoints", "step_00000003")
    assert sorted(os.listdir(ck)) == ["COMPLETE", "ema.safetensors", "meta.json", "model.safetensors",
                                      "rank-000.pt", "stream.pt", "trainer.pt"]
    st = torch.load(os.path.join(ck, "stream.pt"), weights_only=True)  # plain tensors and dicts
    assert st["stream"]["sampler"]["weights_version"] == "v0000" and st["world_size"] == 1
    out_b = str(root / "run_b")
    b, hist_b = run(tiny_cfg(lake, out_b), resume=ck)  # no threads: the stream must not depend on them
    assert [h["step"] for h in hist_b] == [4, 5, 6]
    assert [h["keys"] for h in hist_b] == [h["keys"] for h in hist[3:]]
    assert [h["loss"] for h in hist_b] == [h["loss"] for h in hist[3:]]  # bit-identical
    # the checkpoint loads as a model checkpoint (evaluation's path) and is registered in the lake
    from model.checkpoint import load_model
    m, tok, _, meta = load_model(ck, ema=True)
    assert meta["step"] == 3 and meta["weights_version"] == "v0000" and tok.patch_size == 8
    _, rows = db.query(lake, "SELECT step, world_size FROM checkpoints_live WHERE run_id = 'run_a' ORDER BY step")
    assert rows == [(3, 1), (6, 1)]


def test_stats_keep_last_and_weights_switch_midrun(data):
    root, lake = data
    out = str(root / "run_c")
    cfg = tiny_cfg(lake, out, **{"train.steps": 8, "train.save_every": 2, "train.keep_last": 2})
    t = tr.Trainer(cfg)
    switched = []

    def publish_at_3(rec):
        if rec["step"] == 3:
            switched.append(wt.publish(lake, [{"kind": "color", "value": "blue", "target_freq": 0.1}], why="test fb"))

    try:
        t.fit(on_step=publish_at_3)
    finally:
        t.close()
    assert t.sampler.weights_version == switched[0] == "v0001"
    assert t.sampler.targets == {"color:blue": 0.1}
    # published after step 3, adopted at the next check (after step 4: within N=2 steps) and
    # recorded in the batch_stats window that contains it (steps 5-6)
    assert t.switches == [(4, "v0000", "v0001")]
    _, rows = db.query(lake, "SELECT step, value FROM batch_stats WHERE run_id = 'run_c' AND kind = 'weights_switch' ORDER BY step")
    assert rows[-1] == (6, "v0000->v0001")
    _, rows = db.query(lake, "SELECT DISTINCT weights_version FROM batch_stats WHERE run_id='run_c' AND step >= 6")
    assert rows == [("v0001",)]
    # keep_last: only the last two checkpoint dirs remain; the lake view agrees
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["step_00000006", "step_00000008"]
    _, rows = db.query(lake, "SELECT step FROM checkpoints_live WHERE run_id = 'run_c' ORDER BY step")
    assert rows == [(6,), (8,)]
    _, rows = db.query(lake, "SELECT kind, sum(count) FROM batch_stats_agg WHERE run_id = 'run_c' "
                             "AND kind IN ('steps', 'images') GROUP BY kind ORDER BY kind")
    assert dict(rows)["steps"] == 8 and dict(rows)["images"] > 8


def test_resume_auto_and_world_size_mismatch(data, monkeypatch):
    root, lake = data
    out = str(root / "run_a")  # from the first test (module-scoped data)
    if not ckpts.list_checkpoints(out):
        pytest.skip("needs test_exact_resume first")
    assert ckpts.resolve_resume("auto", out).name == "step_00000006"
    assert ckpts.resolve_resume("auto", str(root / "nothing")) is None
    with pytest.raises(FileNotFoundError, match="COMPLETE"):
        ckpts.resolve_resume(str(root), out)


def test_the_papers_lr_and_weight_decay_schedules():
    """Phase 1: cosine 1e-5 -> 1e-6 after warm-up (end = 0.1 of the peak); phase 2: constant.
    D-JEPA App. B: weight decay 0.02 -> 0.2, never on the prediction MLP or the token head."""
    assert tr.lr_factor(0, 10, 100, "cosine") == 0.1 and tr.lr_factor(100, 10, 100, "cosine") == 0.0
    assert tr.lr_factor(55, 10, 100, "constant") == 1.0
    assert tr.lr_factor(100, 10, 100, "cosine", end=0.1) == pytest.approx(0.1)
    assert tr.lr_factor(55, 10, 100, "cosine", end=0.1) == pytest.approx(0.55)  # halfway
    assert tr.weight_decay_at(0, 100, 0.02, 0.2) == 0.02
    assert tr.weight_decay_at(50, 100, 0.02, 0.2) == pytest.approx(0.11)
    assert tr.weight_decay_at(500, 100, 0.02, 0.2) == pytest.approx(0.2)
    assert tr.weight_decay_at(50, 100, 0.02, None) == 0.02
    from model.djepa import djepa_tiny
    m = djepa_tiny(token_dim=48, text_dim=16)
    decay, keep = tr.param_groups(m, 0.02)
    ids = {id(p) for p in keep["params"]}
    assert ids == {id(p) for p in m.pred_proj.parameters()} | {id(p) for p in m.head.parameters()}
    assert keep["weight_decay"] == 0.0 and decay["ramp"] and not keep["ramp"]
    trainable = [p for p in m.parameters() if p.requires_grad]
    assert len(decay["params"]) + len(keep["params"]) == len(trainable)
    assert not ({id(p) for p in m.target.parameters()} & ({id(p) for p in decay["params"]} | ids))


def test_weight_decay_ramps_in_a_run_and_phase_one_crops(data):
    root, lake = data
    cfg = tiny_cfg(lake, str(root / "run_wd"), **{"train.weight_decay_end": 0.2, "train.steps": 4,
                                                  "train.fixed_side": 16, "train.save_every": 100})
    t = tr.Trainer(cfg)
    try:
        hist = t.fit(4)
        groups = {g["ramp"]: g["weight_decay"] for g in t.opt.param_groups}
    finally:
        t.close()
    assert groups[False] == 0.0 and groups[True] == pytest.approx(0.02 + 0.18 * 3 / 4)
    assert all(s == (16, 16) for h in hist for s in h["sizes"])  # phase 1: fixed square crops


def test_step_leaves_losses_on_the_device_until_flush(data):
    """Issue #15: a step reads nothing back from the device; ``flush`` reads every pending step's
    losses and grad norm at once and writes them to the step log, and ``train.compile`` is off on
    CPU by default."""
    import json
    root, lake = data
    out = root / "run_flush"
    t = tr.Trainer(tiny_cfg(lake, str(out), **{"train.save_every": 100}))
    try:
        assert not tr.compile_enabled(t.cfg.train.compile, t.device)
        recs = [t.train_step(), t.train_step()]
        assert all(isinstance(r[k], torch.Tensor) for r in recs for k in ("loss", "loss_head", "grad_norm"))
        assert not (out / tr.STEPS_LOG).exists() or (out / tr.STEPS_LOG).read_text() == ""
        t.flush()
    finally:
        t.close()
    logged = [json.loads(ln) for ln in (out / tr.STEPS_LOG).read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2] and t.pending == []
    assert all(isinstance(r[k], float) and math.isfinite(r[k]) for r in recs for k in ("loss", "grad_norm"))
    assert [r["loss"] for r in logged] == [r["loss"] for r in recs] and t.last_loss == recs[-1]["loss"]
    assert t.window["loss"]["loss"] == recs[0]["loss"] + recs[1]["loss"]


def test_global_batch_accumulates_micro_batches_and_resumes_exactly(data):
    """#23.2: ``train.global_batch`` of 128 image tokens on one rank with a 64-token budget is two
    micro-batches per optimizer step; a resume mid-run repeats the same steps bit for bit."""
    root, lake = data
    out = str(root / "run_accum")
    a, hist = run(tiny_cfg(lake, out, **{"train.global_batch": 128, "train.steps": 4, "train.save_every": 2}))
    assert a.accum == 2 and [h["step"] for h in hist] == [1, 2, 3, 4]
    _, alone = run(tiny_cfg(lake, str(root / "run_micro"), **{"train.steps": 8, "train.save_every": 8}))
    # each step consumed the samples of two micro-batches of the unaccumulated stream
    assert [h["keys"] for h in hist] == [alone[i]["keys"] + alone[i + 1]["keys"] for i in range(0, 8, 2)]
    assert all(h["tokens"] <= 128 for h in hist)
    _, again = run(tiny_cfg(lake, str(root / "run_accum_b"), **{"train.global_batch": 128, "train.steps": 4}),
                   resume=os.path.join(out, "checkpoints", "step_00000002"))
    assert [(h["keys"], h["loss"]) for h in again] == [(h["keys"], h["loss"]) for h in hist[2:]]
    with pytest.raises(ConfigError, match="use a multiple of 64"):
        tr.Trainer(tiny_cfg(lake, str(root / "run_bad"), **{"train.global_batch": 100}))


def test_a_weights_switch_does_not_depend_on_prefetching(tmp_path):
    """Decode threads decide the next step ahead; when the sampling weights or the resolution
    stage switch, that step is decided again under the new ones, as a run without threads (and
    a run resumed there) decides it: the stream never depends on ``train.num_workers``."""
    lake, _ = make_lake(tmp_path, n=40, shards=2, sizes=((32, 32), (48, 32), (24, 40), (64, 48), (16, 24)))
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [wt.resolution_row("start", 0.024, 0.004, 0.016, 0.032, "small"),
                      wt.resolution_row("final", 0.048, 0.004, 0.040, 0.064, "large")], why="v0 test")
    runs = {}
    for workers in (0, 2):
        cfg = tiny_cfg(lake, str(tmp_path / f"w{workers}"), **{
            "train.num_workers": workers, "train.final_schedule_at": 3, "train.weights_check_every": 1,
            "train.steps": 5, "train.save_every": 100})
        t, hist = run(cfg)
        runs[workers] = [(h["keys"], h["sizes"]) for h in hist]
        assert t.switches == [(3, "v0000", "v0000")]
    assert runs[2] == runs[0]
    side = [max(max(s) for s in sizes) for _, sizes in runs[0]]
    assert max(side[:3]) <= 32 < min(side[3:])  # steps 4-5 drew from the final schedule
