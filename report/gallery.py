"""Thumbnails of curated pairs: for each stage, pairs it turned away with the reason, and pairs
that passed every stage with their filter scores, so a person can judge a filter by eye.

Images are read from the pair's source tar by key (members with unsafe paths are refused, as in
curation) and decoded with curation's safe decoder; a pair whose image cannot be shown
(quarantined as corrupt, tar moved) gets a tile with its reason only.
"""
from __future__ import annotations

import html
import os
import tarfile

from tasks.decode import DecodeError, decode_image
from tasks.shard_format import read_images
from warehouse import db

PER_GROUP = 6      # tiles per (status, stage)
THUMB = 150        # px, longest side
MAX_PIXELS = 64_000_000


def _images(tar_path: str, keys: set[str]) -> dict[str, bytes]:
    """The image bytes of ``keys`` in one tar (tasks/shard_format.py's safe reader); a moved or
    corrupt tar gives nothing, and its tiles show the reason only."""
    try:
        found, _ = read_images(tar_path, keys)
    except (OSError, tarfile.TarError, EOFError):
        return {}
    return {k: data for k, (_, data) in found.items()}


def _thumb(data: bytes | None, path: str) -> bool:
    try:
        im = decode_image(data, MAX_PIXELS).image
    except DecodeError:
        return False
    im.thumbnail((THUMB, THUMB))
    im.save(path, "JPEG", quality=85)
    return True


def _rows(lake: str) -> list[tuple]:
    return db.query(lake, """
        SELECT p.status, coalesce(p.stage, '') AS stage, p.shard, p.key, p.source_path, p.reason, p.width, p.height,
               (SELECT string_agg(f.filter || ' ' || round(f.score, 2), ', ' ORDER BY f.filter) FROM filter_scores f
                WHERE f.shard = p.shard AND f.key = p.key AND f.score IS NOT NULL) AS scores
        FROM pairs p
        QUALIFY row_number() OVER (PARTITION BY p.status, p.stage ORDER BY hash(p.shard || '/' || p.key)) <= ?
        ORDER BY p.status = 'passed', p.status, stage, p.shard, p.key""", [PER_GROUP])[1]


def fragment(lake: str, outdir: str) -> str:
    """The gallery as an HTML fragment; thumbnails go to ``<outdir>/gallery/``."""
    rows = _rows(lake)
    if not rows:
        return ""
    d = os.path.join(outdir, "gallery")
    os.makedirs(d, exist_ok=True)
    by_tar: dict[str, set[str]] = {}
    for r in rows:
        if r[4]:
            by_tar.setdefault(r[4], set()).add(r[3])
    images = {(tar, k): b for tar, keys in by_tar.items() for k, b in _images(tar, keys).items()}
    groups: dict[tuple[str, str], list[str]] = {}
    for status, stage, shard, key, tar, reason, w, h, scores in rows:
        name = f"{shard}_{key}.jpg".replace("/", "_")
        shown = _thumb(images.get((tar, key)), os.path.join(d, name))
        img = f"<img src='gallery/{html.escape(name)}'>" if shown else "<div class='noimg'>(no image)</div>"
        text = reason if status != "passed" else (scores or "passed")
        size = f"{w}x{h} · " if w and h else ""
        groups.setdefault((status, stage), []).append(
            f"<div class='tile {'ok' if status == 'passed' else 'no'}'>{img}<b>{html.escape(key)}</b><br>"
            f"{html.escape(size + (text or ''))}</div>")
    parts = []
    for (status, stage), tiles in groups.items():
        label = "passed every stage" if status == "passed" else f"{status} at {stage or '?'}"
        parts.append(f"<h3>{html.escape(label)}</h3><div class='tiles'>{''.join(tiles)}</div>")
    return "\n".join(parts)
