"""Flow summaries as Prefect artifacts, so the Prefect UI shows each run's numbers.

A flow calls :func:`publish_summary` with its summary dict: inside a flow run it creates a
markdown artifact (the summary's scalar fields plus the warehouse tables named for that flow in
``FLOW_TABLES``) and, when the lake's report exists, a link artifact to it. Outside a flow run
(``--no-prefect``, plain function calls in tests) it does nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from warehouse import db

LIMIT = 20  # rows per table in an artifact
FLOW_TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "curate-laion": (("funnel", "SELECT status, stage, n, share FROM funnel"),
                     ("reasons", "SELECT status, stage, reason, n FROM reasons")),
    "recaption": (("caption versions", "SELECT version, source, model_id, n, n_current, n_empty, mean_chars "
                                       "FROM caption_stats"),),
    "notion-stats": (("top notions", "SELECT kind, notion, n, round(p, 4) AS p FROM notion_stats "
                                     "ORDER BY n DESC, notion"),),
    "build-shards": (("samples by source", "SELECT source, count(*) AS n FROM samples GROUP BY ALL ORDER BY n DESC"),),
    "train": (("what the model saw", "SELECT run_id, kind, value, sum(n) AS n FROM training_exposure "
                                     "WHERE kind IN ('notion', 'resolution') GROUP BY ALL ORDER BY n DESC"),),
    "evaluate-checkpoints": (("newest scores", "SELECT * EXCLUDE (run_id, created_at) FROM eval_summary "
                                               "QUALIFY step = max(step) OVER (PARTITION BY benchmark)"),),
    "feedback": (("sampling weights in force", "SELECT version, kind, value, target_freq, weight, reason "
                                               "FROM sampling_weights_current ORDER BY kind, value"),),
}
FLOW_TABLES["demo"] = FLOW_TABLES["curate-laion"][:1] + FLOW_TABLES["evaluate-checkpoints"]


def markdown_table(cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        s = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
        return s.replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


def summary_markdown(flow: str, lake: str, summary: dict[str, Any]) -> str:
    """The run's scalar summary fields, then its warehouse tables (first ``LIMIT`` rows each)."""
    scalars = [(k, v) for k, v in summary.items() if isinstance(v, (str, int, float, bool)) or v is None]
    parts = [f"# {flow}", f"lake: `{lake}`", "", markdown_table(["field", "value"], scalars)]
    for title, sql in FLOW_TABLES.get(flow, ()):
        cols, rows = db.query(lake, f"SELECT * FROM ({sql}) LIMIT {LIMIT}")
        if rows:
            parts += ["", f"## {title}", "", markdown_table(cols, rows)]
    return "\n".join(parts)


def report_path(lake: str) -> Path:
    """Where ``t2i report`` writes by default: ``<lake>/../report/index.html``."""
    return Path(os.path.abspath(lake)).parent / "report" / "index.html"


def publish_summary(flow: str, lake: str, summary: dict[str, Any]) -> str | None:
    """Create the run's artifacts; returns the markdown artifact's key, or None outside a run."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact  # heavy
    from prefect.context import FlowRunContext  # heavy
    if FlowRunContext.get() is None:
        return None
    key = f"{flow}-summary"
    create_markdown_artifact(key=key, markdown=summary_markdown(flow, lake, summary),
                             description=f"{flow}: summary and warehouse tables")
    report = report_path(lake)
    if "://" not in str(lake) and report.is_file():
        create_link_artifact(key=f"{flow}-report", link=report.as_uri(), link_text="HTML report",
                             description="plots with their numbers and the curation gallery")
    return key
