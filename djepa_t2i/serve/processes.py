"""Process supervision the Prefect stack needs and Prefect's CLI does not do: whether a pid is
alive (zombies do not count), and stopping a whole process group (SIGTERM, wait, SIGKILL).

The group matters: a worker's flow-run subprocess outlives a SIGTERM to the worker for seconds,
and would keep writing to the lake after the worker is gone.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def _stat(stat: Path) -> list[str]:
    """The fields of a ``/proc/<pid>/stat`` file after the command name (state ppid pgrp ...);
    [] when the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process; zombies (exited, not yet reaped) do not count."""
    fields = _stat(Path(f"/proc/{pid}/stat"))
    return bool(fields) and fields[0] != "Z"


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
        reap(pid)
        if not group_alive(pid):
            return True
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 5
    while group_alive(pid) and time.monotonic() < deadline:
        reap(pid)
        time.sleep(0.1)
    return True


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in group ``pgid`` (``killpg(pgid, 0)`` would also
    count zombies, which linger until their parent or init reaps them)."""
    return any(f and f[0] != "Z" and int(f[2]) == pgid
               for f in map(_stat, Path("/proc").glob("[0-9]*/stat")))


def reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child: collect it so it does not linger as a zombie
    except ChildProcessError:
        pass
