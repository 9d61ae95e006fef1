"""bench/curate_run_report.py: the orchestration shares and the cascade order it prints (issue #26.2)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from curate_run_report import cascade_ranks, lines, shares  # noqa: E402

TOTALS = {"pairs": 1000, "shards": 10, "shard_wall": 180.0, "shard_cpu": 170.0,
          "stage_cpu": {"read": 1.0, "decode": 2.0, "dedup": 1.0, "aesthetic": 2.0, "ocr": 20.0, "face": 10.0},
          "entered": {"read": (1000, 1000), "decode": (1000, 1000), "dedup": (900, 880), "aesthetic": (880, 800),
                      "ocr": (800, 700), "face": (700, 700)}}


def test_shares_count_what_the_shards_did_not():
    s = shares(TOTALS, wall=100.0, workers=2, run_cpu=200.0, load_cpu=5.0)
    assert s["pairs_per_s"] == 10.0
    assert s["wall_share"] == pytest.approx(1 - 180 / 200)  # 2 workers x 100 s, 180 s inside shards
    assert s["cpu_share"] == pytest.approx(1 - (170 + 2 * 5) / 200)
    assert s["stage_cpu_ms_per_pair"] == pytest.approx(36.0) and s["run_cpu_ms_per_pair"] == 200.0
    assert "cpu_share" not in shares(TOTALS, 100.0, 2)  # no run CPU given: the wall share only


def test_cascade_is_ordered_by_cpu_per_rejection():
    r = cascade_ranks(TOTALS)
    assert r["dedup"] == pytest.approx(1000 / 20) and r["aesthetic"] == pytest.approx(2000 / 80)
    assert r["ocr"] == pytest.approx(20000 / 100) and math.isinf(r["face"]) and "read" not in r
    text = "\n".join(lines(TOTALS, shares(TOTALS, 100.0, 2, 200.0, 5.0), 2, 200.0, 5.0))
    assert "cheapest first): aesthetic, dedup, ocr, face" in text
    assert "| ocr | 800 | 700 | 20.00 | 25.0 | 20.00 | 200.0 |" in text
