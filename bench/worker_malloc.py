"""Page faults of a freed-and-reallocated 2 MiB array inside a Dask worker, per malloc setting.

    python bench/worker_malloc.py [--allocs 500]

A Dask nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (Dask's
``distributed.nanny.pre-spawn-environ``), which makes glibc hand every freed large block back to
the OS, so a worker that allocates per image touches fresh pages per image (docs/scale.md). For
each way of changing the worker's malloc settings this runs ``--allocs`` 2 MiB numpy
allocations as a task on a one-worker LocalCluster and prints the minor page faults per
allocation (512 = every page of the block faulted again, ~0 = the block is reused).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys

MMAP = {"MALLOC_MMAP_THRESHOLD_": "33554432"}
MODES = {
    "dask default": ({}, {}),
    "LocalCluster(env=MMAP)": ({}, {"env": MMAP}),
    "MMAP in the parent's environment": (MMAP, {}),
    "MMAP + TRIM 64 MiB in pre-spawn-environ": (
        {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": repr({**MMAP, "MALLOC_TRIM_THRESHOLD_": "67108864"})}, {}),
}


def faults(allocs: int) -> float:
    import numpy as np
    r0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(allocs):
        a = np.ones(1 << 18)  # 2 MiB
        del a
    return (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - r0) / allocs


def child(allocs: int, kwargs: dict) -> None:
    from dask.distributed import Client, LocalCluster  # heavy: only in the measuring child
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None, **kwargs) as c, Client(c) as cl:
        print(cl.submit(faults, allocs, pure=False).result())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--allocs", type=int, default=500)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        child(a.allocs, MODES[a.child][1])
        return 0
    print("| worker malloc setting | page faults per 2 MiB allocation |\n|---|---|")
    for name, (env, _kw) in MODES.items():
        r = subprocess.run([sys.executable, __file__, "--allocs", str(a.allocs), "--child", name],
                           env={**os.environ, **env}, capture_output=True, text=True, check=True)
        print(f"| {name} | {float(r.stdout.strip().splitlines()[-1]):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
