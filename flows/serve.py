"""A local Prefect stack for this checkout: Prefect's own background server on 127.0.0.1
(``prefect server start --background`` / ``prefect server stop``), a process work pool, the
deployments in ``prefect.yaml``, and one process worker.

    t2i serve start|stop|status|demo      (make serve / make stop / make demo-server)

PREFECT_HOME (where Prefect keeps the server's pid file), the worker's pid file and its log live
under ``.state/``, so a checkout never touches the user's ~/.prefect. What Prefect 3.8.8's
commands do not do, and this module therefore keeps (checked on this machine):
- wait for the API: ``server start --background`` returns at once (its /health answered 23 s
  later on the loaded 2-core VM), so ``start`` polls /health, failing fast if the process died;
- run a worker in the background: there is no such command, so the worker runs in its own
  process group with a pid file; its flow-run children outlive a SIGTERM for seconds, so ``stop``
  terminates the group, waits, then kills, and always stops the worker before the server;
- wait for the server to exit: ``server stop`` sends SIGTERM and returns (the process was gone
  ~1 s later), so ``stop_server`` waits, and a restart finds the port free.
The background server's output goes to a pipe nobody reads (it kept serving 600 requests after
its starter exited); the worker's log is ``.state/serve/worker.log``.

The server requires API authentication: a secret generated on the first start under the state
folder (djepa_t2i/prefect_auth.py) is in the environment of the server and of every client
started here (:func:`stack_env`); ``/api/health`` stays open, so :func:`wait_healthy` needs none.

The functions here are also what tests/test_deployments.py uses to stand up an isolated stack.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import djepa_t2i.env  # noqa: F401  (offline env + PREFECT_HOME before prefect is touched)
from djepa_t2i.env import ROOT
from djepa_t2i.prefect_auth import server_env

POOL = "t2i-process"  # the work pool prefect.yaml's deployments name
PORT = 4200
PREFECT = str(Path(sys.executable).with_name("prefect"))


def state_dir() -> Path:
    return Path(os.environ.get("T2I_STATE_DIR", ROOT / ".state")) / "serve"


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def stack_env(url: str, prefect_home: str | os.PathLike | None = None,
              state: str | os.PathLike | None = None) -> dict[str, str]:
    """Environment for every prefect process of the stack.

    ``PWD`` is what prefect.yaml's ``{{ $PWD }}`` placeholders resolve to at deploy time (so runs
    execute this checkout); PYTHONPATH lets flow-run processes import the repo even
    without the editable install. The API secret of ``state`` (default :func:`state_dir`) turns on
    the server's authentication and is what its clients (CLI, worker, flow runs) send (issue #12).
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
    })
    env.update(server_env(state if state is not None else state_dir()))
    # a stale worker-side setting would point runs at another server
    env.pop("PREFECT_PROFILE", None)
    return env


