"""Passed pairs -> webdataset training tars at native resolution, plus the ``samples`` index.

Why an index beside the tars: the feedback sampler accepts or discards a sample from its
attributes alone (size, notions, tags, source), so it reads the index, decides, and only then
reads and decodes the image bytes it will train on, straight from the byte range recorded here.
Discards cost no I/O and no decode, and the data stream is a pure function of (seed, state).

Determinism: keys are sorted globally and cut into shards of ``samples_per_shard``; tar members
have a fixed mtime/owner, so the same input gives byte-identical tars. Every output shard is its
own lake partition (``shard-NNNNNN``) and its tar is written to a temporary name and renamed, so a
re-run replaces rather than duplicates, and shards left over from a larger earlier build are
removed.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from djepa_t2i.config import default
from tasks import shard_format as sf
from warehouse import db
from warehouse import lake as lk

SHARD_PREFIX = "shard-"


@dataclass
class BuildResult:
    shards: list[str]     # tar paths written
    n_samples: int
    missing: list[str]    # passed keys whose image was not found in their source tar


def passed_pairs(lake: str) -> pa.Table:
    t = lk.read_table(lake, "pairs")
    d = t.filter(pc.equal(t["status"], "passed"))
    return d.sort_by("key")


def current_captions(lake: str) -> dict[str, dict]:
    """``{key: {caption, version, tags}}``: the ``captions_current`` view if recaption defines it,
    else the newest row per key of ``captions``; absent keys fall back to the alt text."""
    if not lk.partitions(lake, "captions"):
        return {}
    try:
        _, rows = db.query(lake, "SELECT key, caption, version, tags FROM captions_current")
    except Exception:  # view not defined (yet): newest row per key (undated rows count as oldest)
        _, rows = db.query(lake, "SELECT key, caption, version, tags FROM captions "
                                 "ORDER BY key, created_at ASC NULLS FIRST, version ASC NULLS FIRST")
    return {k: {"caption": c, "version": v, "tags": parse_tags(t)} for k, c, v, t in rows if c}


def parse_tags(tags: str | None) -> list[str]:
    if not tags:
        return []
    tags = tags.strip()
    if tags.startswith("["):
        return [str(t) for t in json.loads(tags)]
    return [t.strip() for t in tags.split(",") if t.strip()]


def notions_by_key(lake: str) -> dict[str, list[str]]:
    """``{key: ["kind:notion", ...]}`` sorted, so the sampler can match ``(kind, value)`` targets."""
    out: dict[str, set[str]] = defaultdict(set)
    if lk.partitions(lake, "notions"):
        d = lk.read_table(lake, "notions").select(["key", "notion", "kind"]).to_pydict()
        for k, n, kind in zip(d["key"], d["notion"], d["kind"]):
            out[k].add(f"{kind or 'notion'}:{n}")
    return {k: sorted(v) for k, v in out.items()}


def shard_name(i: int) -> str:
    return f"{SHARD_PREFIX}{i:06d}"


def build(lake: str, out: str, samples_per_shard: int = default("shards.samples_per_shard"),
          progress: bool = True) -> BuildResult:
    """Write every passed pair into ``out/shard-NNNNNN.tar`` and the ``samples`` index."""
    os.makedirs(out, exist_ok=True)
    pairs = passed_pairs(lake).to_pylist()
    caps, notions = current_captions(lake), notions_by_key(lake)
    by_source: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        by_source[p["source_path"]].add(p["key"])
    images: dict[str, tuple[str, bytes]] = {}
    for src in tqdm(sorted(by_source), desc="read source shards", disable=not progress):
        images.update(sf.read_images(src, by_source[src])[0])
    missing = [p["key"] for p in pairs if p["key"] not in images]
    pairs = [p for p in pairs if p["key"] in images]
    chunks = [pairs[i:i + samples_per_shard] for i in range(0, len(pairs), samples_per_shard)]
    written = []
    for i, chunk in enumerate(tqdm(chunks, desc="write shards", disable=not progress)):
        name = shard_name(i)
        tar = os.path.abspath(os.path.join(out, name + ".tar"))
        rows, samples = [], []
        for p in chunk:
            k = p["key"]
            cap = caps.get(k) or {"caption": p["caption"], "version": "alt", "tags": []}
            ext, data = images[k]
            meta = {"key": k, "width": p["width"], "height": p["height"], "source": p["source"],
                    "caption_version": cap["version"], "notions": notions.get(k, []), "tags": cap["tags"]}
            samples.append({"__key__": k, ext: data, "txt": cap["caption"] or "",
                            "json": json.dumps(meta, sort_keys=True).encode()})
            rows.append({**meta, "tar": tar, "caption": cap["caption"] or ""})
        offsets = sf.write_tar(tar, samples)
        for r in rows:
            r["offset"], r["size"], r["ext"] = offsets[r["key"]]
        lk.write_partition(lake, "samples", name, rows)
        written.append(tar)
    _remove_stale(lake, out, len(chunks))
    return BuildResult(written, len(pairs), missing)


def _remove_stale(lake: str, out: str, n: int) -> None:
    """Drop shards and index partitions numbered >= n left by an earlier, larger build."""
    for part in lk.partitions(lake, "samples"):
        if part.startswith(SHARD_PREFIX) and int(part[len(SHARD_PREFIX):]) >= n:
            lk.delete_partition(lake, "samples", part)
    for f in os.listdir(out):
        if f.startswith(SHARD_PREFIX) and f.endswith(".tar") and int(f[len(SHARD_PREFIX):-4]) >= n:
            os.remove(os.path.join(out, f))
