"""Wilson and mean intervals (warehouse/intervals.py) and the same formula in eval_summary."""
import math
from pathlib import Path

import duckdb
import pytest

from warehouse.intervals import mean_interval, wilson

ROOT = Path(__file__).resolve().parent.parent


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


def test_eval_summary_has_wilsons_interval_for_every_k_of_n():
    """The eval_summary view (warehouse/sql/30_eval.sql) writes Wilson's formula in SQL: it must
    give wilson()'s bounds, the score inside them (16 of 16 gave hi = 0.9999999999999998)."""
    lines = (ROOT / "warehouse" / "sql" / "30_eval.sql").read_text().splitlines()
    sql = "\n".join(x for x in lines if not x.lstrip().startswith("--"))  # comments hold ';'
    view = next(s for s in sql.split(";") if "VIEW eval_summary" in s)
    con = duckdb.connect()
    con.execute("""CREATE TABLE eval_results AS
        SELECT 'ck' || n AS checkpoint, 'r' AS run_id, n AS step, 'b' AS benchmark, 'k' || k AS category,
               (i < k)::DOUBLE AS score, 'category' AS notion_kind, NULL::VARCHAR AS control,
               now() AS created_at
        FROM range(1, 41) t(n), range(0, 41) u(k), range(0, 40) v(i) WHERE k <= n AND i < n""")
    con.execute(view)
    rows = con.execute("SELECT step, score, lo, hi FROM eval_summary WHERE category <> 'overall'").fetchall()
    assert len(rows) == sum(n + 1 for n in range(1, 41))
    for n, p, lo, hi in rows:
        assert 0.0 <= lo <= p <= hi <= 1.0, (n, p, lo, hi)
        assert (lo, hi) == pytest.approx(wilson(p, n), abs=1e-12)


def test_mean_interval_shrinks_with_n():
    a = mean_interval([(0.5, 16), (0.25, 16)])
    b = mean_interval([(0.5, 1600), (0.25, 1600)])
    assert a[0] < b[0] < 0.375 < b[1] < a[1]
    assert math.isclose((b[0] + b[1]) / 2, 0.375)
