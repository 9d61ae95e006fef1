"""OCR stage alone: per-image CPU time against image size, detected boxes and recognition calls.

    python bench/ocr_profile.py SAMPLE_DIR [--limit 2000] [--dask] [--json out.json] [--set curate.ocr.x=v ...]

Reads every image of an img2dataset folder (``t2i make-sample``), keeps those that pass the
resolution rules (what reaches the model stages), and runs the configured OCR filter on them one
at a time, timing each call with ``time.thread_time`` (CPU seconds of the calling thread: the
figure does not depend on what else the machine runs) and ``time.process_time`` (the whole
process: more than thread time means the engine burns CPU in other threads), with the minor page
faults the calling thread took. ``--dask`` runs the same loop inside the worker of a one-worker
Dask LocalCluster: a worker process as ``t2i curate`` gets it (the nanny's environment, e.g.
``MALLOC_TRIM_THRESHOLD_``; a task thread, not the main thread). Prints a summary by mini-LAION
source and by detected-box count; ``--json`` keeps the per-image rows.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401
from djepa_t2i.config import load_config  # noqa: E402
from tasks.decode import DecodeError, decode_image  # noqa: E402
from tasks.stages import build_stage  # noqa: E402
from tasks.filters.resolution import ResolutionFilter  # noqa: E402


def images(sample: str, limit: int | None):
    """(key, source, RGB image) of every decodable image that passes the resolution rules."""
    cfg = load_config()
    res = ResolutionFilter(cfg.curate.resolution)
    n = 0
    for tar in sorted(glob.glob(os.path.join(sample, "*.tar"))):
        with tarfile.open(tar) as tf:
            members = {m.name: m for m in tf.getmembers()}
            for name in sorted(members):
                if not name.endswith(".jpg"):
                    continue
                key = name[:-4]
                meta = members.get(key + ".json")
                source = json.load(tf.extractfile(meta)).get("source", "?") if meta else "?"
                try:
                    im = decode_image(tf.extractfile(members[name]).read(), cfg.curate.resolution.max_pixels).image
                except DecodeError:
                    continue
                if not res.check(im.width, im.height).passed:
                    continue
                yield key, source, im
                n += 1
                if limit and n >= limit:
                    return


def profile(sample: str, limit: int | None, overrides: list[str]) -> list[dict]:
    f = build_stage("ocr", load_config(overrides=overrides))
    rows = []
    for key, source, im in images(sample, limit):
        flt = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        t, p = time.thread_time(), time.process_time()
        r = f([im])[0]
        rows.append({"key": key, "source": source, "w": im.width, "h": im.height,
                     "thread_ms": (time.thread_time() - t) * 1e3, "process_ms": (time.process_time() - p) * 1e3,
                     "faults": resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - flt,
                     "n_detected": r.details["n_detected"], "n_read": r.details["n_read"], "passed": r.passed})
    return rows


def in_dask(sample: str, limit: int | None, overrides: list[str]) -> list[dict]:
    """:func:`profile` run as a task on a one-worker, one-thread Dask LocalCluster."""
    from dask.distributed import Client, LocalCluster  # heavy: only for --dask
    with LocalCluster(n_workers=1, threads_per_worker=1) as cluster, Client(cluster) as client:
        return client.submit(profile, sample, limit, overrides, pure=False).result()


def summary(rows: list[dict]) -> str:
    def line(label: str, rs: list[dict]) -> str:
        def mean(k: str) -> float:
            return statistics.mean(r[k] for r in rs)
        th = [r["thread_ms"] for r in rs]
        return (f"| {label} | {len(rs)} | {mean('thread_ms'):.1f} | {statistics.median(th):.1f} | "
                f"{mean('process_ms'):.1f} | {mean('faults'):.0f} | {mean('n_detected'):.1f} | {mean('n_read'):.2f} | "
                f"{statistics.mean(r['w'] * r['h'] for r in rs) / 1e6:.2f} | {sum(th) / 1e3:.1f} |")
    out = ["| group | images | thread ms mean | median | process ms mean | page faults | boxes det. | boxes read "
           "| Mpx | thread CPU s |",
           "|---|---|---|---|---|---|---|---|---|---|", line("all", rows)]
    for s in sorted({r["source"] for r in rows}):
        out.append(line(f"source={s}", [r for r in rows if r["source"] == s]))
    for lo, hi in ((0, 0), (1, 5), (6, 20), (21, 100), (101, 10 ** 9)):
        rs = [r for r in rows if lo <= r["n_detected"] <= hi]
        if rs:
            out.append(line(f"detected {lo}-{hi if hi < 10 ** 9 else 'more'}", rs))
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("sample", help="img2dataset folder (t2i make-sample)")
    ap.add_argument("--limit", type=int, default=None, help="stop after this many images")
    ap.add_argument("--dask", action="store_true", help="profile inside a Dask LocalCluster worker")
    ap.add_argument("--json", default=None, help="write the per-image rows here")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. curate.ocr.det_side=320")
    a = ap.parse_args()
    rows = in_dask(a.sample, a.limit, a.set) if a.dask else profile(a.sample, a.limit, a.set)
    print(summary(rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
