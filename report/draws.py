"""The demo's draw check (``training.draw_check.check_sizes``): does the final checkpoint draw the
prompted colour and shape at its training side and at 2x? One row per size with 95% Wilson
intervals beside the shuffled-prompt control and chance, and the image grids.

It reads ``<report dir>/draws.json``, which the demo writes there before building the page; a
report of a lake without a demo draw check shows nothing for this topic."""
from __future__ import annotations

import html
import json
import os

from warehouse.intervals import wilson

DRAWS_JSON = "draws.json"  # written by training.draw_check.check_sizes (a layer beside this one)
COLUMNS = ["size (px)", "AR steps", "images", "colour right (95% CI)", "shuffled prompts", "chance",
           "shape right (95% CI)", "shuffled prompts", "chance"]


def load(outdir: str) -> dict | None:
    path = os.path.join(outdir, DRAWS_JSON)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def share(p: float, n: int) -> str:
    """``92% (83-96%)``: a share with its 95% Wilson interval."""
    lo, hi = wilson(p, n)
    return f"{p:.0%} ({lo:.0%}-{hi:.0%})"


def rows(d: dict) -> list[list[str]]:
    return [[f"{r['size'][0]}x{r['size'][1]}", str(r["settings"]["steps"]), str(r["images"]),
             share(r["color"], r["images"]), f"{r['color_shuffled']:.0%}", f"{r['chance']['color']:.0%}",
             share(r["shape"], r["images"]), f"{r['shape_shuffled']:.0%}", f"{r['chance']['shape']:.0%}"]
            for r in d["sizes"]]


def fragment(lake: str, outdir: str) -> str:
    d = load(outdir)
    if not d:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in rows(d))
    grids = "".join(
        f"<h3>{r['size'][0]}x{r['size'][1]}: one row per seed</h3><div class='fig'><a href='{g}'><img src='{g}'></a></div>"
        for r in d["sizes"] if r.get("grid") for g in [html.escape(os.path.basename(r["grid"]))])
    return (f"<p>'a &lt;color&gt; &lt;shape&gt;' prompts through <code>t2i generate</code>'s defaults; checkpoint "
            f"{html.escape(d['checkpoint'])}</p><table><tr>{head}</tr>{body}</table>{grids}")
