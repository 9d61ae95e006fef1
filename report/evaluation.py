"""Report plots for evaluation and feedback: scores per category across checkpoints, per-notion
scores, sample grids per checkpoint, and how the sampling weights moved between versions."""
from __future__ import annotations

import os
import textwrap

from PIL import Image

from report.figures import STATUS_COLORS, save_figure
from warehouse import db
from warehouse import lake as lk

MAX_GRIDS = 4        # latest checkpoints that get a sample grid
GRID_PROMPTS = 12    # images per grid
PER_CATEGORY = 2     # of them per GenEval category
WEIGHT_KINDS = ("color", "count", "spatial", "shape")


def _plt():
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    return plt


def _categories_title(bench: str) -> str:
    return f"{bench}: score per category across checkpoints"


def _latest(lake: str) -> list[tuple[str, str]]:
    """(benchmark, checkpoint) of the newest evaluated checkpoint of each benchmark."""
    return db.query(lake, "SELECT benchmark, checkpoint FROM eval_summary GROUP BY benchmark, checkpoint "
                          "QUALIFY row_number() OVER (PARTITION BY benchmark "
                          "ORDER BY max(created_at) DESC, checkpoint DESC) = 1 ORDER BY benchmark")[1]


def scores_by_category(lake: str, outdir: str) -> list[tuple[str, str]]:
    plt = _plt()
    _, rows = db.query(lake, "SELECT benchmark, category, run_id, step, score FROM eval_summary "
                             "ORDER BY benchmark, category, run_id, step")
    out = []
    for bench in sorted({r[0] for r in rows}):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for cat in sorted({r[1] for r in rows if r[0] == bench}):
            for run in sorted({r[2] for r in rows if r[0] == bench and r[1] == cat}):
                pts = [(r[3], r[4]) for r in rows if r[0] == bench and r[1] == cat and r[2] == run]
                ax.plot(*zip(*pts), marker="o", lw=2.5 if cat == "overall" else 1.2,
                        label=f"{cat}" + (f" ({run})" if len({r[2] for r in rows}) > 1 else ""))
        ax.set(xlabel="training step", ylabel="accuracy", ylim=(-0.02, 1.02),
               title=f"{bench}: score per category across checkpoints")
        ax.legend(fontsize=7, ncol=2)
        p = save_figure(fig, outdir, f"eval_categories_{bench}")
        out.append((_categories_title(bench), p))
    return out


def notion_scores(lake: str, outdir: str) -> list[tuple[str, str]]:
    plt = _plt()
    out = []
    for bench, ck in _latest(lake):
        _, rows = db.query(lake, "SELECT notion_kind || '=' || notion, score, n_images FROM eval_notion_scores "
                                 "WHERE benchmark = ? AND checkpoint = ? ORDER BY score, 1", [bench, ck])
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.25 * len(rows) + 1.2))
        ax.barh([r[0] for r in rows], [r[1] for r in rows], color="#0072B2")
        for i, r in enumerate(rows):
            ax.text(r[1] + 0.01, i, f"{r[1]:.2f} (n={r[2]})", va="center", fontsize=7)
        ax.set(xlim=(0, 1.15), xlabel="accuracy of images whose prompt names the notion",
               title=f"{bench} per notion @ {ck}")
        ax.tick_params(axis="y", labelsize=7)
        p = save_figure(fig, outdir, f"eval_notions_{bench}")
        out.append((f"{bench}: per-notion scores at {ck}", p))
    return out


def sample_grids(lake: str, outdir: str) -> list[tuple[str, str]]:
    plt = _plt()
    _, cks = db.query(lake, "SELECT checkpoint, benchmark, max(step) FROM eval_results "
                            "WHERE image_path IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT ?",
                      [MAX_GRIDS])
    out = []
    for ck, bench, _ in cks:
        # the model's images only (control rows have no image), an even share of every category
        _, rows = db.query(lake, "SELECT prompt, image_path, score FROM eval_results WHERE checkpoint = ? "
                                 "AND benchmark = ? AND notion_kind = 'category' AND image_index = 0 "
                                 "AND control IS NULL QUALIFY row_number() OVER (PARTITION BY category "
                                 "ORDER BY prompt_id) <= ? ORDER BY category, prompt_id LIMIT ?",
                           [ck, bench, PER_CATEGORY, GRID_PROMPTS])
        rows = [r for r in rows if r[1] and os.path.exists(r[1])]
        if not rows:
            continue
        cols = 4
        nrow = (len(rows) + cols - 1) // cols
        fig, axes = plt.subplots(nrow, cols, figsize=(2.4 * cols, 2.7 * nrow), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, (prompt, path, score) in zip(axes.flat, rows):
            ax.imshow(Image.open(path).convert("RGB"), interpolation="nearest")
            ax.set_title("\n".join(textwrap.wrap(prompt, 28)) + f"\n[{'ok' if score else 'x'}]", fontsize=7,
                         color=STATUS_COLORS["passed"] if score else STATUS_COLORS["rejected"])
        fig.suptitle(f"{bench} samples @ {ck}", fontsize=9)
        p = save_figure(fig, outdir, f"eval_samples_{ck}_{bench}")
        out.append((f"samples @ {ck} ({bench})", p))
    return out


def weights_movement(lake: str, outdir: str) -> list[tuple[str, str]]:
    plt = _plt()
    if len(lk.partitions(lake, "weights")) < 2:
        return []
    _, rows = db.query(lake, "SELECT version, kind, value, target_freq FROM weights WHERE target_freq IS NOT NULL "
                             "AND kind IN (SELECT unnest(?)) ORDER BY kind, value, version", [list(WEIGHT_KINDS)])
    kinds = [k for k in WEIGHT_KINDS if any(r[1] == k for r in rows)]
    if not kinds:
        return []
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.8), squeeze=False)
    versions = sorted({r[0] for r in rows})
    for ax, kind in zip(axes[0], kinds):
        for value in sorted({r[2] for r in rows if r[1] == kind}):
            pts = {r[0]: r[3] for r in rows if r[1] == kind and r[2] == value}
            ax.plot([versions.index(v) for v in versions if v in pts], [pts[v] for v in versions if v in pts],
                    marker="o", label=value)
        ax.set_xticks(range(len(versions)), versions, rotation=45, fontsize=7)
        ax.set(title=f"target frequency: {kind}", ylabel="target_freq")
        ax.legend(fontsize=6)
    p = save_figure(fig, outdir, "weights_movement")
    return [("sampling weights: target frequency per version", p)]


def render(lake: str, outdir: str) -> list[tuple[str, str]]:
    """All evaluation/feedback figures that have data; nothing when the tables are empty."""
    os.makedirs(outdir, exist_ok=True)
    figs = []
    if lk.partitions(lake, "eval_results"):
        figs += scores_by_category(lake, outdir) + notion_scores(lake, outdir) + sample_grids(lake, outdir)
    figs += weights_movement(lake, outdir)
    return figs


def tables(lake: str) -> dict[str, tuple[list[str], list[tuple]]]:
    """Beside each benchmark's plot: every ``eval_summary`` column of its newest checkpoint."""
    out = {}
    for bench, ck in _latest(lake):
        out[_categories_title(bench)] = db.query(
            lake, "SELECT checkpoint, * EXCLUDE (checkpoint, run_id, benchmark, created_at) FROM eval_summary "
                  "WHERE benchmark = ? AND checkpoint = ? ORDER BY category = 'overall' DESC, category", [bench, ck])
    return out
