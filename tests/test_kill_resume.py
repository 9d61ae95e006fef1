"""The resume a user actually hits: a trainer *process* SIGKILLed mid-run and started again with
``--resume auto`` continues the uninterrupted run's loss curve and data stream, step by step, and
leaves the lake with no duplicated rows and no half-written checkpoint listed."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _train_data import make_lake

from djepa_t2i.config import load_config
from tasks import shard_writer
from training import checkpoints as ckpts
from training import trainer as tr
from warehouse import db
from warehouse import lake as lk
from warehouse import weights as wt

ROOT = Path(__file__).resolve().parent.parent
N, SAVE, STATS = 12, 4, 2


def overrides(lake: str, out: str, **kw) -> list[str]:
    sets = {"lake": lake, "model.name": "djepa_tiny", "model.patch_size": 8,
            "model.overrides": "{width: 32, head_width: 32}", "train.out": out, "train.steps": N,
            "train.token_budget": 64, "train.max_image_tokens": 32, "train.lookahead": 4,
            "schedule.start": "{mu: 0.032, sigma: 0.01, a: 0.016, b: 0.064}",
            "train.save_every": SAVE, "train.stats_every": STATS, "train.weights_check_every": 2,
            "train.warmup": 2, "train.lr": 1e-3, "train.ema": 0.9, "train.log_every": 100,
            "train.device": "cpu", "train.keep_last": 5}
    sets.update(kw)
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def launch(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "training.trainer", *args], cwd=ROOT, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def finish(p: subprocess.Popen, log: Path) -> None:
    assert p.wait(timeout=300) == 0, log.read_text()[-3000:]


def steps(out: Path) -> list[dict]:
    return [json.loads(ln) for ln in (out / tr.STEPS_LOG).read_text().splitlines()]


def wait_for(path: Path, p: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert p.poll() is None, f"trainer exited ({p.returncode}) before {path}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() - t0 < timeout, f"no {path} after {timeout}s"
        time.sleep(0.005)


@pytest.mark.slow
def test_sigkilled_trainer_resumes_same_losses_and_stream(tmp_path):
    lake, _ = make_lake(tmp_path, n=40, shards=2, sizes=((32, 32), (48, 32), (24, 40), (64, 48), (16, 24)))
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [{"kind": "color", "value": "red", "target_freq": 0.2},
                      wt.resolution_row("start", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0 test")
    ref, vic = tmp_path / "ref", tmp_path / "victim"

    # reference and victim run side by side (one thread each); the victim prefetches with 2 threads
    p_ref = launch(overrides(lake, str(ref)), tmp_path / "ref.log")
    p_vic = launch(overrides(lake, str(vic), **{"train.num_workers": 2}), tmp_path / "victim.log")
    # kill once step 8's checkpoint is complete and the run has gone on to write step 10's stats
    # (so the resumed run must re-write them and truncate its step log), before step 12's checkpoint
    wait_for(vic / "checkpoints" / "step_00000008" / ckpts.COMPLETE, p_vic, tmp_path / "victim.log")
    wait_for(Path(lake) / "batch_stats" / "victim-r000-s00000010.parquet", p_vic, tmp_path / "victim.log")
    os.killpg(p_vic.pid, signal.SIGKILL)
    assert p_vic.wait(timeout=30) == -signal.SIGKILL
    finish(p_ref, tmp_path / "ref.log")

    live = [p.name for p in ckpts.list_checkpoints(str(vic))]
    assert live[:2] == ["step_00000004", "step_00000008"]  # a staged .step_12.partial never counts
    resumed_from = int(live[-1].split("_")[1])
    assert resumed_from == 8, f"victim got to {live} before the kill: timing, rerun"
    killed_steps = [r["step"] for r in steps(vic)]
    assert max(killed_steps) >= 10  # the victim really ran past the checkpoint it resumes from

    p = launch([*overrides(lake, str(vic)), "--resume", "auto"], tmp_path / "resume.log")
    finish(p, tmp_path / "resume.log")
    assert f"resumed from {vic / 'checkpoints' / 'step_00000008'} at step 8" in (tmp_path / "resume.log").read_text()

    # the same loss curve and data stream, step by step: bit-identical on CPU
    a, b = steps(ref), steps(vic)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, N + 1))  # truncated, no dupes
    for ra, rb in zip(a, b):
        assert rb["keys"] == ra["keys"] and rb["sizes"] == ra["sizes"], ra["step"]
        for k in ("loss", "loss_head", "loss_pred", "grad_norm", "lr"):
            assert rb[k] == ra[k], (ra["step"], k, ra[k], rb[k])

    # no half-written checkpoint left; dirs on disk == what the lake lists as live
    ck = sorted(os.listdir(vic / "checkpoints"))
    assert ck == ["step_00000004", "step_00000008", "step_00000012"]
    _, rows = db.query(lake, "SELECT step FROM checkpoints_live WHERE run_id = 'victim' ORDER BY step")
    assert rows == [(4,), (8,), (12,)]
    # a re-written step replaced its partition: no duplicated (run, rank, step) rows
    _, rows = db.query(lake, "SELECT run_id, step, count(*) FROM checkpoints GROUP BY ALL HAVING count(*) > 1")
    assert rows == []
    _, rows = db.query(lake, "SELECT run_id, rank, step, kind, value, count(*) FROM batch_stats "
                             "GROUP BY ALL HAVING count(*) > 1")
    assert rows == []
    # and the victim's batch statistics equal the uninterrupted run's, window by window
    q = ("SELECT rank, step, kind, value, count, weights_version FROM batch_stats WHERE run_id = ? "
         "ORDER BY ALL")
    _, ra = db.query(lake, q, ["ref"])
    _, rb = db.query(lake, q, ["victim"])
    assert len(ra) > 0 and rb == ra


CAPTIONS = ("a red circle", "a blue square drawn in the middle of a large empty canvas under soft morning light",
            "two", "a green triangle on a plain white background")


def _fit(args: list[str], resume: str | None = None) -> list[dict]:
    t = tr.Trainer(load_config(None, [a for a in args if a != "--set"]), resume=resume)
    try:
        return t.fit()
    finally:
        t.close()


def test_resume_is_bit_exact_from_several_kill_points(tmp_path):
    """Every resumed step equals the uninterrupted run's, bit for bit, from a checkpoint early,
    mid and late in the run (a fresh Trainer per resume: empty caches, state only from the
    checkpoint, as after a SIGKILL; the test above kills a real process at one point)."""
    lake, keys = make_lake(tmp_path, n=40, shards=2, sizes=((32, 32), (48, 32), (24, 40), (64, 48), (16, 24)))
    # few captions of very different lengths: each recurs beside different companions, so states
    # that depended on the batch a caption was first encoded in would show
    lk.write_partition(lake, "captions", "test", [{"key": k, "caption": CAPTIONS[i % len(CAPTIONS)], "source": "alt",
                                                   "version": "alt-test"} for i, k in enumerate(keys)])
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [{"kind": "color", "value": "red", "target_freq": 0.2},
                      wt.resolution_row("start", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0 test")
    ref = tmp_path / "ref"
    every = {"train.save_every": 2, "train.keep_last": N}
    a = _fit(overrides(lake, str(ref), **every, **{"train.num_workers": 2}))
    assert [r["step"] for r in a] == list(range(1, N + 1))
    for k in (2, 6, 10):
        ck = ref / "checkpoints" / f"step_{k:08d}"
        b = _fit(overrides(lake, str(tmp_path / f"resumed-{k}"), **every), resume=str(ck))
        assert [r["step"] for r in b] == list(range(k + 1, N + 1))
        for ra, rb in zip(a[k:], b):
            assert (rb["keys"], rb["sizes"]) == (ra["keys"], ra["sizes"]), (k, ra["step"])
            for f in ("loss", "loss_head", "loss_pred", "grad_norm", "lr"):
                assert rb[f] == ra[f], (k, ra["step"], f, ra[f], rb[f])
