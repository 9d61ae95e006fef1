"""Lost processes mid-flow on a real Prefect server (issue #25 item 5).

A server (SQLite under a temporary PREFECT_HOME, what ``t2i serve start`` runs by default) with the
``crash-lost-flow-runs`` automation ``t2i serve start`` creates (djepa_t2i/serve/stack.py), and a
process worker, stood up with the functions ``make serve`` uses. Three losses of a
``curate-laion/default`` run: its worker SIGKILLed with its whole process tree; the server and
the worker SIGKILLed together, the server then restarted on the same database; the server
restarted mid-run. Each run ends in a final state (Crashed where nothing could report it, not
"Running" forever); the deployment's rerun completes and the lake holds every pair of the sample
once, counted by key. Flow runs send a heartbeat every 30 s (Prefect's shortest); the automation
here waits 45 s after the last one (``t2i serve``: 90 s), so a lost run is marked Crashed 15-50 s
after it was lost.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_deployments import TERMINAL, Stack, _free_port

from djepa_t2i.serve import processes
from djepa_t2i.serve import stack as prefect_stack
from warehouse import db
from warehouse import lake as lk

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
LOST_AFTER = prefect_stack.LOST_AFTER_MIN  # 45 s: the shortest window `t2i serve start --lost-after` takes
DEPLOYMENT = "curate-laion/default"


class LostStack(Stack):
    """The stack of tests/test_deployments.py, with its server and worker restartable."""

    def __init__(self, url: str, env: dict, logs: Path, tmp: Path, port: int):
        super().__init__(url, env, logs, tmp, server=0)
        self.port, self.worker = port, None

    def start_server(self) -> None:
        self.server = prefect_stack.start_server(self.port, self.env, self.logs / "server.log")
        try:
            prefect_stack.wait_healthy(self.url, timeout=240, pid=self.server)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(f"{e}\n{self.log_tail()}") from None

    def start_worker(self) -> None:
        self.stop_worker()  # one a failed test left running would take the next test's runs
        self.worker = prefect_stack.start_worker(prefect_stack.POOL, self.env, self.logs / "worker.log")

    def stop_worker(self) -> None:
        if self.worker is not None:
            processes.stop_group(self.worker.pid)
            self.worker.wait(timeout=5)
            self.worker = None

    def submit(self, parameters: dict) -> str:
        dep = self.deployment(DEPLOYMENT)
        return self.api("POST", f"/deployments/{dep['id']}/create_flow_run", json={"parameters": parameters})["id"]

    def wait(self, run_id: str, until: set[str], timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fr = self.api("GET", f"/flow_runs/{run_id}")
            if fr["state_type"] in until:
                return fr
            time.sleep(1)
        raise AssertionError(f"flow run {run_id} still {fr['state_type']} after {timeout:.0f}s\n{self.log_tail()}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lost-processes")
    logs = tmp / "logs"
    logs.mkdir()
    port = _free_port()
    url = prefect_stack.api_url(port)
    env = prefect_stack.stack_env(url, tmp / "home", state=tmp / "state" / "serve")
    env.update(PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_LOGGING_LEVEL="INFO", PREFECT_SERVER_LOGGING_LEVEL="INFO",
               T2I_STATE_DIR=str(tmp / "state"), OMP_NUM_THREADS="1")
    s = LostStack(url, env, logs, tmp, port)
    s.start_server()
    try:
        prefect_stack.create_pool(prefect_stack.POOL, env)
        prefect_stack.deploy(env, names=[DEPLOYMENT])
        prefect_stack.crash_lost_runs(url, env, within=LOST_AFTER)
        yield s
    finally:
        s.stop_worker()
        prefect_stack.stop_server(env)


def sample(root: Path) -> tuple[str, int]:
    """An img2dataset sample of 12 shards, and its rows (img2dataset's failed URLs included)."""
    out = root / "sample"
    subprocess.run([sys.executable, "-m", "djepa_t2i.cli", "make-sample", str(out), "--n", "96",
                    "--per-shard", "8"], check=True, cwd=ROOT, capture_output=True)
    return str(out), sum(pq.read_table(p).num_rows for p in out.glob("*.parquet"))


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (the worker, its flow-run process and Dask's)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        f = processes._stat(stat)
        if f and f[0] != "Z":
            children.setdefault(int(f[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def wait_for_shards(lake: str, n: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(lk.partitions(lake, "shard_runs")) < n:
        assert time.monotonic() < deadline, f"fewer than {n} shards curated after {timeout:.0f}s"
        time.sleep(0.2)


def assert_every_pair_once(lake: str, rows: int) -> None:
    _, [(total, keys)] = db.query(lake, "SELECT count(*), count(DISTINCT key) FROM pairs")
    assert total == keys == rows
    _, [(shards, n_in)] = db.query(lake, "SELECT count(*), sum(n_in) FROM shard_runs")
    assert (shards, n_in) == (12, rows)


def start_run(stack, name: str) -> tuple[dict, str, int, str]:
    """A worker, a ``curate-laion/default`` run of a 12-shard sample, its first shard curated:
    (parameters, lake, rows of the sample, flow run id)."""
    src, rows = sample(stack.tmp / name)
    lake = str(stack.tmp / name / "lake")
    params = {"input_dir": src, "lake": lake, "overrides": ["curate.workers=1"]}
    stack.start_worker()
    run = stack.submit(params)
    wait_for_shards(lake, 1)
    return params, lake, rows, run


def assert_crashed_by_the_automation(stack, run: str, lost_at: float) -> None:
    fr = stack.wait(run, TERMINAL, timeout=LOST_AFTER + 60)  # a heartbeat is at most 30 s old
    assert fr["state_type"] == "CRASHED", fr["state"]
    assert f"no heartbeat for {LOST_AFTER} s" in fr["state"]["message"], fr["state"]["message"]
    assert time.monotonic() - lost_at > LOST_AFTER - 30 - 1  # not before a heartbeat was missed


def assert_the_rerun_completes(stack, params: dict, lake: str, rows: int) -> None:
    if stack.worker is None:
        stack.start_worker()
    again = stack.wait(stack.submit(params), TERMINAL, timeout=240)
    assert again["state_type"] == "COMPLETED", f"{again['state']['message']}\n{stack.log_tail()}"
    assert_every_pair_once(lake, rows)
    stack.stop_worker()


def test_a_killed_worker_crashes_its_run_and_the_rerun_completes(stack):
    params, lake, rows, run = start_run(stack, "a")
    for pid in tree(stack.worker.pid):  # the machine under the worker is lost: worker, flow run, Dask, at once
        os.kill(pid, signal.SIGKILL)
    stack.worker.wait(timeout=10)
    stack.worker = None
    killed_at = time.monotonic()
    assert 1 <= len(lk.partitions(lake, "shard_runs")) < 12, "the run finished before the kill"
    assert stack.api("GET", f"/flow_runs/{run}")["state_type"] == "RUNNING"
    assert_crashed_by_the_automation(stack, run, killed_at)
    assert_the_rerun_completes(stack, params, lake, rows)


def test_a_server_restart_mid_run_ends_the_run_and_the_rerun_completes(stack):
    params, lake, rows, run = start_run(stack, "b")
    # the run is paused while `prefect server stop` (a CLI that takes seconds to import on a loaded
    # machine) stops the server: else the 12 shards can finish before the server is down
    frozen = tree(stack.worker.pid)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        assert prefect_stack.stop_server(stack.env) == stack.server  # SIGTERM, and gone
        assert len(lk.partitions(lake, "shard_runs")) < 12, "the run finished before the restart"
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    time.sleep(5)
    stack.start_server()  # the same database and port

    fr = stack.wait(run, TERMINAL, timeout=LOST_AFTER + 120)
    # the run either reported its end once the server was back, or lost it and was marked Crashed
    assert fr["state_type"] in ("COMPLETED", "CRASHED"), fr["state"]
    assert_the_rerun_completes(stack, params, lake, rows)


def test_a_run_lost_with_its_server_is_crashed_once_the_server_is_back(stack):
    """The machine under the server and the worker is lost: both process groups SIGKILLed mid-run.
    Nothing is left to report the run, so the restarted server (same database and port) must end
    it from what it stored before the loss: the automation marks it Crashed 45 s after its last
    heartbeat. (With the worker alive, the worker itself reports the crash once the server is
    back: "Flow run infrastructure exited with non-zero status code 1".) The rerun completes
    with every pair once."""
    params, lake, rows, run = start_run(stack, "c")
    for pid in [*tree(stack.worker.pid), stack.server]:
        os.kill(pid, signal.SIGKILL)
    lost_at = time.monotonic()
    processes.reap(stack.server)
    stack.worker.wait(timeout=10)
    stack.worker = None
    assert 1 <= len(lk.partitions(lake, "shard_runs")) < 12, "the run finished before the loss"
    stack.start_server()  # the same database and port
    assert stack.api("GET", f"/flow_runs/{run}")["state_type"] == "RUNNING"
    assert_crashed_by_the_automation(stack, run, lost_at)
    assert_the_rerun_completes(stack, params, lake, rows)
