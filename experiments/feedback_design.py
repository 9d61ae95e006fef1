"""What the feedback ablation's runner (``experiments.feedback_ablation``) and its report
(``experiments.feedback_report``) both read: the arms, the rare colours and the world they
are rare in."""
from __future__ import annotations

from tasks import shapes_world as sw

ARMS = ("uniform", "static", "feedback")
RARE = ("purple", "orange")


def world(rare_weight: float):
    """Only the ``colors`` category (one coloured object), with the rare colours down-weighted."""
    return sw.ShapesDistribution(categories={c: float(c == "colors") for c in sw.CATEGORIES},
                                 colors={c: rare_weight for c in RARE})
