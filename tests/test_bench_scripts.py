"""The GPU benchmark scripts run end to end at their tiny CPU preset and print sane metrics.

Not a performance test (no thresholds on speed): it proves the scripts that will be run on an
H100 are not broken, and that what they print is a measured, finite, positive number.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from djepa_t2i.config import load_config
from tasks.decode import DecodeError, decode_image
from tasks.filters.resolution import ResolutionFilter
from tasks.mini_laion import make_sample
from warehouse import lake as lk

ROOT = Path(__file__).resolve().parent.parent
NUM = r"([-+0-9.eE]+|nan|inf)"


def run_bench(*argv: str) -> str:
    r = subprocess.run([sys.executable, *argv, "--device", "cpu", "--threads", "1"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def metric(out: str, pattern: str) -> float:
    m = re.search(pattern, out)
    assert m, f"{pattern!r} not in output:\n{out}"
    v = float(m.group(1))
    assert math.isfinite(v) and v > 0, f"{pattern!r} -> {v}"
    return v


@pytest.mark.slow
def test_caption_throughput_tiny():
    out = run_bench("bench/caption_throughput.py", "--size", "tiny", "--batch", "4",
                    "--max-new-tokens", "8", "--warmup", "1", "--repeats", "3")
    assert "backend=internvl" in out
    ips = metric(out, r"images/s " + NUM)
    spb = metric(out, r"s/batch " + NUM)
    metric(out, r"peak_mem_gib " + NUM)
    assert ips == pytest.approx(4 / spb, rel=0.02)  # both from the same median batch time


@pytest.mark.slow
def test_packing_vs_fixed_tiny():
    out = run_bench("bench/packing_vs_fixed.py", "--preset", "tiny", "--warmup", "1", "--repeats", "3")
    mixed = metric(out, r"tokens/s mixed " + NUM)
    fixed = metric(out, r" fixed " + NUM)
    ratio = metric(out, r"ratio " + NUM)
    assert ratio == pytest.approx(mixed / fixed, rel=0.01)
    fills = [float(x) for x in re.findall(r"fill " + NUM + "%", out)]
    assert fills[0] == 100.0 and 97.0 <= fills[1] <= 100.0  # fixed fills exactly; packing >= 97%
    for loss in re.findall(r"loss " + NUM, out):
        assert math.isfinite(float(loss))


def run_script(*argv: str) -> str:
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_notion_stats_sql_reduced(tmp_path):
    out = run_script("bench/notion_stats_sql.py", "--rows", "200000", "--repeats", "2", "--dir", str(tmp_path))
    assert "notion_stats view: 200,000 rows" in out and "plain GROUP BY: 200,000 rows" in out
    metric(out, r"ratio view/plain \(wall\): best " + NUM)
    metric(out, r"notion_stats view: .* CPU best " + NUM)


def test_funnel_sql_reduced(tmp_path):
    """The funnel through the views counts the generated pairs into the nine (status, stage)
    groups of the mix, like the plain GROUP BY; the spill is measured (0 MiB fits at this size)."""
    out = run_script("bench/notion_stats_sql.py", "--query", "funnel", "--rows", "120000", "--repeats", "1",
                     "--memory-limit", "256MB", "--dir", str(tmp_path))
    assert "funnel view: 120,000 rows -> 9 groups" in out and "plain GROUP BY: 120,000 rows -> 9 groups" in out
    assert re.search(r"funnel view: .* CPU best [0-9.]+s .* peak spill [0-9]+ MiB", out), out


def test_cross_shard_dedup_reduced(tmp_path):
    out = run_script("bench/cross_shard_dedup.py", "--rows", "20000", "--shards", "10", "--dir", str(tmp_path))
    # 1% exact + 1% near copies of 2,000 pairs in every shard after the first: 2 x 20 x 9
    assert "relabelled 360," in out
    metric(out, r"peak RSS " + NUM + " MiB")
    metric(out, r"CPU " + NUM + "s")


def test_ocr_profile_counts_every_image_that_reaches_ocr(tmp_path):
    """bench/ocr_profile.py times the OCR stage on every decodable image that passes the
    resolution rules: for the 40-pair sample that is its photo/shapes/text/lowq/dup images."""
    make_sample(str(tmp_path / "s"), 40, seed=3)
    res, n = ResolutionFilter(load_config().curate.resolution), 0
    for tar in sorted((tmp_path / "s").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf.getmembers():
                if m.name.endswith(".jpg"):
                    try:
                        im = decode_image(tf.extractfile(m).read(), 10 ** 8).image
                    except DecodeError:
                        continue
                    n += res.check(im.width, im.height).passed
    out = run_script("bench/ocr_profile.py", str(tmp_path / "s"), "--json", str(tmp_path / "rows.json"))
    assert f"| all | {n} |" in out
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == n and all(r["thread_ms"] > 0 and r["n_read"] <= r["n_detected"] for r in rows)


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    """bench/gpu_check.sh (issue #15) runs end to end in its tiny CPU mode, so the one script a
    GPU session runs cannot rot: every stage exits 0 and reports a positive, finite number (MAR's
    stage reports it or says it was skipped when no LTH14/mar checkout is at $MAR_DIR)."""
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--smoke"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600, check=False,
                       env={**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable})
    assert r.returncode == 0, r.stderr[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    for name in ("train_djepa_b", "train_mar_b", "sample_djepa_b", "packed_vs_fixed", "recaption_b1", "recaption_b8"):
        assert f"== {name}: rc 0," in summary, summary
    metric((tmp_path / "train_djepa_b.txt").read_text(), NUM + r" img/s")
    metric((tmp_path / "sample_djepa_b.txt").read_text(), NUM + r" ms/img")
    metric((tmp_path / "packed_vs_fixed.txt").read_text(), r"ratio " + NUM)
    for b in (1, 8):
        metric((tmp_path / f"recaption_b{b}.txt").read_text(), r"images/s " + NUM)
    mar = (tmp_path / "train_mar_b.txt").read_text()
    assert "MAR skipped: no LTH14/mar checkout" in mar or metric(mar, NUM + r" img/s") > 0


def test_step_rate_is_peak_times_mfu_over_flops():
    out = run_script("bench/step_rate.py", "--img-tokens", "256", "--text-len", "77", "--mfu", "0.5",
                     "--peak-tflops", "1000")
    assert "djepa_t2i_2b6: 2.66B parameters" in out
    m = re.search(r"\| 256 \| 77 \| ([0-9.]+) \| ([0-9]+) \|", out)
    assert m, out
    assert abs(500 / float(m.group(1)) - int(m.group(2))) <= 1


def test_lake_bytes_divides_partition_bytes_by_pairs(tmp_path):
    lake = str(tmp_path / "lake")
    paths = [lk.write_partition(lake, "pairs", f"0000{i}", [{"key": f"{i}{j:03d}", "shard": f"0000{i}",
                                                              "status": "passed"} for j in range(50)])
             for i in range(2)]
    out = run_script("bench/lake_bytes.py", lake)
    total = sum(os.path.getsize(p) for p in paths)
    assert f"| pairs | 2 | 100 | 1.00 | {total:,} | {total / 100:.0f} |" in out