def server_pid(env: dict[str, str]) -> int | None:
    """The pid of the background server of ``env``'s PREFECT_HOME, if that process is alive."""
    try:
        pid = int((Path(env["PREFECT_HOME"]) / "server.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _running(pid) else None


def start_server(port: int, env: dict[str, str]) -> int:
    """``prefect server start --background`` on 127.0.0.1:``port``; returns the server's pid."""
    _run([PREFECT, "server", "start", "--background", "--host", "127.0.0.1", "--port", str(port)], env)
    pid = server_pid(env)
    if pid is None:
        raise RuntimeError(f"prefect server start --background left no live server (PREFECT_HOME={env['PREFECT_HOME']})")
    return pid


def stop_server(env: dict[str, str], timeout: float = 30.0) -> int | None:
    """``prefect server stop``, then wait until the process is gone; returns the pid it stopped."""
    pid = server_pid(env)
    _run([PREFECT, "server", "stop"], env)
    deadline = time.monotonic() + timeout
    while pid is not None and _running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return pid


def _stat(stat: Path) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` file after the command name (state ppid pgrp ...);
    [] when the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process; zombies (exited, not yet reaped) do not count."""
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return bool(fields) and fields[0] != "Z"


def wait_healthy(url: str, timeout: float = 120.0, pid: int | None = None) -> float:
    """Block until ``<url>/health`` answers; returns seconds waited. Fails fast if the server died."""
    import httpx
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pid is not None and not _running(pid):
            raise RuntimeError(f"prefect server (pid {pid}) exited before it was healthy")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout:.0f}s")


def _run(args: list[str], env: dict[str, str], timeout: float = 600.0) -> str:
    p = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p.stdout


def create_pool(pool: str, env: dict[str, str]) -> None:
    """Create the process work pool (``--overwrite`` keeps a re-run of ``start`` idempotent)."""
    _run([PREFECT, "--no-prompt", "work-pool", "create", pool, "--type", "process", "--overwrite"], env)


def deployable(prefect_file: Path) -> tuple[Path, list[str]]:
    """``prefect_file``, minus deployments whose entrypoint module is not in this checkout.

    ``deploy --all`` aborts on the first missing module; skipping (and naming) them keeps the
    stack usable while a flow is still being written. Returns the file to deploy and the skipped.
    """
    import yaml
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
    return _run(args, env)


def start_worker(pool: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``prefect worker start`` in its own session (process group), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env=env,
                                cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def stop_group(pid: int, grace: float = 15.0) -> bool:
    """SIGTERM the process group led by ``pid``, wait up to ``grace`` s, then SIGKILL it.

    Returns True if anything was running. The group matters: the worker's flow-run subprocess
    would otherwise keep running (and writing to the lake) after the worker is gone.
    """
    if not group_alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not group_alive(pid):
            return True
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5
    while group_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.1)
    return True


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in group ``pgid`` (``killpg(pgid, 0)`` would also
    count zombies, which linger until their parent or init reaps them)."""
    return any(f and f[0] != "Z" and int(f[2]) == pgid
               for f in map(_stat, Path("/proc").glob("[0-9]*/stat")))


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child: collect it so it does not linger as a zombie
    except ChildProcessError:
        pass


# --- the CLI: the worker's pid file and log under .state/serve ----------------------------------

def worker_pidfile() -> Path:
    return state_dir() / "worker.pid"


def worker_log() -> Path:
    return state_dir() / "worker.log"


def _worker_alive() -> int | None:
    """The pid in the worker's pid file if that process is still a prefect process of ours."""
    try:
        pid = int(worker_pidfile().read_text().split()[0])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    return pid if "prefect" in cmd and _running(pid) else None


def ensure_sample(env: dict[str, str]) -> None:
    """``curate-laion/default`` reads runs/sample: make it once so the deployment runs right away."""
    sample = ROOT / "runs" / "sample"
    if any(sample.glob("*.tar")):
        return
    print(f"writing the embedded sample to {sample} ...", flush=True)
    try:
        _run([sys.executable, "-m", "djepa_t2i.cli", "make-sample", str(sample), "--n", "200"], env)
    except RuntimeError as e:  # the stack is still useful without it; say why it is missing
        print(f"warning: could not write {sample}: {e}", file=sys.stderr)


def start(port: int = PORT, pool: str = POOL, timeout: float = 180.0, sample: bool = True) -> int:
    url = api_url(port)
    env = stack_env(url)
    if pid := server_pid(env):
        print(f"server already running (pid {pid}), {url}")
    else:
        pid = start_server(port, env)
        waited = wait_healthy(url, timeout, pid)
        print(f"server healthy on {url} after {waited:.1f}s (pid {pid})", flush=True)
    create_pool(pool, env)
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
    return 0


def status(port: int = PORT) -> int:
    env = stack_env(api_url(port))
    spid, wpid = server_pid(env), _worker_alive()
    info = {"server": {"running": spid is not None, "pid": spid, "url": api_url(port)},
            "worker": {"running": wpid is not None, "pid": wpid, "log": str(worker_log())}}
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
    """``t2i serve start|stop|status|demo`` (also ``python -m flows.serve ...``)."""
    from djepa_t2i.cli_args import int_at_least
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="server + pool + deployments + worker, in the background")
    s.add_argument("--port", type=int_at_least(1), default=PORT)
    s.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for server health")
    sub.add_parser("stop", help="stop the worker, then the server")
    st = sub.add_parser("status", help="print pids, health and the worker's log path as JSON")
    st.add_argument("--port", type=int_at_least(1), default=PORT)
    d = sub.add_parser("demo", help="start the stack and run the demo through deployments")
    d.add_argument("--out", default="runs/demo-server")
    d.add_argument("--port", type=int_at_least(1), default=PORT)


def run(a: argparse.Namespace) -> int:
    state_dir().mkdir(parents=True, exist_ok=True)
    if a.cmd == "start":
        return start(a.port, timeout=a.timeout)
    if a.cmd == "stop":
        return stop()
    if a.cmd == "status":
        return status(a.port)
    return demo(a.out, a.port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
