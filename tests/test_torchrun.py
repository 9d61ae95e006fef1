"""A real 2-process torchrun (gloo, CPU) run, launched and supervised the way the train flow does."""
import json
import os

import pytest
import torch
from _train_data import make_lake

from flows import train as train_flow
from tasks import shard_writer
from training import trainer as tr
from warehouse import db
from warehouse import weights as wt


@pytest.mark.slow
def test_two_process_torchrun_trains_stats_and_one_checkpoint(tmp_path):
    lake, _ = make_lake(tmp_path, n=48, shards=4, sizes=((32, 32), (48, 32), (24, 40), (64, 48)))
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [wt.resolution_row("start", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0")
    out = str(tmp_path / "ddp")
    overrides = [f"lake={lake}", "model.patch_size=8", "model.overrides={width: 32, head_width: 32}",
                 f"train.out={out}", "train.steps=4", "train.token_budget=64", "train.max_image_tokens=32",
                 "train.lookahead=4", "schedule.start={mu: 0.032, sigma: 0.01, a: 0.016, b: 0.064}",
                 "train.save_every=4", "train.stats_every=2", "train.device=cpu", "train.log_every=2"]
    lines = []
    res = train_flow.run_training(None, overrides, nproc=2, on_line=lines.append)
    assert res["returncode"] == 0, "\n".join(lines[-30:])
    # statistics from both ranks, aggregated by the view
    _, rows = db.query(lake, "SELECT rank, count(DISTINCT step) FROM batch_stats WHERE run_id = 'ddp' GROUP BY rank ORDER BY rank")
    assert rows == [(0, 2), (1, 2)]
    _, rows = db.query(lake, "SELECT ranks, count FROM batch_stats_agg WHERE run_id='ddp' AND kind='steps' ORDER BY step")
    assert rows == [(2, 4.0), (2, 4.0)]
    # one consistent checkpoint: one model, a state file per rank, both ranks at the same step
    ck = os.path.join(out, "checkpoints", "step_00000004")
    files = sorted(os.listdir(ck))
    assert files == ["COMPLETE", "ema.safetensors", "meta.json", "model.safetensors", "rank-000.pt",
                     "rank-001.pt", "stream.pt", "trainer.pt"]
    r0, r1 = (torch.load(os.path.join(ck, f"rank-00{r}.pt"), weights_only=True) for r in (0, 1))
    assert r0["step"] == r1["step"] == 4 and not torch.equal(r0["model_rng"], r1["model_rng"])
    # one global stream: each step's keys are both ranks' micro-batches, disjoint
    steps = [json.loads(ln) for ln in open(os.path.join(out, tr.STEPS_LOG))]
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    keys = [k for s in steps for k in s["keys"]]
    assert len(keys) == len(set(keys))
    _, rows = db.query(lake, "SELECT step, world_size FROM checkpoints_live WHERE run_id='ddp'")
    assert rows == [(4, 2)]
    _, rows = db.query(lake, "SELECT status, nproc FROM train_runs WHERE run_id='ddp'")
    assert rows == [("completed", 2)]
    assert os.path.exists(os.path.join(out, "train.log"))
    assert any("checkpoint" in ln and "step_00000004" in ln for ln in lines)  # the log was streamed


def test_supervised_rank_gets_its_threads_despite_dask_env(tmp_path, monkeypatch):
    """Dask leaves OMP/MKL/OPENBLAS_NUM_THREADS=1 in the flow's process; torch takes its thread
    count from MKL_NUM_THREADS, so each must be set for the rank (else training ran on one core)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # Dask's too: 2.3x slower steps
    lines = []
    cmd = [train_flow.sys.executable, "-c", "import os, torch; print('threads', torch.get_num_threads(), "
           "os.environ.get('MALLOC_TRIM_THRESHOLD_'))"]
    assert train_flow.supervise(cmd, tmp_path / "log", lines.append, threads_per_proc=2) == 0
    assert "threads 2 None" in [line.strip() for line in lines]
