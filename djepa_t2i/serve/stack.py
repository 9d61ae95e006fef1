"""A local Prefect stack for this checkout, as functions: its environment (API URL, PREFECT_HOME,
the API secret, the database), the server on 127.0.0.1 (``prefect server start`` in its own
session, ``prefect server stop``), a process work pool, the deployments in ``prefect.yaml``, and
one process worker.

What Prefect 3.8.8's commands do not do, and this module therefore keeps:
- keep the server's log, and keep the server: ``server start --background`` gives the server a
  pipe to its starter, which exits at once, so nothing was kept, and Prefect's console log
  handler (rich) turns the broken pipe into ``SystemExit(1)``: the server died at its first log
  line, which at the default WARNING level comes only under load (issue #26's crash). :func:`start_server` runs ``prefect server start`` (foreground mode) in a session of its
  own with its output appended to a log file, and writes the pid where ``--background`` would
  (``$PREFECT_HOME/server.pid``), so ``prefect server stop`` still stops it;
- wait for the API: :func:`wait_healthy` polls /health, failing fast if the process died;
- wait for the server to exit: ``server stop`` sends SIGTERM and returns, so :func:`stop_server`
  waits, and a restart finds the port free;
- end lost runs: a flow run whose worker or machine died stays ``Running`` forever; flow runs
  send heartbeats and :func:`crash_lost_runs` marks one Crashed when they stop.
The database is Prefect's ``PREFECT_API_DATABASE_CONNECTION_URL``: unset, the SQLite file under
PREFECT_HOME; ``postgresql+asyncpg://...`` for a team (djepa_t2i/serve/postgres.py runs a local one).

The server requires API authentication: a secret generated on the first start under the state
folder (djepa_t2i/prefect_auth.py) is in the environment of the server and of every client
started here (:func:`stack_env`); ``/api/health`` stays open, so :func:`wait_healthy` needs none.
``t2i serve`` (djepa_t2i/serve/cli.py) and tests/test_deployments.py stand their stacks up with
these functions.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

import djepa_t2i.env  # noqa: F401  (offline env + PREFECT_HOME before prefect is touched)
from djepa_t2i.env import ROOT
from djepa_t2i.prefect_auth import server_env
from djepa_t2i.serve.processes import reap, running

POOL = "t2i-process"  # the work pool prefect.yaml's deployments name
PORT = 4200
PREFECT = str(Path(sys.executable).with_name("prefect"))
HEARTBEAT_SECONDS = 30  # a flow run's heartbeat event: Prefect's shortest (its default is 180)
LOST_AFTER_SECONDS = 90  # three missed heartbeats: the run is lost (Prefect's documented choice)
LOST_AFTER_MIN = 45  # 1.5 heartbeats: a heartbeat that is merely late must not crash a live run
LOST_RUNS = "crash-lost-flow-runs"  # the automation that marks such a run Crashed


def state_dir() -> Path:
    return Path(os.environ.get("T2I_STATE_DIR", ROOT / ".state")) / "serve"


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def stack_env(url: str, prefect_home: str | os.PathLike | None = None,
              state: str | os.PathLike | None = None, database: str | None = None) -> dict[str, str]:
    """Environment for every prefect process of the stack.

    ``PWD`` is what prefect.yaml's ``{{ $PWD }}`` placeholders resolve to at deploy time (so runs
    execute this checkout); PYTHONPATH lets flow-run processes import the repo even
    without the editable install. The API secret of ``state`` (default :func:`state_dir`) turns on
    the server's authentication and is what its clients (CLI, worker, flow runs) send (issue #12).
    ``database`` (a SQLAlchemy URL such as ``postgresql+asyncpg://user:pw@host:5432/prefect``)
    replaces the SQLite default; only the server reads it.
    """
    env = dict(os.environ)
    env.update({
        "PREFECT_API_URL": url,
        "PREFECT_HOME": str(prefect_home or os.environ["PREFECT_HOME"]),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS":
            os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120"),
        "PWD": str(ROOT),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
        # flow runs started by the worker inherit it: what crash_lost_runs watches
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    })
    env.update(server_env(state if state is not None else state_dir()))
    # a stale worker-side setting would point runs at another server
    env.pop("PREFECT_PROFILE", None)
    if database:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database
    return env


def server_pid(env: dict[str, str]) -> int | None:
    """The pid of the server of ``env``'s PREFECT_HOME, if that process is alive and a prefect one
    (a stale pid file's number may belong to another process by now)."""
    try:
        pid = int((Path(env["PREFECT_HOME"]) / "server.pid").read_text())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"prefect" in cmd and running(pid) else None


def server_log(state: str | os.PathLike | None = None) -> Path:
    return Path(state if state is not None else state_dir()) / "server.log"


def start_server(port: int, env: dict[str, str], log: Path) -> int:
    """``prefect server start`` on 127.0.0.1:``port`` in its own session, output appended to
    ``log``; returns the server's pid (also written to ``$PREFECT_HOME/server.pid``)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file = Path(env["PREFECT_HOME"]) / "server.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} prefect server start on port {port}\n".encode())
        fh.flush()
        p = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                             cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    pid_file.write_text(str(p.pid))
    return p.pid


def stop_server(env: dict[str, str], timeout: float = 30.0) -> int | None:
    """``prefect server stop``, then wait until the process is gone; returns the pid it stopped."""
    pid = server_pid(env)
    run_checked([PREFECT, "server", "stop"], env)
    deadline = time.monotonic() + timeout
    while pid is not None and running(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.2)
    if pid is not None:
        reap(pid)
    return pid


def wait_healthy(url: str, timeout: float = 120.0, pid: int | None = None) -> float:
    """Block until ``<url>/health`` answers; returns seconds waited. Fails fast if the server died."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pid is not None and not running(pid):
            raise RuntimeError(f"prefect server (pid {pid}) exited before it was healthy")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout:.0f}s")


def run_checked(args: list[str], env: dict[str, str], timeout: float = 600.0) -> str:
    """Run ``args`` from the repo root in ``env``; its stdout, or a RuntimeError with its output."""
    p = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p.stdout


def create_pool(pool: str, env: dict[str, str]) -> None:
    """Create the process work pool (``--overwrite`` keeps a re-run of ``start`` idempotent)."""
    run_checked([PREFECT, "--no-prompt", "work-pool", "create", pool, "--type", "process", "--overwrite"], env)


def deployable(prefect_file: Path) -> tuple[Path, list[str]]:
    """``prefect_file``, minus deployments whose entrypoint module is not in this checkout.

    ``deploy --all`` aborts on the first missing module; skipping (and naming) them keeps the
    stack usable while a flow is still being written. Returns the file to deploy and the skipped.
    """
    spec = yaml.safe_load(Path(prefect_file).read_text())
    keep, skipped = [], []
    for d in spec.get("deployments") or []:
        path = d["entrypoint"].rsplit(":", 1)[0]
        (keep if (ROOT / path).exists() or Path(path).is_absolute() and Path(path).exists()
         else skipped).append(d)
    if not skipped:
        return Path(prefect_file), []
    spec["deployments"] = keep
    out = state_dir() / "prefect.deploy.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out, [d["entrypoint"] for d in skipped]


def deploy(env: dict[str, str], names: list[str] | None = None,
           prefect_file: Path = ROOT / "prefect.yaml", extra: list[str] = ()) -> str:
    """``prefect --no-prompt deploy`` from the repo root: all deployments, or only ``names``.

    ``extra`` options such as ``--param`` are silently ignored by prefect unless exactly one
    deployment is named, so that combination is refused here.
    """
    if extra and len(names or []) != 1:
        raise ValueError(f"prefect applies {list(extra)} only when deploying one named deployment")
    path, skipped = deployable(prefect_file)
    for e in skipped:
        print(f"skipping deployment of {e}: module not in this checkout", file=sys.stderr)
    args = [PREFECT, "--no-prompt", "deploy", "--prefect-file", str(path), *extra]
    args += [a for n in names for a in ("--name", n)] if names else ["--all"]
    return run_checked(args, env)


RETRY_STATUS = (429, 502, 503)  # what Prefect's own client retries (prefect/client/base.py)


def api_request(method: str, url: str, auth: httpx.Auth | None = None, tries: int = 6, **kw) -> httpx.Response:
    """One REST call to the server, retried as Prefect's client retries it: on 429, 502 and 503,
    waiting 1, 2, 4, 8, 16 s. A SQLite server under load answers 503 when its database is busy
    (``is_client_retryable_exception`` in prefect/server/api/server.py): a signal to try again,
    not a failure (a loaded full suite hit it once creating a flow run after a server restart)."""
    for attempt in range(tries):
        r = httpx.request(method, url, auth=auth, timeout=30, **kw)
        if r.status_code not in RETRY_STATUS or attempt == tries - 1:
            return r.raise_for_status()
        time.sleep(2 ** attempt)
    raise ValueError(f"tries must be >= 1, got {tries}")


def crash_lost_runs(url: str, env: dict[str, str], within: float = LOST_AFTER_SECONDS) -> str:
    """The server-side automation that marks a flow run ``Crashed`` when ``within`` seconds pass
    after its last heartbeat with no heartbeat and no final state: a run whose worker or machine
    died, or whose final state was lost while the server was down, would otherwise stay
    ``Running`` forever (Prefect 3.8.8 has no built-in check; "How to detect and respond to zombie
    flows" in its docs). Replaces an earlier one of the same name; returns its id."""
    from prefect.client.schemas.objects import StateType  # heavy: prefect's schemas
    from prefect.events.actions import ChangeFlowRunState  # heavy
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture  # heavy
    final = [f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")]
    body = AutomationCore(
        name=LOST_RUNS, description="t2i serve: a flow run whose heartbeats stopped is Crashed",
        trigger=EventTrigger(after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat", *final},
                             match={"prefect.resource.id": ["prefect.flow-run.*"]},
                             for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
                             within=within),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=(
            f"no heartbeat for {within:.0f} s: the flow run's process was lost (worker or machine "
            "killed, or its final state lost while the server was down); rerun it"))],
    ).model_dump(mode="json")
    auth = httpx.BasicAuth(*env["PREFECT_API_AUTH_STRING"].split(":", 1))
    for a in api_request("POST", f"{url}/automations/filter", auth, json={}).json():
        if a["name"] == LOST_RUNS:
            api_request("DELETE", f"{url}/automations/{a['id']}", auth)
    return api_request("POST", f"{url}/automations/", auth, json=body).json()["id"]


def start_worker(pool: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``prefect worker start`` in its own session (process group), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env=env,
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
