"""A local Prefect stack for this checkout: server on 127.0.0.1, a process work pool, the
deployments in ``prefect.yaml``, and one process worker.

    python -m flows.serve start|stop|status|demo      (make serve / make stop / make demo-server)

Everything lives under ``.state/`` (PREFECT_HOME, pid files, logs) so a checkout never touches the
user's ~/.prefect. Server and worker run in their own process groups: the worker's flow-run
children outlive a SIGTERM for seconds, so ``stop`` terminates the whole group, waits, then kills,
and always stops the worker before the server it reports to.

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
from dataclasses import dataclass
from pathlib import Path

import djepa_t2i.env  # noqa: F401  (offline env + PREFECT_HOME before prefect is touched)
from djepa_t2i.env import ROOT

POOL = "t2i-process"  # the work pool prefect.yaml's deployments name
PORT = 4200
PREFECT = str(Path(sys.executable).with_name("prefect"))


def state_dir() -> Path:
    return Path(os.environ.get("T2I_STATE_DIR", ROOT / ".state")) / "serve"


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/api"


def stack_env(url: str, prefect_home: str | os.PathLike | None = None) -> dict[str, str]:
    """Environment for every prefect process of the stack.

    ``PWD`` is what prefect.yaml's ``{{ $PWD }}`` placeholders resolve to at deploy time (so runs
    execute this checkout); PYTHONPATH lets flow-run processes import the repo even
    without the editable install.
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
    # a stale worker-side setting would point runs at another server
    env.pop("PREFECT_PROFILE", None)
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def start_server(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    return _spawn([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env, log)


def wait_healthy(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None,
                 log: Path | None = None) -> float:
    """Block until ``<url>/health`` answers; returns seconds waited. Fails fast if the server died."""
    import httpx
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"prefect server exited with {proc.returncode} before it was healthy:\n{tail}")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server at {url} not healthy after {timeout:.0f}s (log: {log})")


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
    return _spawn([PREFECT, "worker", "start", "--pool", pool, "--type", "process"], env, log)


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
    """Whether any live (non-zombie) process is in group ``pgid``.

    ``killpg(pgid, 0)`` also counts zombies, which linger until their parent (or init) reaps them.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after comm: state ppid pgrp ...
            return True
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child: collect it so it does not linger as a zombie
    except ChildProcessError:
        pass


# --- the CLI: pid files and logs under .state/serve --------------------------------------------

@dataclass
class Paths:
    root: Path

    def pid(self, name: str) -> Path:
        return self.root / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"


def _alive(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process is still a prefect process of ours."""
    try:
        pid = int(pidfile.read_text().split()[0])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, IndexError):
        return None
    return pid if "prefect" in cmd else None


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
    paths = Paths(state_dir())
    url = api_url(port)
    env = stack_env(url)
    if _alive(paths.pid("server")):
        print(f"server already running (pid {_alive(paths.pid('server'))}), {url}")
    else:
        proc = start_server(port, env, paths.log("server"))
        paths.pid("server").write_text(f"{proc.pid} {port}\n")
        waited = wait_healthy(url, timeout, proc, paths.log("server"))
        print(f"server healthy on {url} after {waited:.1f}s (log {paths.log('server')})", flush=True)
    create_pool(pool, env)
    if sample:
        ensure_sample(env)
    out = deploy(env)
    print("\n".join(line for line in out.splitlines() if "prefect deployment run" in line or "Deployment '" in line))
    if _alive(paths.pid("worker")):
        print(f"worker already running (pid {_alive(paths.pid('worker'))})")
    else:
        w = start_worker(pool, env, paths.log("worker"))
        paths.pid("worker").write_text(f"{w.pid}\n")
        print(f"worker on pool {pool!r} started (pid {w.pid}, log {paths.log('worker')})")
    print(f"UI: http://127.0.0.1:{port}   try: prefect deployment run curate-laion/default")
    return 0


def stop() -> int:
    paths = Paths(state_dir())
    for name in ("worker", "server"):  # worker first: it reports to the server while stopping
        pid = _alive(paths.pid(name))
        if pid is None:
            print(f"{name}: not running")
        else:
            stop_group(pid)
            print(f"{name}: stopped (pid {pid})")
        paths.pid(name).unlink(missing_ok=True)
    return 0


def status() -> int:
    paths = Paths(state_dir())
    info = {}
    for name in ("server", "worker"):
        pid = _alive(paths.pid(name))
        info[name] = {"running": pid is not None, "pid": pid, "log": str(paths.log(name))}
    srv = paths.pid("server")
    if info["server"]["running"]:
        port = int(srv.read_text().split()[1])
        try:
            wait_healthy(api_url(port), timeout=5)
            info["server"]["healthy"] = True
        except (TimeoutError, RuntimeError):
            info["server"]["healthy"] = False
        info["server"]["url"] = api_url(port)
    print(json.dumps(info, indent=2))
    return 0 if info["server"]["running"] and info["worker"]["running"] else 1


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="server + pool + deployments + worker, in the background")
    s.add_argument("--port", type=int, default=PORT)
    s.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for server health")
    sub.add_parser("stop", help="stop the worker, then the server")
    sub.add_parser("status", help="print pids, health and log paths as JSON")
    d = sub.add_parser("demo", help="start the stack and run the demo through deployments")
    d.add_argument("--out", default="runs/demo-server")
    d.add_argument("--port", type=int, default=PORT)
    a = p.parse_args(argv)
    state_dir().mkdir(parents=True, exist_ok=True)
    if a.cmd == "start":
        return start(a.port, timeout=a.timeout)
    if a.cmd == "stop":
        return stop()
    if a.cmd == "status":
        return status()
    return demo(a.out, a.port)


if __name__ == "__main__":
    sys.exit(main())
