"""``t2i report``: one HTML page linking PNG plots of the lake.

Each ``warehouse.plots.<topic>`` module contributes ``render(lake, outdir) -> list[(title, png)]``
for its own tables (curation funnel and resolutions, notions, evaluation and weights); a topic
whose tables are empty contributes nothing.
"""
from __future__ import annotations

import argparse
import html
import importlib
import os

TOPICS = ("curation", "notions", "evaluation")


def build_report(lake: str, out: str) -> str:
    import matplotlib
    matplotlib.use("Agg")
    os.makedirs(out, exist_ok=True)
    sections = []
    for topic in TOPICS:
        try:
            mod = importlib.import_module(f"warehouse.plots.{topic}")
        except ModuleNotFoundError:
            continue
        figs = mod.render(lake, out)
        if figs:
            sections.append((topic, figs))
    parts = ["<html><head><meta charset='utf-8'><title>djepa-t2i report</title></head><body>",
             f"<h1>djepa-t2i report</h1><p>lake: {html.escape(os.path.abspath(lake))}</p>"]
    for topic, figs in sections:
        parts.append(f"<h2>{html.escape(topic)}</h2>")
        for title, png in figs:
            rel = os.path.relpath(png, out)
            parts.append(f"<h3>{html.escape(title)}</h3><a href='{html.escape(rel)}'>"
                         f"<img src='{html.escape(rel)}' style='max-width:900px'></a>")
    parts.append("</body></html>")
    path = os.path.join(out, "index.html")
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default="runs/lake", help="lake directory")
    p.add_argument("--out", default=None, help="report directory (default: <lake>/../report)")


def run(args) -> int:
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.lake)), "report")
    path = build_report(args.lake, out)
    print(f"report: {path}")
    return 0
