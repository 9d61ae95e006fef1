"""The loop closes while training runs (issue 6, "Done when").

A real trainer (``python -m training.trainer``, its own process) trains on a skewed shapes world.
Meanwhile this process does what the scheduled ``evaluate-checkpoints`` deployment does: it calls
the flow's plain function (``flows.evaluate_checkpoints.evaluate``: every complete, registered,
not yet evaluated checkpoint -> EMA generation -> shapes-geneval -> ``eval_results``, then the
feedback rule -> the next weights version, CURRENT). The running trainer must adopt the new
version at its next weights check, without a restart, and its batch statistics must show it.

What an untrained model can and cannot drive. Its images score 0 in every category, so the eval
term of the rule is neutral (no value is below or above its kind's mean); the changes come from
the two terms that need no skill:
  * under-sampled notions (observed < 0.9 x target in the v0 stats window: the rare colors,
    counts and relations, whose tempered v0 target is above their natural share) are lifted;
  * the resolution schedule advances to phase 2 at ``advance_schedule_at`` (0 here, so at the first
    evaluation). That is the shift the batch statistics show unambiguously: phase 1 draws sides in
    [8, 16] px, phase 2 in [16, 32] px, and 16-px natives cannot reach phase-2 targets (upscale
    discards appear).
Lifting an *under-target* notion's target does not change what a discard-only sampler accepts
(it only ever discards *over*-target attributes), so the test checks that the trainer adopted the
new targets (its checkpointed sampler state), not that rare notions became more frequent.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

from warehouse import db
from warehouse import weights as wt

ROOT = Path(__file__).resolve().parent.parent
PHASE1 = (0.012, 0.003, 0.008, 0.016)  # side kpx: 8..16 px (patch 4: 4..16 tokens per image)
PHASE2 = (0.024, 0.006, 0.016, 0.032)  # 16..32 px: only the 32-px natives reach most targets
STEPS, SAVE_EVERY = 60, 5


def _world(root: Path) -> tuple[str, dict]:
    """Shapes-world shards + samples index (the real tar writer) and weights v0 with both phases."""
    from experiments import shapes_data as sd
    from tasks import shapes_world as sw
    lake = str(root / "lake")
    n = 160
    counts = sd.build_world(lake, str(root / "shards"), n, [(16, 16), (32, 32)],
                            sw.ShapesDistribution.skewed(), seed=0, progress=False)
    rows = sd.v0_rows(counts, n, "start", PHASE1)
    rows.append(wt.resolution_row("final", *PHASE2, "test: phase 2 at 1/32 of the paper's scale"))
    assert wt.publish(lake, rows, "test v0: tempered observed shares") == "v0000"
    return lake, counts


def _config(root: Path, lake: str) -> str:
    cfg = {
        "lake": lake,
        "model": {"name": "djepa_tiny", "tokenizer": "pixel", "patch_size": 4},
        "train": {"out": str(root / "run"), "run_id": "live", "steps": STEPS, "save_every": SAVE_EVERY,
                  "keep_last": 100, "stats_every": 2, "weights_check_every": 2, "token_budget": 256,
                  "max_image_tokens": 64, "lookahead": 8, "lr": 1e-3, "warmup": 2, "ema": 0.9,
                  "log_every": 5, "device": "cpu", "num_workers": 0},
        "schedule": {"start": dict(zip("mu sigma a b".split(), PHASE1)),
                     "final": dict(zip("mu sigma a b".split(), PHASE2))},
        "evaluate": {"out": str(root / "eval"), "prompts_per_category": 1, "steps": 2, "flow_steps": 2,
                     "size": 16, "batch_size": 6, "device": "cpu", "run_feedback": True,
                     "images_per_prompt": 1},
        # a short run: trust the stats window from 10 accepted samples; advance at the first eval
        "feedback": {"min_samples": 10, "advance_schedule_at": 0.0},
    }
    path = root / "live.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _sides(rows: list[tuple]) -> list[int]:
    """Accepted sides (px) from ``resolution`` batch_stats rows (value = side, count = n)."""
    return [int(v) for v, c in rows for _ in range(int(c))]


@pytest.mark.slow
def test_scheduled_evaluation_feeds_back_into_the_running_trainer(tmp_path):
    from djepa_t2i.config import load_config
    from flows.evaluate_checkpoints import evaluate
    from model.text_encoder import TextEncoder
    lake, _ = _world(tmp_path)
    cfg_path = _config(tmp_path, lake)
    # a scheduler's worker has its libraries imported; so does this one before training starts
    # (the first import of transformers costs ~10 s on 2 cores, as long as the whole run)
    TextEncoder.from_config(load_config(cfg_path).model).encode(["a red circle"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    log_path = tmp_path / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "training.trainer", "--config", cfg_path],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        published_while_running = []  # (version, checkpoints) of feedback runs the trainer outlived
        deadline = time.monotonic() + 300
        try:
            while proc.poll() is None:  # the "schedule": evaluate whatever is pending, again and again
                s = evaluate(lake, cfg_path, None, progress=False)
                if s.get("feedback") and proc.poll() is None:
                    published_while_running.append((s["feedback"]["weights_version"],
                                                    [e["checkpoint"] for e in s["evaluated"]]))
                assert time.monotonic() < deadline, "trainer did not finish in 300 s"
                time.sleep(0.3)
        finally:
            if proc.poll() is None:
                proc.kill()
    out = log_path.read_text()
    assert proc.returncode == 0, out[-3000:]
    evaluate(lake, cfg_path, None, progress=False)  # the next scheduled run catches the last ones

    # -- evaluation picked up each checkpoint as it appeared ------------------------------------
    steps = list(range(SAVE_EVERY, STEPS + 1, SAVE_EVERY))
    _, ck = db.query(lake, "SELECT step, weights_version FROM checkpoints_live WHERE run_id = 'live' "
                           "ORDER BY step")
    assert [s for s, _ in ck] == steps
    _, ev = db.query(lake, "SELECT step, count(*) FILTER (WHERE notion_kind = 'category' AND control IS NULL) FROM eval_results "
                           "GROUP BY step ORDER BY step")
    assert ev == [(s, 6) for s in steps]  # one image per GenEval category, every checkpoint
    assert published_while_running, f"no feedback was published while the trainer ran:\n{out[-2000:]}"

    # -- new weights versions, CURRENT at the latest, reasons that say why ---------------------
    versions = wt.versions(lake)
    assert versions[0] == "v0000" and len(versions) >= 2
    assert wt.current_version(lake) == versions[-1]
    v0 = {(r["kind"], r["value"]): r for r in wt.load(lake, "v0000")[1].to_pylist()}
    v1 = {(r["kind"], r["value"]): r for r in wt.load(lake, "v0001")[1].to_pylist()}
    src = "shapes-geneval@live-s"
    cats = {k[1]: r for k, r in v1.items() if k[0] == "category"}
    assert len(cats) == 6 and all(r["eval_score"] == 0.0 and "eval 0.00" in r["reason"] and src in r["reason"]
                                  for r in cats.values())  # every category weak: an untrained model
    res = json.loads(v1[("resolution", "start")]["params"])
    assert res["advanced_to"] == "final" and (res["mu"], res["a"], res["b"]) == (PHASE2[0], PHASE2[2], PHASE2[3])
    assert "overall eval 0.00 >= advance_schedule_at 0" in v1[("resolution", "start")]["reason"]
    lifted = {k for k, r in v1.items() if r["target_freq"] is not None
              and r["target_freq"] > v0[k]["target_freq"]}
    assert lifted, "no target rose"
    for k in lifted:  # only under-sampled notions, each with its arithmetic and its evidence
        r = v1[k]
        assert r["observed_freq"] < 0.9 * v0[k]["target_freq"], (k, r["reason"])
        assert f"observed {r['observed_freq']:.4f} < target {v0[k]['target_freq']:.4f}" in r["reason"]
        assert src in r["reason"] and (": eval " not in r["reason"] or "eval 0.00 ~ mean" in r["reason"]
                                       or "no evidence, kept" in r["reason"])
        assert r["target_freq"] <= 1.5 * v0[k]["target_freq"] + 1e-12  # bounded step
    assert lifted & {("color", "purple"), ("color", "orange"), ("count", "four"), ("spatial", "above")}

    # -- the running trainer switched without a restart ----------------------------------------
    assert out.count("resumed from") == 0 and "sampling weights v0000 -> v0001" in out
    _, bs = db.query(lake, "SELECT step, weights_version FROM batch_stats WHERE run_id = 'live' "
                           "GROUP BY ALL ORDER BY step")
    assert [s for s, _ in bs] == list(range(2, STEPS + 1, 2))  # one process, every window once
    vs = [v for _, v in bs]
    assert vs[0] == "v0000" and vs[-1] != "v0000" and vs == sorted(vs)  # switched mid-run, forward
    _, sw_rows = db.query(lake, "SELECT value FROM batch_stats WHERE kind = 'weights_switch' ORDER BY step")
    assert [v for (v,) in sw_rows][:2] == ["None->v0000", "v0000->v0001"]
    assert {v for _, v in ck} >= {"v0000", "v0001"}  # checkpoints before and after the switch
    # the sampler state in the last checkpoint holds exactly its version's targets and schedule
    last = torch.load(tmp_path / "run" / "checkpoints" / f"step_{STEPS:08d}" / "stream.pt",
                      weights_only=True)["stream"]["sampler"]
    table = wt.load(lake, last["weights_version"])[1]
    assert last["targets"] == {f"{k}:{v}": t for (k, v), t in wt.targets(table).items()}
    assert last["schedule"]["advanced_to"] == "final"

    # -- ... and its batch statistics show the shift -------------------------------------------
    def window(version_pred: str) -> tuple[list[int], Counter]:
        _, res_rows = db.query(lake, f"SELECT value, count FROM batch_stats WHERE kind = 'resolution' "
                                     f"AND {version_pred}")
        _, disc = db.query(lake, f"SELECT value, sum(count) FROM batch_stats WHERE kind = 'discard' "
                                 f"AND {version_pred} GROUP BY value")
        return _sides(res_rows), Counter({v: c for v, c in disc})
    before, disc0 = window("weights_version = 'v0000'")
    after, disc1 = window("weights_version > 'v0000'")
    assert len(before) >= 20 and len(after) >= 40, (len(before), len(after))
    # phase 1: every target <= 16 px, so every accepted side is <= 16 and no native (16 or 32 px)
    # ever needs an upscale: exact, not statistical
    assert max(before) <= 16 and disc0["upscale"] == 0
    # phase 2: sides floor(X / 4) * 4 with X ~ trunc_norm(24, 6, 16, 32) px; P(side > 16) =
    # P(X >= 20) = (Phi(4/3) - Phi(-2/3)) / (Phi(4/3) - Phi(-4/3)) = 0.803. With n >= 40 samples the
    # standard error is <= 0.063, so 0.5 is > 4.8 SE below the expectation.
    assert sum(s > 16 for s in after) / len(after) >= 0.5, Counter(after)
    assert max(after) <= 32 and disc1["upscale"] > 0  # 16-px natives now miss most targets


def test_cli_trainer_logs_progress_after_prefect_is_imported(tmp_path, capfd):
    """``t2i train`` runs the trainer in the CLI's process, where importing prefect has already
    put a WARNING-level handler on the root logger: steps, checkpoints and weights switches must
    still be logged (an operator watching the run sees the switch)."""
    import prefect  # noqa: F401  (what djepa_t2i.cli's command modules import)

    from training import trainer
    lake, _ = _world(tmp_path)
    cfg_path = _config(tmp_path, lake)
    assert trainer.main(["--config", cfg_path, "--set", "train.steps=2", "--set", "train.save_every=2",
                         "--set", "train.log_every=1"]) == 0
    out = capfd.readouterr().out
    assert "t2i.train: step 1 loss" in out and "t2i.train: step 2: checkpoint" in out
