"""Fig. 5-like plots of the data distribution: resolution x aspect of the passed pairs, and the
most frequent notions of each kind with their share p of captions."""
from __future__ import annotations

import os

import numpy as np

from report.figures import save_figure
from warehouse import db

TOP = 15
TOP_TITLE = "top notions with p"
TABLE_TOP = 5  # per kind, in the table beside the plot


def _resolution_aspect(lake: str, outdir: str) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt  # heavy
    cols, rows = db.query(lake, "SELECT res_bucket, aspect_bucket, n FROM resolution_aspect")
    if not rows:
        return None
    res = sorted({r[0] for r in rows})
    asp = sorted({r[1] for r in rows})
    m = np.zeros((len(asp), len(res)))
    for r, a, n in rows:
        m[asp.index(a), res.index(r)] = n
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bottom = np.zeros(len(res))
    for i, a in enumerate(asp):
        ax.bar(res, m[i], bottom=bottom, label=a.split(" ", 1)[-1])
        bottom += m[i]
    ax.set_xlabel("side sqrt(w*h), px")
    ax.set_ylabel("passed pairs")
    ax.set_title(f"resolution x aspect ({int(m.sum())} passed pairs)")
    ax.legend(fontsize=7, title="aspect w:h", title_fontsize=7)
    path = save_figure(fig, outdir, "notions_resolution_aspect")
    return "resolution and aspect ratio of passed pairs", path


def _top_notions(lake: str, outdir: str) -> tuple[str, str] | None:
    import matplotlib.pyplot as plt  # heavy
    _, rows = db.query(lake, "SELECT kind, notion, p FROM notion_stats "
                             "QUALIFY row_number() OVER (PARTITION BY kind ORDER BY n DESC, notion) <= ? "
                             "ORDER BY kind, p DESC", [TOP])
    if not rows:
        return None
    kinds = sorted({r[0] for r in rows})
    ncol = min(4, len(kinds))
    nrow = -(-len(kinds) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.flat[len(kinds):]:
        ax.axis("off")
    for ax, kind in zip(axes.flat, kinds):
        sel = [r for r in rows if r[0] == kind][::-1]
        ax.barh([r[1] for r in sel], [r[2] for r in sel], color="#0072B2")
        ax.set_title(kind, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("p", fontsize=8)
    fig.suptitle("top notions per kind (p = share of captions)", fontsize=10)
    path = save_figure(fig, outdir, "notions_top")
    return TOP_TITLE, path


def render(lake: str, outdir: str) -> list[tuple[str, str]]:
    import matplotlib  # heavy
    matplotlib.use("Agg")
    os.makedirs(outdir, exist_ok=True)
    return [f for f in (_resolution_aspect(lake, outdir), _top_notions(lake, outdir)) if f]


def tables(lake: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """The most frequent notions of each kind with count and share of captions (in %)."""
    return {TOP_TITLE: db.query(
        lake, "SELECT kind, notion, n, round(100 * p, 2) AS \"share %\" FROM notion_stats "
              "QUALIFY row_number() OVER (PARTITION BY kind ORDER BY n DESC, notion) <= ? "
              "ORDER BY kind, n DESC, notion", [TABLE_TOP])}
