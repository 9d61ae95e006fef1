"""Notions of every current caption, written to the lake one partition per input shard.

The current captions (view ``captions_current``) are streamed once, ordered by shard; each
shard's rows ``(key, notion, kind, caption_version)`` replace the partition ``notions/<shard>``
and its counts replace ``notion_runs/<shard>`` (the denominator of ``notion_stats.p``). A re-run
rewrites the same partition names, so nothing is duplicated, and partitions of shards that no
longer have captions are removed at the end, so the table always describes the current captions.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import time

import pyarrow as pa
from tqdm import tqdm

from djepa_t2i.config import ConfigError, default
from tasks.captioning import strip_tags
from tasks.notions import NotionExtractor, notion_rows
from warehouse import db
from warehouse import lake as lk

_SQL = """
SELECT coalesce(p.shard, '') AS shard, c.key, c.caption, c.tags, c.version
FROM captions_current c LEFT JOIN pairs p ON p.key = c.key
ORDER BY 1, 2
"""


def part_name(shard: str) -> str:
    """A valid, deterministic partition name for any shard string."""
    safe = re.sub(r"[^A-Za-z0-9._=-]", "_", shard)[:60].strip(".") or "noshard"
    return f"{safe}-{hashlib.sha1(shard.encode()).hexdigest()[:8]}"


def _batches(lake: str, rows_per_batch: int = 65536):
    con = db.connect(lake)
    try:
        reader = con.sql(_SQL).to_arrow_reader(rows_per_batch)
        for b in reader:
            yield b.to_pydict()
    finally:
        con.close()


def _by_shard(lake: str):
    """``(shard, keys, captions, versions)`` per shard, streaming (rows arrive ordered by shard);
    the appended image tags are cut off, the notions describe the caption text."""
    cur, keys, caps, vers = None, [], [], []
    for b in _batches(lake):
        for s, k, c, t, v in zip(b["shard"], b["key"], b["caption"], b["tags"], b["version"]):
            if s != cur and keys:
                yield cur, keys, caps, vers
                keys, caps, vers = [], [], []
            cur = s
            keys.append(k), caps.append(strip_tags(c, t) if c else c), vers.append(v)
    if keys:
        yield cur, keys, caps, vers


def extract_shard(lake: str, shard: str, keys, captions, versions, ex: NotionExtractor,
                  batch_size: int = default("notions.batch_size"),
                  n_process: int = default("notions.n_process")) -> dict:
    t0 = time.time()
    sets, st = ex.extract_many(captions, batch_size=batch_size, n_process=n_process)
    part = part_name(shard)
    lk.write_partition(lake, "notions", part, pa.table(notion_rows(keys, sets, versions)))
    lk.write_partition(lake, "notion_runs", part, [{
        "part": part, "n_captions": st.captions, "n_empty": st.empty, "n_non_utf8": st.non_utf8,
        "n_truncated": st.truncated, "n_no_notions": st.no_notions, "n_rows": st.rows,
        "spacy_model": ex.model_name, "entities": ex.entities, "seconds": time.time() - t0,
        "created_at": dt.datetime.now(dt.timezone.utc)}])
    return {"part": part, **st.as_dict()}


def require_captions(lake: str) -> None:
    """Notions are extracted from captions: a lake without any is one line naming the step."""
    if not lk.partitions(lake, "captions"):
        raise ConfigError(f"lake {lake!r} has no captions: run `t2i recaption --lake {lake}` "
                          "first (the default backend keeps the alt text)")


def extract_lake(lake: str, spacy_model: str = default("notions.spacy_model"),
                 entities: str = default("notions.entities"), max_chars: int = default("notions.max_chars"),
                 batch_size: int = default("notions.batch_size"), n_process: int = default("notions.n_process"),
                 progress: bool = True) -> dict:
    """Notions of all current captions; returns a summary with every bad-input count."""
    require_captions(lake)
    ex = NotionExtractor(spacy_model, entities, max_chars)
    total = {"shards": 0, "captions": 0, "empty": 0, "non_utf8": 0, "truncated": 0,
             "no_notions": 0, "rows": 0, "spacy_model": ex.model_name, "entities": entities}
    written = set()
    shards = _by_shard(lake)
    if progress:
        shards = tqdm(shards, desc="notion-stats", unit="shard")
    for shard, keys, caps, vers in shards:
        r = extract_shard(lake, shard, keys, caps, vers, ex, batch_size, n_process)
        written.add(r["part"])
        total["shards"] += 1
        for k in ("captions", "empty", "non_utf8", "truncated", "no_notions", "rows"):
            total[k] += r[k]
    for table in ("notions", "notion_runs"):  # shards with no current caption any more
        for p in set(lk.partitions(lake, table)) - written:
            lk.delete_partition(lake, table, p)
    return total
