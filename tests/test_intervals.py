"""Wilson and mean intervals (warehouse/intervals.py) and the same formula in eval_summary."""
import math

import pytest

from warehouse.intervals import mean_interval, wilson


def test_wilson_known_values():
    lo, hi = wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    lo, hi = wilson(0.0, 16)  # 0 of 16: the interval still reaches ~19%
    assert lo == 0.0 and hi == pytest.approx(0.1936, abs=1e-3)
    assert wilson(1.0, 16)[1] == 1.0 and wilson(0.3, 0) == (0.0, 1.0)


@pytest.mark.parametrize("n", [16, 96, 128, 192, 288, 384])
def test_wilson_holds_the_share_exactly(n):
    """lo <= k/n <= hi for every k, with no round-off: 0 of 96 gave lo = 3e-18 > 0, and the
    feedback-vs-RL plot's error bars (p - lo) went negative."""
    for k in range(n + 1):
        lo, hi = wilson(k / n, n)
        assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)
    assert wilson(0.0, n)[0] == 0.0 and wilson(1.0, n)[1] == 1.0


def test_mean_interval_shrinks_with_n():
    a = mean_interval([(0.5, 16), (0.25, 16)])
    b = mean_interval([(0.5, 1600), (0.25, 1600)])
    assert a[0] < b[0] < 0.375 < b[1] < a[1]
    assert math.isclose((b[0] + b[1]) / 2, 0.375)
