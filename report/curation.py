"""Curation plots: the filter funnel, resolution and aspect histograms, score distributions;
the funnel and the grouped rejection reasons as tables."""
from __future__ import annotations

import numpy as np

from report.figures import STATUS_COLORS, save_figure
from warehouse import db

FUNNEL = "filter funnel"


def _save(fig, outdir: str, name: str) -> str:
    return save_figure(fig, outdir, f"curation_{name}", dpi=90)


def render(lake: str, outdir: str) -> list[tuple[str, str]]:
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    con = db.connect(lake)
    try:
        n = con.execute("SELECT count(*) FROM pairs").fetchone()[0]
        if not n:
            return []
        out = []
        st = con.execute("SELECT status, coalesce(stage, '') AS stage, count(*) FROM pairs "
                         "WHERE status <> 'passed' GROUP BY ALL ORDER BY 1, 3 DESC").fetchall()
        passed = con.execute("SELECT count(*) FROM pairs WHERE status = 'passed'").fetchone()[0]
        labels = ["input"] + [f"{s}: {g}" for s, g, _ in st] + ["passed"]
        vals = [n] + [c for *_, c in st] + [passed]
        colors = [STATUS_COLORS["input"]] + [STATUS_COLORS[s] for s, *_ in st] + [STATUS_COLORS["passed"]]
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(vals) + 1))
        ax.barh(labels[::-1], vals[::-1], color=colors[::-1])
        for i, v in enumerate(vals[::-1]):
            ax.text(v, i, f" {v}", va="center")
        ax.set_title(f"curation funnel: {n} in = {passed} passed + rejected + quarantined")
        out.append((FUNNEL, _save(fig, outdir, "funnel")))

        wh = np.array(con.execute("SELECT width, height, status = 'passed' FROM pairs "
                                  "WHERE width IS NOT NULL").fetchall(), dtype=float)
        if len(wh):
            fig, axs = plt.subplots(1, 2, figsize=(10, 3.5))
            side = np.sqrt(wh[:, 0] * wh[:, 1])
            asp = np.log2(wh[:, 0] / wh[:, 1])
            ok = wh[:, 2] > 0
            bins = np.logspace(0, np.log10(max(side.max(), 2)), 30)
            colors = [STATUS_COLORS["passed"], STATUS_COLORS["rejected"]]
            axs[0].hist([side[ok], side[~ok]], bins=bins, stacked=True, label=["passed", "not passed"], color=colors)
            axs[0].set_xscale("log")
            axs[0].set_xlabel("sqrt(width x height), px")
            axs[0].legend()
            axs[1].hist([asp[ok], asp[~ok]], bins=30, stacked=True, label=["passed", "not passed"], color=colors)
            axs[1].set_xlabel("log2(width / height)")
            out.append(("resolution and aspect", _save(fig, outdir, "resolution")))

        rows = con.execute("SELECT filter || ' (' || backend || ')', score, passed FROM filter_scores "
                           "WHERE filter NOT IN ('resolution', 'dedup')").fetchall()
        names = sorted({r[0] for r in rows})
        if names:
            fig, axs = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
            for ax, nm in zip(axs[0], names):
                s = np.array([r[1] for r in rows if r[0] == nm and r[1] is not None])
                p = np.array([bool(r[2]) for r in rows if r[0] == nm and r[1] is not None])
                ax.hist([s[p], s[~p]], bins=30, stacked=True, label=["pass", "reject"],
                    color=[STATUS_COLORS["passed"], STATUS_COLORS["rejected"]])
                ax.set_title(nm, fontsize=9)
                ax.legend(fontsize=7)
            out.append(("filter score distributions", _save(fig, outdir, "scores")))
        return out
    finally:
        con.close()


def tables(lake: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """The funnel beside its plot (share of all input pairs), and why pairs were turned away."""
    f = db.query(lake, "SELECT status, stage, n, share FROM funnel")
    r = db.query(lake, "SELECT status, stage, reason, n, example FROM reasons LIMIT 30")
    return {FUNNEL: f, "rejection and quarantine reasons (numbers masked as #)": r}
