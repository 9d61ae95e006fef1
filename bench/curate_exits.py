"""Exit codes of many consecutive ``t2i curate --no-prefect`` runs on a loaded machine (issue #25).

    .venv/bin/python bench/curate_exits.py [--runs 50] [--n 40] [--dir /tmp/curate-exits] [--no-load]

Writes a sample of ``n`` pairs (``t2i make-sample``), then curates it ``runs`` times, each into a
fresh lake, as a user does (a real command line: ``python -m djepa_t2i.cli``), while a niced busy
loop keeps one other core loaded (the condition that exposed an abort at interpreter exit). Every
exit code is recorded; a run that did not exit 0 keeps its stderr in ``DIR/run-NNN.err``. Prints
one line per run and a summary (also as JSON with ``--json``); exits 1 when any run failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def t2i(*args: str) -> subprocess.CompletedProcess:
    """One ``t2i`` command line in a fresh interpreter (faulthandler on, as for a user)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run([sys.executable, "-m", "djepa_t2i.cli", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def busy_core() -> subprocess.Popen:
    """A niced busy loop: the other core stays loaded, as on a shared CI machine."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(19))


def run(runs: int, n: int, work: Path, load: bool) -> dict:
    """Curate a ``n``-pair sample ``runs`` times; every exit code, wall time and failure kept."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    made = t2i("make-sample", str(work / "sample"), "--n", str(n))
    if made.returncode != 0:
        raise SystemExit(f"make-sample failed ({made.returncode}): {made.stderr.strip()[-500:]}")
    loader = busy_core() if load else None
    codes: list[int] = []
    seconds: list[float] = []
    try:
        for i in range(runs):
            lake = work / "lake"
            shutil.rmtree(lake, ignore_errors=True)
            t0 = time.perf_counter()
            p = t2i("curate", str(work / "sample"), "--lake", str(lake), "--no-prefect")
            seconds.append(round(time.perf_counter() - t0, 2))
            codes.append(p.returncode)
            if p.returncode != 0:
                (work / f"run-{i:03d}.err").write_text(p.stderr)
            print(f"run {i + 1}/{runs}: exit {p.returncode} in {seconds[-1]:.1f}s", flush=True)
    finally:
        if loader is not None:
            loader.kill()
            loader.wait()
    return {"runs": runs, "pairs": n, "loaded_core": load, "exit_codes": dict(Counter(codes)),
            "failed_runs": [i for i, c in enumerate(codes) if c != 0], "codes": codes,
            "seconds_median": statistics.median(seconds), "seconds_max": max(seconds),
            "cpus": os.cpu_count(), "machine": platform.machine()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--n", type=int, default=40, help="pairs in the sample")
    p.add_argument("--dir", default="/tmp/curate-exits", help="work folder (replaced)")
    p.add_argument("--no-load", action="store_true", help="no busy loop on another core")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args()
    s = run(a.runs, a.n, Path(a.dir), not a.no_load)
    if a.json:
        print(json.dumps(s))
    else:
        print(f"{s['runs']} runs of {s['pairs']} pairs, other core loaded: {s['loaded_core']}; exit codes "
              f"{s['exit_codes']}; failed runs {s['failed_runs']}; {s['seconds_median']:.1f}s median, "
              f"{s['seconds_max']:.1f}s max per run ({s['cpus']} CPUs, {s['machine']})")
    return 1 if s["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main())
