"""What the model saw: per-notion training exposure over steps, and the resolutions it trained at
(``batch_stats`` summed over ranks; the feedback sampler's accepted samples, paper §2.3)."""
from __future__ import annotations

from report.figures import save_figure
from warehouse import db

RUNS = 2   # newest training runs shown
TOP = 8    # notions per run in the plot
TABLE_TOP = 12


def _runs(lake: str) -> list[str]:
    return [r for (r,) in db.query(lake, "SELECT run_id FROM batch_stats WHERE kind = 'notion' GROUP BY run_id "
                                         "ORDER BY max(created_at) DESC, run_id LIMIT ?", [RUNS])[1]]


def _title(run: str) -> str:
    return f"training exposure: {run}"


def render(lake: str, outdir: str) -> list[tuple[str, str]]:
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    out = []
    for run in _runs(lake):
        _, rows = db.query(lake, "SELECT step, value, count FROM batch_stats_agg WHERE run_id = ? AND kind = 'notion' "
                                 "ORDER BY step", [run])
        totals: dict[str, float] = {}
        for _, v, c in rows:
            totals[v] = totals.get(v, 0.0) + c
        top = sorted(totals, key=lambda v: (-totals[v], v))[:TOP]
        _, res = db.query(lake, "SELECT CAST(value AS INTEGER) AS side, sum(count) FROM batch_stats_agg "
                                "WHERE run_id = ? AND kind = 'resolution' GROUP BY ALL ORDER BY side", [run])
        fig, axs = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 2]})
        for v in top:
            acc, xs, ys = 0.0, [], []
            for step, value, c in rows:
                if value == v:
                    acc += c
                    xs.append(step)
                    ys.append(acc)
            axs[0].plot(xs, ys, marker=".", label=v)
        axs[0].set(xlabel="training step", ylabel="samples seen (cumulative)",
                   title=f"top {len(top)} notions seen by {run}")
        axs[0].legend(fontsize=7)
        if res:
            sides = [s for s, _ in res]
            axs[1].hist(sides, weights=[n for _, n in res], bins=min(20, len(sides)), color="#0072B2")
            axs[1].set(xlabel="side sqrt(w*h) after the transform, px", ylabel="samples",
                       title="training resolutions")
        out.append((_title(run), save_figure(fig, outdir, f"training_exposure_{run}")))
    return out


def tables(lake: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """Per run: the most seen notions, with their share of accepted samples (in %)."""
    return {_title(run): db.query(
        lake, "WITH acc AS (SELECT sum(count) AS n FROM batch_stats_agg WHERE run_id = $1 AND kind = 'accepted') "
              "SELECT value AS notion, sum(count)::BIGINT AS samples, "
              "round(100 * sum(count) / any_value(acc.n), 1) AS \"share %\", max(step) AS last_step "
              "FROM batch_stats_agg, acc WHERE run_id = $1 AND kind = 'notion' GROUP BY value "
              "ORDER BY samples DESC, notion LIMIT $2", [run, TABLE_TOP]) for run in _runs(lake)}
