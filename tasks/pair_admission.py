"""Admission of one pair into curation: the read, metadata, caption and decode checks.

A pair that cannot be curated is emitted as quarantined with its stage and reason (one row per
key, however many of its members were refused); every other pair becomes a decoded
:class:`~tasks.stages.Candidate` for the stages of ``curate.order``.
"""
from __future__ import annotations

import os

from djepa_t2i.config import Curate
from tasks import img2dataset_meta as i2d
from tasks import shard_format as sf
from tasks import shards as sh
from tasks.captioning import normalize_caption
from tasks.curate_rows import PairRows
from tasks.decode import DecodeError, decode_image
from tasks.stages import Candidate


class Admission:
    """The admission checks of one shard (its refused members and tar/parquet disagreements)."""

    def __init__(self, s: sh.ShardRead, c: Curate, rows: PairRows, draft: tuple[int, int] | None = None):
        self.s, self.c, self.rows, self.draft = s, c, rows, draft  # draft: tasks.decode.decode_image
        self.refused: dict[str, list[str]] = {}
        for name, why in s.refused:
            self.refused.setdefault(sf.split_key(name)[0], []).append(why)
        self.only_tar, self.only_pq = set(s.only_in_tar), set(s.only_in_parquet)

    def admit(self, key: str) -> Candidate | None:
        """The decoded candidate, or None once the pair is emitted as quarantined."""
        if key in self.refused:
            self.rows.emit(key, "quarantined", "read",
                           "tar member refused, not extracted: " + "; ".join(self.refused[key]))
            return None
        try:
            return self._admit(key)
        except Exception as e:  # noqa: BLE001 - one pair's fault must not cost the shard
            self.rows.emit(key, "quarantined", "read", f"unexpected error reading the pair: {type(e).__name__}: {e}")
            return None

    def _admit(self, key: str) -> Candidate | None:
        s, c, emit = self.s, self.c, self.rows.emit
        if key in self.only_pq:
            where = "the tar" if os.path.exists(s.tar_path) else "the tar, which is missing"
            emit(key, "quarantined", "read", f"listed in parquet (status success) but missing from {where}")
            return None
        e = s.entries[key]
        if "_truncated" in e.files:
            emit(key, "quarantined", "read", "member cut off by a truncated tar")
            return None
        if key in self.only_tar:
            emit(key, "quarantined", "read", "in the tar but missing from the shard's parquet")
            return None
        meta, why = sh.parse_meta(e)
        if why:
            emit(key, "quarantined", "metadata", why)
            return None
        src = (s.parquet_rows or {}).get(key) or meta  # img2dataset's row, else the pair's json (same fields)
        info = {"url": meta.get("url"), "source": meta.get("source"), **i2d.pair_columns(src)}
        raw, why = sh.parse_caption(e, meta)
        if why:
            emit(key, "quarantined", "caption", why, **info)
            return None
        norm = normalize_caption(raw, c.caption_max_chars)
        if norm.changes:
            info |= {"caption_raw": raw, "caption_changes": "; ".join(norm.changes)}
        caption = norm.text
        if not caption:
            emit(key, "quarantined", "caption", "empty caption after normalisation: " + info["caption_changes"], **info)
            return None
        try:
            d = decode_image(e.image, c.resolution.max_pixels, self.draft)
        except DecodeError as err:
            emit(key, "quarantined", "decode", str(err), caption=caption, **info)
            return None
        row = {"caption": caption, "width": d.size[0], "height": d.size[1], "orig_width": d.original_size[0],
               "orig_height": d.original_size[1], "mode": d.mode, "orientation": d.orientation, **info}
        return Candidate(key, row, d.image)
