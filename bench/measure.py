"""Measurements that do not depend on how busy the machine is: process CPU seconds and the
peak bytes a query spilled to disk (the warehouse benches run on shared cores, where wall time
mostly measures the neighbours)."""
from __future__ import annotations

import os
import resource
import threading
import time


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """User + system CPU seconds of this process (or its reaped children), all threads."""
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:  # a spill file removed while we walked
                pass
    return total


class SpillWatch:
    """Polls a folder's size in a thread; ``peak`` is the largest size seen (bytes). DuckDB
    writes its spill files under ``temp_directory`` and deletes them when a query ends, so the
    peak has to be sampled while the query runs (every ``interval`` seconds)."""

    def __init__(self, path: str, interval: float = 0.2):
        self.path, self.interval, self.peak = path, interval, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, dir_bytes(self.path))
            self._stop.wait(self.interval)

    def __enter__(self) -> "SpillWatch":
        os.makedirs(self.path, exist_ok=True)
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, dir_bytes(self.path))


def timed_cpu(fn, *args):
    """(result, wall seconds, process CPU seconds) of ``fn(*args)``."""
    t, c = time.perf_counter(), cpu_seconds()
    out = fn(*args)
    return out, time.perf_counter() - t, cpu_seconds() - c
