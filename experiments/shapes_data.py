"""The experiments' training data: a shapes world rendered into webdataset shards + a samples index.

Why not the full make-sample -> curate -> recaption -> notion-stats path: the shapes world needs
no curation (every scene is clean and exactly captioned), and an experiment must control the
distribution exactly (``ShapesDistribution``). So scenes go straight through the real shard writer
(``tasks.shard_format.write_tar``: the same tars and byte-range index ``build-shards`` writes),
with notions spelled as notion-stats spells them (``kind:value``), so the feedback sampler, the
sampling weights and the feedback rule all see what they see in production.

Sampling weights v0 come from ``warehouse.weights_v0.tempered_targets`` over the index's observed
shares (what ``t2i notions`` publishes from notion_stats), plus the resolution schedule row.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
from collections import Counter

from tqdm import tqdm

from djepa_t2i.config import Notions
from tasks import shapes_world as sw
from tasks.shard_format import write_tar
from tasks.shard_writer import shard_name
from warehouse import lake as lk
from warehouse import weights as wt
from warehouse.weights_v0 import tempered_targets

NOTION_KINDS = ("color", "shape", "count", "spatial")


def index_notions(scene: sw.Scene) -> list[str]:
    """``kind:value`` attributes of a scene as the samples index stores them (category kept too,
    so batch statistics show the category mix)."""
    return sorted(n.replace("=", ":", 1) for n in scene.notions())


def build_world(lake: str, shards_dir: str, n: int, sizes: list[tuple[int, int]],
                dist: sw.ShapesDistribution, seed: int, per_shard: int = 500,
                progress: bool = True) -> dict[str, Counter]:
    """Render ``n`` scenes (sizes drawn from ``sizes``, (w, h)) into shards + the samples index.
    Returns the observed counts per notion kind. Deterministic for ``seed``."""
    rng = random.Random(f"experiments/world/{seed}")
    os.makedirs(shards_dir, exist_ok=True)
    counts: dict[str, Counter] = {}
    for s0 in tqdm(range(0, n, per_shard), desc="render shards", disable=not progress):
        tar = os.path.abspath(os.path.join(shards_dir, shard_name(s0 // per_shard) + ".tar"))
        samples, rows = [], []
        for i in range(s0, min(n, s0 + per_shard)):
            w, h = rng.choice(sizes)
            scene = sw.sample_scene(rng, w, h, None, dist)
            buf = io.BytesIO()
            sw.render(scene).save(buf, "PNG")
            key = f"shapes{i:08d}"
            notions = index_notions(scene)
            for a in notions:
                k, _, v = a.partition(":")
                counts.setdefault(k, Counter())[v] += 1
            meta = {"key": key, "width": w, "height": h, "source": "shapes", "caption_version": "exact",
                    "notions": notions, "tags": []}
            samples.append({"__key__": key, "png": buf.getvalue(), "txt": scene.caption,
                            "json": json.dumps(meta, sort_keys=True).encode()})
            rows.append({**meta, "tar": tar, "caption": scene.caption})
        offsets = write_tar(tar, samples)
        for r in rows:
            r["offset"], r["size"], r["ext"] = offsets[r["key"]]
        lk.write_partition(lake, "samples", shard_name(s0 // per_shard), rows)
    return counts


def v0_rows(counts: dict[str, Counter], n: int, phase: str, schedule: tuple[float, float, float, float],
            temper: Notions = Notions()) -> list[dict]:
    """Sampling weights v0 from observed shares (``weights_v0``'s tempering rule) + resolution."""
    rows = []
    for kind in NOTION_KINDS:
        shares = {v: c / n for v, c in counts.get(kind, Counter()).items()}
        for v, t in sorted(tempered_targets(shares, temper).items()):
            rows.append({"kind": kind, "value": v, "observed_freq": shares[v], "target_freq": t,
                         "weight": t / shares[v],
                         "reason": f"v0: observed p={shares[v]:.4g} tempered^{temper.temper:g} within {kind}",
                         "params": json.dumps({"natural": shares[v], "n": counts[kind][v]})})
    mu, sigma, a, b = schedule
    rows.append(wt.resolution_row(phase, mu, sigma, a, b, f"experiment schedule {schedule} kpx"))
    return rows


def run_lake(data_lake: str, lake: str, counts: dict[str, Counter], n: int, phase: str,
             schedule: tuple[float, float, float, float], notion_targets: bool = True) -> str:
    """A fresh lake for one training run: the data lake's samples index (same shards) + v0.
    ``notion_targets=False``: v0 holds only the resolution row, so the sampler never discards
    for a notion (uniform sampling of the data: the natural mix)."""
    shutil.rmtree(lake, ignore_errors=True)
    shutil.copytree(lk.table_dir(data_lake, "samples"), lk.table_dir(lake, "samples"))
    rows = v0_rows(counts, n, phase, schedule)
    if not notion_targets:
        return wt.publish(lake, [r for r in rows if r["kind"] == "resolution"],
                          "experiment v0: no notion targets (uniform sampling)")
    return wt.publish(lake, rows, "experiment v0: tempered observed shares")
