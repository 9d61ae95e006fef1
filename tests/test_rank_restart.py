"""A training rank killed under torchrun with ``--max-restarts`` (issue #25 item 5): torchrun
restarts the group, the restarted ranks continue from the last complete checkpoint (no
``--resume`` given: a restart never starts over), and the run's global sample stream and losses
equal an uninterrupted run's, step for step, each step once. A run whose ranks fail for good is
one line, exit 1."""
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from _train_data import make_lake
from test_elastic_resume import _in_process, _overrides, _steps

from flows import train as train_flow
from tasks import shard_writer
from training import checkpoints as ckpts
from warehouse import db
from warehouse import weights as wt

STEPS = 8


def rank_pid(out: Path, rank: int) -> int | None:
    """The pid of the trainer process of ``rank`` writing to ``out`` (torchrun's worker)."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"training.trainer" in cmd and f"train.out={out}".encode() in cmd and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


@pytest.mark.slow
def test_a_killed_rank_restarts_from_the_last_checkpoint_on_the_same_stream(tmp_path):
    lake, _ = make_lake(tmp_path, n=96, shards=4, sizes=((32, 32), (48, 32), (24, 40), (64, 48)))
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [wt.resolution_row("start", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0")
    ref, two = tmp_path / "ref", tmp_path / "two"
    sets = {"train.steps": STEPS, "train.keep_last": STEPS}
    _in_process(_overrides(lake, str(ref), **sets))  # uninterrupted: 1 rank x 4 micro-batches a step
    want = _steps(ref)

    lines: list[str] = []
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(train_flow.run_training(
        None, _overrides(lake, str(two), **sets), nproc=2, resume=None, on_line=lines.append, max_restarts=1)))
    runner.start()
    first = two / "checkpoints" / "step_00000002" / ckpts.COMPLETE
    deadline = time.monotonic() + 240
    while not first.exists():
        assert runner.is_alive() and time.monotonic() < deadline, "\n".join(lines[-30:])
        time.sleep(0.005)
    victim = rank_pid(two, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    runner.join(timeout=300)
    assert result.get("returncode") == 0, "\n".join(lines[-40:])

    text = "\n".join(lines)
    assert "failed (exitcode: -9) local_rank: 1" in text, text[-3000:]  # torchrun saw the kill
    resumed = [ln for ln in lines if "resumed from" in ln]
    assert len(resumed) == 1, text[-3000:]  # one restart, on rank 0's log
    at = int(resumed[0].rsplit(" at step ", 1)[1].split()[0])
    assert 2 <= at < STEPS and f"step_{at:08d}" in resumed[0]  # the last complete checkpoint

    got = _steps(two)
    assert sorted(got) == list(range(1, STEPS + 1))  # each step once (the log was cut back to `at`)
    assert [got[s]["keys"] for s in got] == [want[s]["keys"] for s in got]  # the same global stream
    assert [got[s]["sizes"] for s in got] == [want[s]["sizes"] for s in got]
    for s in got:  # 2 ranks x 2 micro-batches vs 1 x 4: the same update up to the sum order
        assert got[s]["loss"] == pytest.approx(want[s]["loss"], rel=1e-5), s
    _, rows = db.query(lake, "SELECT step FROM checkpoints_live WHERE run_id = 'two' ORDER BY step")
    assert [r[0] for r in rows] == list(range(2, STEPS + 1, 2))
    _, rows = db.query(lake, "SELECT run_id, rank, step, kind, value, count(*) FROM batch_stats "
                             "GROUP BY ALL HAVING count(*) > 1")
    assert rows == []
    assert json.loads((two / "checkpoints" / f"step_{STEPS:08d}" / ckpts.COMPLETE).read_text())["world_size"] == 2


def test_a_failed_torchrun_run_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    """``t2i train --nproc N`` whose ranks fail for good (restarts used up) says so in one line,
    exit 1, naming the log that holds the ranks' own errors; the run is recorded as failed."""
    from djepa_t2i.cli import main
    lake, _ = make_lake(tmp_path, n=8, shards=1)
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=8, progress=False)
    monkeypatch.setattr(train_flow, "launch_command", lambda *a, **k: [train_flow.sys.executable, "-c",
                                                                       "import sys; print('rank 1 died'); sys.exit(3)"])
    out = tmp_path / "run"
    assert main(["train", "--nproc", "2", "--set", f"lake={lake}", "--set", f"train.out={out}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"t2i train: error: training run run exited with code 3; log: {out / 'train.log'}"
    assert "Traceback" not in "\n".join(err)
    assert "rank 1 died" in (out / "train.log").read_text()
    _, rows = db.query(lake, "SELECT status, returncode, nproc FROM train_runs WHERE run_id = 'run'")
    assert rows == [("failed", 3, 2)]
