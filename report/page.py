"""``t2i report``: one HTML page of the lake's plots, each with its numbers beside it.

Each topic module of this package (``TOPICS``) may contribute
- ``render(lake, outdir) -> list[(title, png)]``: figures for its own tables;
- ``tables(lake) -> {title: (columns, rows)}``: the numbers behind them; a table whose title
  matches a figure's is shown beside that figure, any other on its own;
- ``fragment(lake, outdir) -> str``: a ready HTML fragment (the thumbnail gallery).
A topic whose tables are empty contributes nothing. Plots use a colour-blind-safe palette.
"""
from __future__ import annotations

import argparse
import datetime as dt
import html
import os
from typing import Any, Sequence

from djepa_t2i.config import default, require_writable
from report import curation, draws, evaluation, gallery, notions, post_training, training
from warehouse.lake import require_lake

TOPICS = {"curation": curation, "gallery": gallery, "notions": notions, "training": training,
          "evaluation": evaluation, "draw check": draws, "post-training": post_training}
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1500px; color: #222; }
h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.fig { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; margin-bottom: 1.2em; }
.fig img { max-width: 900px; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e3e3e3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; }
.tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: .4em 0 1em; }
.tile { width: 150px; font-size: 11px; }
.tile img { width: 150px; height: 150px; object-fit: contain; background: #f4f4f4; display: block; }
.tile.ok { border-top: 4px solid #009E73; } .tile.no { border-top: 4px solid #D55E00; }
.noimg { width: 150px; height: 150px; background: #f4f4f4; color: #777; display: flex; align-items: center; justify-content: center; }
"""


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"<td class='num'>{v:.4g}</td>"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"<td class='num'>{v:,}</td>"
    if isinstance(v, (dt.datetime, dt.date)):
        return f"<td>{html.escape(v.isoformat(timespec='seconds') if isinstance(v, dt.datetime) else v.isoformat())}</td>"
    return f"<td>{'' if v is None else html.escape(str(v))}</td>"


def html_table(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _topic_html(mod, lake: str, out: str) -> str:
    figs = mod.render(lake, out) if hasattr(mod, "render") else []
    tables = dict(mod.tables(lake)) if hasattr(mod, "tables") else {}
    parts = []
    for title, png in figs:
        rel = html.escape(os.path.relpath(png, out))
        table = tables.pop(title, None)
        side = html_table(*table) if table and table[1] else ""
        parts.append(f"<h3>{html.escape(title)}</h3><div class='fig'><a href='{rel}'><img src='{rel}'></a>"
                     f"{side}</div>")
    for title, (cols, rows) in tables.items():
        if rows:
            parts.append(f"<h3>{html.escape(title)}</h3>{html_table(cols, rows)}")
    if hasattr(mod, "fragment"):
        parts.append(mod.fragment(lake, out))
    return "\n".join(p for p in parts if p)


def build_report(lake: str, out: str) -> str:
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    plt.style.use("tableau-colorblind10")
    os.makedirs(out, exist_ok=True)
    parts = ["<html><head><meta charset='utf-8'><title>djepa-t2i report</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>djepa-t2i report</h1><p>lake: {html.escape(lake if '://' in str(lake) else os.path.abspath(lake))} · "
             f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC</p>"]
    for topic, mod in TOPICS.items():
        body = _topic_html(mod, lake, out)
        if body:
            parts.append(f"<h2>{html.escape(topic)}</h2>\n{body}")
    parts.append("</body></html>")
    path = os.path.join(out, "index.html")
    tmp = os.path.join(out, ".index.html.tmp")  # renamed into place: a full disk leaves no half page
    try:
        with open(tmp, "w") as f:
            f.write("\n".join(parts))
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=default("lake"), help="lake directory")
    p.add_argument("--out", default=None, help="report directory (default: <lake>/../report)")


def run(args) -> int:
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.lake)), "report")
    require_lake("lake", args.lake)
    require_writable("--out", out)
    path = build_report(args.lake, out)
    print(f"report: {path}")
    return 0
