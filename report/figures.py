"""What the report's figures share: the status palette and how a figure is written."""
from __future__ import annotations

import os

# Okabe-Ito colours: distinguishable with every common colour-vision deficiency
STATUS_COLORS = {"input": "#999999", "passed": "#009E73", "rejected": "#D55E00", "quarantined": "#E69F00",
                 "source_failed": "#56B4E9"}


def save_figure(fig, outdir: str, name: str, dpi: int = 110) -> str:
    """Lay out, write ``<outdir>/<name>.png`` and free the figure; returns the path."""
    import matplotlib.pyplot as plt  # heavy
    path = os.path.join(outdir, f"{name}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
