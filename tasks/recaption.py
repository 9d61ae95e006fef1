"""Recaption: a caption with provenance for every passed pair -> lake/captions.

One partition per (caption version, input shard): ``captions/<version>-<shard>``. A shard whose
partition exists is skipped (a killed run resumes where it stopped; ``force`` redoes it), so
the same model and prompt never duplicate rows; a new prompt is a new version beside the old.
Plain functions; ``flows/recaption.py`` wraps :func:`recaption` in a Prefect flow.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter

from tqdm import tqdm

from djepa_t2i.config import Recaption, default
from tasks import shard_format as sf
from tasks.captioning import ImageReadError, InternVLCaptioner, decode_rgb, image_tags, provenance, with_tags
from tasks.internvl_loader import load_captioner
from tasks.notion_stats import part_name
from tasks.notions import AttributeMatcher, clean_caption, load_lexicons
from warehouse import db
from warehouse import lake as lk

MAX_CAPTION_CHARS = 100_000  # stored as is below this; longer alt text is cut (and counted)


def _pairs_by_shard(lake: str):
    """``(shard, rows)`` of passed pairs, streamed in shard order."""
    con = db.connect(lake)
    try:
        reader = con.sql(
            "SELECT coalesce(shard, '') AS shard, key, source_path, caption, source FROM pairs "
            "WHERE status = 'passed' ORDER BY 1, 2").to_arrow_reader(65536)
        cur, rows = None, []
        for b in reader:
            for r in b.to_pylist():
                if r["shard"] != cur and rows:
                    yield cur, rows
                    rows = []
                cur = r["shard"]
                rows.append(r)
        if rows:
            yield cur, rows
    finally:
        con.close()


def _vlm_captions(rows: list[dict], cap: InternVLCaptioner, batch_size: int, max_pixels: int,
                  counts: Counter) -> dict[str, str]:
    """VLM text per key; keys whose image cannot be read are left out (and counted)."""
    images: dict[str, object] = {}
    by_tar: dict[str, list[str]] = {}
    for r in rows:
        by_tar.setdefault(r["source_path"] or "", []).append(r["key"])
    for tar, keys in by_tar.items():
        found, errors = sf.read_images(tar, keys) if tar else ({}, {k: "no source_path" for k in keys})
        counts["image_errors"] += len(errors)
        for k, (_, data) in found.items():
            try:
                images[k] = decode_rgb(data, max_pixels)
            except ImageReadError:
                counts["image_errors"] += 1
    keys = list(images)
    out: dict[str, str] = {}
    for i in range(0, len(keys), batch_size):
        chunk = keys[i: i + batch_size]
        for k, text in zip(chunk, cap.caption([images[k] for k in chunk])):
            out[k] = text
    return out


def caption_rows(rows: list[dict], cfg: Recaption, prov, counts: Counter, captioner=None,
                 max_pixels: int = default("curate.resolution.max_pixels"), matcher=None) -> list[dict]:
    """Caption rows of one shard with provenance; an unreadable image or an empty VLM output
    falls back to the alt text (``source='alt'``, counted) so no passed pair loses its caption."""
    vlm = _vlm_captions(rows, captioner, cfg.batch_size, max_pixels, counts) if captioner else {}
    now = dt.datetime.now(dt.timezone.utc)
    out = []
    for r in rows:
        alt = clean_caption(r["caption"], MAX_CAPTION_CHARS)
        counts["alt_empty"] += not alt
        text, source = vlm.get(r["key"], ""), prov.source
        if captioner is not None and not text:
            counts["vlm_empty" if r["key"] in vlm else "fallback_alt"] += 1
            text, source = alt, "alt"
        elif captioner is None:
            text = alt
        tags = image_tags(alt, r["source"], matcher) if cfg.append_tags else []
        counts[source] += 1
        out.append({"key": r["key"], "caption": with_tags(text, tags), "alt_text": alt,
                    "tags": "; ".join(tags) or None, "source": source, "model_id": prov.model_id,
                    "prompt_hash": prov.prompt_hash, "version": prov.version, "created_at": now})
    return out


def recaption(lake: str, cfg: Recaption, max_pixels: int = default("curate.resolution.max_pixels"),
              force: bool = False,
              progress: bool = True) -> dict:
    """Plain function under the flow; returns a summary that names the backend that ran."""
    prov = provenance(cfg)
    matcher = AttributeMatcher({"style": load_lexicons()["style"]})
    captioner = None
    if cfg.backend == "internvl":
        captioner = load_captioner(cfg)  # internvl_chat custom-code or -hf layout, by config.json
    counts: Counter = Counter()
    shards = _pairs_by_shard(lake)
    if progress:
        shards = tqdm(shards, desc=f"recaption ({cfg.backend})", unit="shard")
    for shard, rows in shards:
        part = f"{prov.version}-{part_name(shard)}"
        if not force and lk.has_partition(lake, "captions", part):
            counts["shards_skipped"] += 1
            continue
        lk.write_partition(lake, "captions", part,
                           caption_rows(rows, cfg, prov, counts, captioner, max_pixels, matcher))
        counts["shards"] += 1
        counts["pairs"] += len(rows)
    note = ("offline default: alt text kept as the caption (no VLM ran)" if cfg.backend == "alt"
            else f"InternVL from {cfg.weights} on {captioner.device} ({captioner.dtype})")
    return {"backend": cfg.backend, "note": note, "version": prov.version, "model_id": prov.model_id,
            "prompt_hash": prov.prompt_hash, **dict(counts)}
