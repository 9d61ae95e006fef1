"""build-shards throughput: MB of training tars written per CPU-second, and its memory.

    python bench/build_shards.py LAKE [--out DIR] [--samples-per-shard 1000]

Runs ``tasks.shard_writer.build`` (what ``t2i build-shards --no-prefect`` runs) over a curated
lake and reports the bytes written, wall and process CPU seconds (the CPU figure does not depend
on the machine's load) and the peak resident memory before and after: ``build`` gathers every
passed image of the lake in memory before it writes, so the growth is the lake's passed bytes.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401

from measure import peak_rss_mib, timed_cpu  # noqa: E402
from tasks import shard_writer  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("lake")
    ap.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    ap.add_argument("--samples-per-shard", type=int, default=1000)
    a = ap.parse_args()
    out = a.out or tempfile.mkdtemp(prefix="build_shards_")
    rss0 = peak_rss_mib()
    res, wall, cpu = timed_cpu(lambda: shard_writer.build(a.lake, out, a.samples_per_shard, progress=False))
    tars = glob.glob(os.path.join(out, "*.tar"))
    mb = sum(os.path.getsize(f) for f in tars) / 1e6
    n = res.n_samples
    print(f"build-shards: {n:,} samples, {len(tars)} tars, {mb:.1f} MB in {wall:.2f}s wall, {cpu:.2f} CPU s: "
          f"{mb / cpu:.1f} MB per CPU-s, {n / cpu:.0f} samples per CPU-s; peak RSS {rss0:.0f} MiB before, "
          f"{peak_rss_mib():.0f} MiB after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
