"""The toy benchmark is refused on a real lake (issue #23.5).

``shapes-geneval`` (the default ``evaluate.benchmark`` and ``feedback.benchmark``) scores the
synthetic shapes world: solid shapes named by "a red circle"-style captions. On a lake of LAION
or InternVL captions its scores say nothing about the model, yet the feedback rule would steer
notion targets and the phase-2 schedule advance by them. So a flow that evaluates or feeds back
checks the lake first: when most current captions are not shapes-world captions and the benchmark
is shapes-geneval only by default, it stops with one line. Naming shapes-geneval in the config or
with ``--set`` runs it anyway (an explicit choice).
"""
from __future__ import annotations

import re

from djepa_t2i.config import Config, ConfigError
from tasks import shapes_world as sw
from tasks.captioning import strip_tags
from training import lake_io

TOY = "shapes-geneval"
# every word a shapes-world caption uses (tasks/shapes_world.py sample_scene)
VOCABULARY = frozenset({"a", "an", "and", *sw.COLORS, *sw.SHAPES, *map(sw.plural, sw.SHAPES),
                        *sw.COUNT_WORDS.values(), *" ".join(sw.RELATION_WORDS.values()).split()})
WORD = re.compile(r"[a-z]+")


def is_shapes_caption(text: str) -> bool:
    """Every word of ``text`` is shapes-world vocabulary (and there is at least one)."""
    words = WORD.findall(text.lower())
    return bool(words) and all(w in VOCABULARY for w in words)


def shapes_share(lake: str) -> tuple[int, int]:
    """(shapes-world captions, all current captions) in ``lake``."""
    caps = [strip_tags(c, t) for c, t in lake_io.current_captions(lake)]
    return sum(map(is_shapes_caption, caps)), len(caps)


def check_benchmark(lake: str, cfg: Config, sections: tuple[str, ...] = ("evaluate", "feedback")) -> None:
    """A ``ConfigError`` when a section of ``sections`` uses shapes-geneval by default on a lake
    whose current captions are mostly not shapes-world captions. A lake without captions passes
    (nothing to judge by)."""
    by_default = [s for s in sections if getattr(cfg, s).benchmark == TOY
                  and "benchmark" not in getattr(cfg, s).model_fields_set]
    if not by_default:
        return
    n_shapes, n = shapes_share(lake)
    if n and 2 * n_shapes < n:
        keys = " and ".join(f"{s}.benchmark" for s in by_default)
        raise ConfigError(
            f"{keys}: shapes-geneval (the default) scores the synthetic shapes world, but {n_shapes} of {n} "
            f"current captions in {lake} are shapes-world captions; set evaluate.benchmark=geneval and "
            f"feedback.benchmark=geneval (GenEval weights: docs/weights-production.md), or name "
            f"shapes-geneval explicitly to run it anyway")
