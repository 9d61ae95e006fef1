"""Curate one img2dataset shard: every input pair ends passed, rejected or quarantined.

``process_shard`` reads a shard safely, decodes in batches of at most ``curate.max_batch_pixels``
decoded pixels (and ``curate.chunk`` pairs): bounded memory whatever the images' sizes; it runs the
stages in ``cfg.curate.order`` over the surviving candidates of each batch (models batched; CLIP
embeddings computed once and shared by the CLIP-head filters), and returns the rows of the lake
tables ``pairs``, ``filter_scores`` and ``shard_runs``. ``curate_shard`` writes them as one
partition per shard, ``shard_runs`` last: its presence marks the shard finished, so a killed run
redoes exactly the unfinished shards and a rerun replaces instead of duplicating.
Cross-shard duplicates are settled afterwards by ``cross_shard_dedup`` over the whole lake.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pyarrow as pa

from djepa_t2i.config import CLIP_STAGES, Config
from tasks import img2dataset_meta as i2d
from tasks import shard_format as sf
from tasks import shards as sh
from tasks.captioning import normalize_caption
from tasks.decode import DecodeError, decode_image, header_pixels
from tasks.filters import MODEL_STAGES, build
from tasks.filters.dedup import DedupFilter, phash, pixel_sha256
from tasks.filters.resolution import ResolutionFilter
from warehouse import lake as lk
from warehouse.schema import SCHEMAS

CROSS = "duplicate across shards of "
_RESTORED = {"status": "passed", "stage": None, "reason": None, "score": None, "dup_of": None}
STATUSES = ("passed", "rejected", "quarantined", i2d.SOURCE_FAILED)  # every input pair ends in exactly one


@dataclass
class Models:
    filters: dict  # stage -> filter object (model stages only)
    clip: object | None
    backends: dict[str, str]


def _model_key(cfg: Config) -> str:
    c = cfg.curate
    return json.dumps({s: getattr(c, s).model_dump() for s in (*MODEL_STAGES, "laion_scores", *CLIP_STAGES)}
                      | {"clip": [c.clip_model, c.clip_weights, c.clip_quick_gelu, c.clip_allow_torchscript],
                          "order": list(c.order)}, sort_keys=True)


_MODELS: dict[str, Models] = {}


def _build_models(cfg: Config) -> Models:
    import torch
    torch.set_num_threads(1)  # one thread per model: parallelism comes from Dask workers
    filters, backends = {}, {}
    for s in MODEL_STAGES:
        if s in cfg.curate.order and getattr(cfg.curate, s).backend != "none":
            filters[s] = build(s, cfg)
            backends[s] = filters[s].backend
    laion = build("laion_scores", cfg) if "laion_scores" in cfg.curate.order else None
    if laion is not None:  # LAION's own columns as filter inputs (off unless a threshold is set)
        filters["laion_scores"], backends["laion_scores"] = laion, laion.backend
    for s in (s for s in CLIP_STAGES if s in cfg.curate.order):  # beyond the paper: reuse the CLIP embeddings
        if cfg.curate.clip_weights:
            filters[s] = build(s, cfg)
            backends[s] = filters[s].backend
        else:
            backends[s] = "skipped: needs CLIP weights (curate.clip_weights)"
    clip = None
    if any(f.needs_clip for f in filters.values()):
        from tasks.filters.clip_embed import ClipEmbedder
        b = cfg.curate.aesthetic if getattr(filters.get("aesthetic"), "needs_clip", False) else cfg.curate.nsfw
        c = cfg.curate
        clip = ClipEmbedder(c.clip_model, c.clip_weights, b.device, b.batch_size, c.clip_quick_gelu,
                            c.clip_allow_torchscript)
        backends["clip"] = f"open_clip:{c.clip_model}" + ("-quickgelu" if clip.info["quick_gelu"] else "")
        for f in filters.values():
            if hasattr(f, "clip"):
                f.clip = clip
    return Models(filters, clip, backends)


def load_models(cfg: Config) -> Models:
    """Models for this config, loaded once per process (per Dask worker), never per image."""
    k = _model_key(cfg)
    if k not in _MODELS:
        _MODELS.clear()  # one model set per process: a new config replaces the old one
        _MODELS[k] = _build_models(cfg)
    return _MODELS[k]


class AccountingError(AssertionError):
    pass


@dataclass
class Candidate:
    key: str
    row: dict
    image: object
    emb: object = None


@dataclass
class ShardOutput:
    pairs: list[dict] = field(default_factory=list)
    scores: list[dict] = field(default_factory=list)
    run: dict = field(default_factory=dict)


def _now():
    return datetime.now(timezone.utc)


def process_shard(tar_path: str, cfg: Config, run_id: str = "", models: Models | None = None) -> ShardOutput:
    """Every key of the shard accounted once. A fault in one pair quarantines that pair; a fault
    of the shard itself (a filter model raising, say) quarantines the shard's pairs, so the flow
    and its cross-shard steps go on either way."""
    t0 = time.perf_counter()
    s = sh.read_shard(tar_path, cfg.curate.max_member_bytes)
    base = {"shard": s.name, "source_path": tar_path, "run_id": run_id, "created_at": _now()}
    try:
        models = models or load_models(cfg)
        for f in models.filters.values():
            if hasattr(f, "reset"):
                f.reset()  # per-shard state (semantic_dedup compares within a shard)
        out = _curate(s, cfg, base, models)
    except Exception as e:  # noqa: BLE001 - the isolation boundary: report, never crash the flow
        out = _shard_fault(s, base, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    if len({p["key"] for p in out.pairs}) != len(out.pairs):
        raise AccountingError(f"shard {s.name}: a key was accounted twice")
    return _storable(out)


def _all_keys(s: sh.ShardRead) -> set[str]:
    return set(s.entries) | set(s.parquet_rows or ()) | {sf.split_key(n)[0] for n, _ in s.refused}


def _shard_fault(s: sh.ShardRead, base: dict, err: str, seconds: float) -> ShardOutput:
    """Every pair of a shard whose processing failed, quarantined with the shard's error."""
    out = ShardOutput()
    for key in sorted(_all_keys(s)):
        out.pairs.append({**base, "key": key, "status": "quarantined", "stage": "shard",
                          "reason": f"shard failed, its pairs quarantined: {err}"})
    n = len(out.pairs)
    out.run = {"shard": s.name, "source_path": base["source_path"], "n_in": n, "n_passed": 0,
               "n_rejected": 0, "n_quarantined": n, "seconds": seconds, "backends": "{}",
               "run_id": base["run_id"], "created_at": base["created_at"], "n_refused": len(s.refused),
               "errors": json.dumps(list(s.errors) + [f"shard failed: {err}"])}
    return out


def _storable(out: ShardOutput) -> ShardOutput:
    """The rows as the lake will store them: a pair row Arrow cannot type (a value no reader
    checked) becomes a quarantined row with the reason, and its scores are dropped."""
    try:
        lk.to_arrow("pairs", out.pairs)
        return out
    except (pa.ArrowException, ValueError, TypeError, OverflowError):
        pass
    bad = set()
    for i, row in enumerate(out.pairs):
        try:
            lk.to_arrow("pairs", [row])
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as e:
            bad.add(row["key"])
            keep = {k: row[k] for k in ("shard", "source_path", "run_id", "created_at")}
            out.pairs[i] = {**keep, "key": _escape(row["key"]), "status": "quarantined", "stage": "store",
                            "reason": f"row not storable: {type(e).__name__}: {e}"}
    out.scores = [r for r in out.scores if r["key"] not in bad]
    n = {st: sum(p["status"] == st for p in out.pairs) for st in STATUSES}
    out.run.update({f"n_{st}": v for st, v in n.items()})
    return out


def _escape(key: str) -> str:
    """A key Arrow can store: undecodable name bytes (tar's surrogateescape) as ``\\xNN``."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _curate(s: sh.ShardRead, cfg: Config, base: dict, models: Models) -> ShardOutput:
    t0, c0 = time.perf_counter(), time.process_time()
    c, tar_path = cfg.curate, base["source_path"]
    out = ShardOutput()

    def emit(key, status, stage=None, reason=None, score=None, **kw):
        src = (s.parquet_rows or {}).get(key)  # img2dataset's columns, whatever became of the pair
        out.pairs.append({**base, **(i2d.pair_columns(src) if src else {}), "key": key, "status": status,
                          "stage": stage, "reason": reason, "score": score, **kw})

    refused: dict[str, list[str]] = {}
    for name, why in s.refused:
        refused.setdefault(sf.split_key(name)[0], []).append(why)
    failed = i2d.read_failed_rows(tar_path[: -len(".tar")] + ".parquet")
    for r in failed:  # URLs img2dataset could not fetch or resize: counted in, never curated
        if str(r["key"]) not in s.entries:  # a tar member wins (it is accounted by its own path)
            emit(**i2d.failed_pair(r))
    only_tar, only_pq = set(s.only_in_tar), set(s.only_in_parquet)
    stage_t = {k: 0.0 for k in ["read", "decode"] + list(c.order)}
    stage_cpu = dict(stage_t)  # process CPU seconds: what a stage costs regardless of contention
    stage_t["read"], stage_cpu["read"] = time.perf_counter() - t0, time.process_time() - c0
    res_f = ResolutionFilter(c.resolution)
    dedup_f = DedupFilter(c.dedup)
    batch: list[Candidate] = []
    pixels = 0

    def flush():  # the stages over one decoded batch, then its memory is released
        nonlocal batch, pixels
        cands, batch, pixels = batch, [], 0
        for stage in c.order:
            t, tc = time.perf_counter(), time.process_time()
            cands = _run_stage(stage, cands, models, res_f, dedup_f, s.name, out, emit)
            stage_t[stage] += time.perf_counter() - t
            stage_cpu[stage] += time.process_time() - tc
        for cand in cands:
            emit(cand.key, "passed", **cand.row)

    for key in sorted(_all_keys(s)):
        e = s.entries.get(key)
        px = header_pixels(e.image) if e is not None and key not in refused else 0
        if batch and (pixels + px > c.max_batch_pixels or len(batch) >= c.chunk):
            flush()  # bounded memory: at most max_batch_pixels decoded (or one larger image)
        t, tc = time.perf_counter(), time.process_time()
        cand = _admit_or_quarantine(key, s, refused, only_tar, only_pq, c, emit)
        stage_t["decode"] += time.perf_counter() - t
        stage_cpu["decode"] += time.process_time() - tc
        if cand:
            batch.append(cand)
            pixels += cand.image.width * cand.image.height
    flush()
    n = {st: sum(p["status"] == st for p in out.pairs) for st in STATUSES}
    errors = list(s.errors)
    stats = i2d.read_stats(tar_path)
    why = i2d.stats_mismatch(stats, len(s.parquet_rows or {}) + len(failed), len(failed))
    if why:
        errors.append(why)
    if s.parquet_rows is None:
        errors.append("no parquet beside the tar: keys not cross-checked")
    if only_tar or only_pq:
        errors.append(f"parquet disagrees with tar: {len(only_tar)} keys only in tar, {len(only_pq)} only in parquet")
    out.run = {"shard": s.name, "source_path": base["source_path"], "n_in": len(out.pairs), "n_passed": n["passed"],
               "n_rejected": n["rejected"], "n_quarantined": n["quarantined"], "n_source_failed": n[i2d.SOURCE_FAILED],
               "source_stats": json.dumps(stats) if stats is not None else None,
               "seconds": time.perf_counter() - t0,
               "backends": json.dumps({"resolution": "rules", "dedup": dedup_f.backend} | models.backends),
               "run_id": base["run_id"], "created_at": base["created_at"], "n_refused": len(s.refused),
               "errors": json.dumps(errors), "stage_seconds": json.dumps({k: round(v, 4) for k, v in stage_t.items()}),
               "stage_cpu_seconds": json.dumps({k: round(v, 4) for k, v in stage_cpu.items()}),
               "cpu_seconds": time.process_time() - c0}
    return out


def _admit_or_quarantine(key, s: sh.ShardRead, refused: dict[str, list[str]], only_tar, only_pq, c,
                         emit) -> Candidate | None:
    """The decoded candidate, or None once the pair is emitted as quarantined (one row per key,
    however many of its members were refused)."""
    if key in refused:
        emit(key, "quarantined", "read", "tar member refused, not extracted: " + "; ".join(refused[key]))
        return None
    try:
        return _admit(key, s, only_tar, only_pq, c, emit)
    except Exception as e:  # noqa: BLE001 - one pair's fault must not cost the shard
        emit(key, "quarantined", "read", f"unexpected error reading the pair: {type(e).__name__}: {e}")
        return None


def _admit(key, s: sh.ShardRead, only_tar, only_pq, c, emit) -> Candidate | None:
    """Quarantine what cannot be curated; return the decoded candidate otherwise."""
    if key in only_pq:
        where = "the tar" if os.path.exists(s.tar_path) else "the tar, which is missing"
        emit(key, "quarantined", "read", f"listed in parquet (status success) but missing from {where}")
        return None
    e = s.entries[key]
    if "_truncated" in e.files:
        emit(key, "quarantined", "read", "member cut off by a truncated tar")
        return None
    if key in only_tar:
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
        d = decode_image(e.image, c.resolution.max_pixels)
    except DecodeError as err:
        emit(key, "quarantined", "decode", str(err), caption=caption, **info)
        return None
    row = {"caption": caption, "width": d.width, "height": d.height, "orig_width": d.original_size[0],
           "orig_height": d.original_size[1], "mode": d.mode, "orientation": d.orientation, **info}
    return Candidate(key, row, d.image)


def _score_row(shard, key, f, r) -> dict:
    return {"key": key, "shard": shard, "filter": f.name, "backend": f.backend, "score": float(r.score),
            "passed": bool(r.passed), "details": json.dumps(r.details, default=str)}


def _run_stage(stage, cands, models: Models, res_f, dedup_f, shard, out: ShardOutput, emit):
    if not cands:
        return cands
    if stage == "resolution":
        f, results = res_f, res_f([cd.image for cd in cands])
    elif stage == "dedup":
        f, results = dedup_f, []
        for cd in cands:
            sha, ph = pixel_sha256(cd.image), phash(cd.image)
            cd.row.update(sha256=sha, phash=ph)
            r = dedup_f.check(sha, ph, f"{shard}/{cd.key}")
            if not r.passed:
                cd.row["dup_of"] = r.details["duplicate_of"]
            results.append(r)
    else:
        f = models.filters.get(stage)
        if f is None:  # backend "none" (or no laion_scores threshold): the stage is off
            return cands
        if getattr(f, "reads_rows", False):
            return _keep_passed(cands, f, f.check_rows([cd.row for cd in cands]), shard, out, emit)
        if f.needs_clip:
            todo = [cd for cd in cands if cd.emb is None]
            if todo:
                for cd, e in zip(todo, models.clip([cd.image for cd in todo])):
                    cd.emb = e
        import numpy as np
        emb = np.stack([cd.emb for cd in cands]) if f.needs_clip else None
        ctx = ({"keys": [cd.key for cd in cands], "captions": [cd.row["caption"] for cd in cands]}
               if getattr(f, "needs_context", False) else {})
        results = f([cd.image for cd in cands], emb, **ctx)
    return _keep_passed(cands, f, results, shard, out, emit)


def _keep_passed(cands, f, results, shard, out: ShardOutput, emit):
    """Record each result; emit the rejected candidates; return the ones that passed."""
    stage = f.name
    keep = []
    for cd, r in zip(cands, results):
        out.scores.append(_score_row(shard, cd.key, f, r))
        if r.passed:
            keep.append(cd)
        else:
            if "duplicate_of" in r.details:  # semantic_dedup names the kept pair
                cd.row["dup_of"] = f"{shard}/{r.details['duplicate_of']}"
            emit(cd.key, "rejected", stage, r.reason, float(r.score), **cd.row)
    return keep


def config_hash(cfg: Config) -> str:
    """What decides a shard's rows: the curate settings, minus where/how the work runs."""
    import hashlib
    d = cfg.curate.model_dump(exclude={"force", "workers", "dask_address", "chunk", "max_batch_pixels"})
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def shard_done(lake: str, shard: str) -> bool:
    return lk.has_partition(lake, "shard_runs", shard)


def _drop_orphan_temps(lake: str, shard: str) -> None:
    """Temp files a killed writer of this shard left behind (readers already ignore them)."""
    fs, root = lk._fs(lake)
    for table in ("filter_scores", "pairs", "shard_runs"):
        for p in fs.glob(f"{root}/{table}/.{shard}.*.tmp"):
            fs.rm(p)


def curate_shard(tar_path: str, lake: str, cfg: Config, run_id: str = "", force: bool = False) -> dict:
    """Process one shard and write its partitions (shard_runs last = the 'finished' marker).
    A finished shard is skipped unless ``force`` or its curate settings changed."""
    name = sh.shard_name(tar_path)
    h = config_hash(cfg)
    if not force and shard_done(lake, name):
        row = lk.read_table(lake, "shard_runs", [name]).to_pylist()[0]
        if row.get("config_hash") == h:  # same input, same settings: nothing to redo
            return {**row, "skipped": True}
    out = process_shard(tar_path, cfg, run_id)
    out.run["config_hash"] = h
    _drop_orphan_temps(lake, name)
    lk.delete_partition(lake, "shard_runs", name)  # unmark first: a crash below means "redo"
    lk.write_partition(lake, "filter_scores", name, out.scores)
    lk.write_partition(lake, "pairs", name, out.pairs)
    lk.write_partition(lake, "shard_runs", name, [out.run])
    return {**out.run, "skipped": False}


def cross_shard_dedup(lake: str, phash_distance: int, memory_limit: str = "1GB") -> int:
    """Keep the smallest (shard, key) of each duplicate group across the lake; returns #changed.

    Deterministic over the lake's current partitions and idempotent: rows it marked stay
    candidates, and a marked row whose original vanished is restored to passed. Only rows that
    passed in their shard are re-labelled (a later filter's rejection is kept as the truth).
    The candidates stay in DuckDB (``memory_limit``, spilling to a temporary folder); Python sees
    only the rows that share or neighbour a pHash (``cross_shard_hits``).
    """
    import tempfile

    from tasks.filters.dedup import cross_shard_hits
    from warehouse import db
    con = db.connect(lake)
    changes: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="dedup-") as spill:
        con.execute("SET temp_directory = ?", [spill])
        con.execute("SET memory_limit = ?", [memory_limit])
        con.execute("""CREATE TEMP TABLE cand AS
            SELECT row_number() OVER (ORDER BY shard, key) AS ord, shard, key, shard || '/' || key AS ident,
                   sha256, ('0x' || phash)::UBIGINT AS ph, status, coalesce(stage = 'dedup', false) AS marked,
                   stage, score, dup_of, reason
            FROM pairs
            WHERE coalesce(phash, '') <> '' AND NOT (coalesce(stage = 'dedup', false)
                                                   AND NOT starts_with(coalesce(reason, ''), ?))""", [CROSS])
        seen = set()
        for r, hit in cross_shard_hits(con, phash_distance):
            seen.add(r["ord"])
            if hit and hit[1].split("/", 1)[0] != r["shard"] and (r["status"] == "passed" or r["marked"]):
                kind, other, dist = hit
                new = {"status": "rejected", "stage": "dedup", "score": float(dist), "dup_of": other,
                       "reason": CROSS + other + (" (exact)" if kind == "exact" else f" (pHash distance {dist})")}
                if any(r[k] != v for k, v in new.items()):
                    changes.setdefault(r["shard"], {})[r["key"]] = new
            elif r["marked"]:
                changes.setdefault(r["shard"], {})[r["key"]] = _RESTORED
        for ord_, shard, key in con.execute("SELECT ord, shard, key FROM cand WHERE marked").fetchall():
            if ord_ not in seen:  # marked earlier, no match now: its original vanished
                changes.setdefault(shard, {})[key] = _RESTORED
        for shard, ch in sorted(changes.items()):
            _rewrite_shard(con, lake, shard, ch)
    con.close()
    return sum(len(v) for v in changes.values())


_CHANGED = ("status", "stage", "score", "dup_of", "reason")


def _rewrite_shard(con, lake: str, shard: str, ch: dict[str, dict]) -> None:
    """Apply ``{key: new values}`` to one shard's pairs partition (in DuckDB, rows kept in
    order) and recount its ``shard_runs`` row."""
    import pyarrow as pa
    schema = SCHEMAS["pairs"]
    changes = pa.Table.from_pylist([{"key": k, **{c: v.get(c) for c in _CHANGED}} for k, v in ch.items()],
                                   schema=pa.schema([schema.field("key"), *(schema.field(c) for c in _CHANGED)]))
    part = lk.read_table(lake, "pairs", [shard])
    con.register("part_in", part.append_column("_i", pa.array(range(part.num_rows), pa.int64())))
    con.register("part_changes", changes)
    out = con.sql(f"""
        SELECT p.* REPLACE ({", ".join(f"CASE WHEN c.key IS NULL THEN p.{c} ELSE c.{c} END AS {c}" for c in _CHANGED)})
        FROM part_in p LEFT JOIN part_changes c USING (key)
        ORDER BY p._i""").to_arrow_table().drop(["_i"])
    con.unregister("part_in")
    con.unregister("part_changes")
    lk.write_partition(lake, "pairs", shard, out)
    if shard_done(lake, shard):
        status = out["status"].to_pylist()
        runs = lk.read_table(lake, "shard_runs", [shard]).to_pylist()
        for run in runs:
            for st in STATUSES:
                run[f"n_{st}"] = status.count(st)
        if runs:
            lk.write_partition(lake, "shard_runs", shard, runs)


def summarize(lake: str, shards: list[str], order: list[str] | tuple = ()) -> dict:
    """Counts over the given shards, checked: in == passed + rejected + quarantined."""
    runs = lk.read_table(lake, "shard_runs", [s for s in shards if shard_done(lake, s)]).to_pylist()
    missing = sorted(set(shards) - {r["shard"] for r in runs})
    pairs = lk.read_table(lake, "pairs", [s for s in shards if lk.has_partition(lake, "pairs", s)]).to_pylist()
    n = {st: sum(p["status"] == st for p in pairs) for st in STATUSES}
    n_in = sum(r["n_in"] for r in runs)
    stages: dict[str, dict[str, int]] = {}
    for p in pairs:
        if p["status"] != "passed":
            stages.setdefault(p["status"], {}).setdefault(p["stage"] or "", 0)
            stages[p["status"]][p["stage"] or ""] += 1
    backends: dict[str, str] = {}
    for r in runs:
        backends.update(json.loads(r["backends"] or "{}"))
    summary = {"n_shards": len(shards), "n_in": n_in, "n_passed": n["passed"], "n_rejected": n["rejected"],
               "n_quarantined": n["quarantined"], "n_source_failed": n[i2d.SOURCE_FAILED],
               "source_failed_by_stage": stages.get(i2d.SOURCE_FAILED, {}),
               "rejected_by_stage": stages.get("rejected", {}),
               "quarantined_by_stage": stages.get("quarantined", {}), "backends": backends,
               "order": [(st, stages.get("rejected", {}).get(st, 0)) for st in order],
               "shard_errors": {r["shard"]: json.loads(r["errors"] or "[]") for r in runs if json.loads(r["errors"] or "[]")}}
    keys = [(p["shard"], p["key"]) for p in pairs]
    if missing:
        raise AccountingError(f"shards not finished: {missing}")
    if len(set(keys)) != len(keys):
        raise AccountingError("a pair is accounted more than once")
    if n_in != sum(n.values()):
        raise AccountingError(f"in={n_in} != passed {n['passed']} + rejected {n['rejected']} + quarantined "
                              f"{n['quarantined']} + source_failed {n[i2d.SOURCE_FAILED]}")
    return summary


def format_summary(s: dict) -> str:
    lines = [f"curated {s['n_shards']} shards: in={s['n_in']} = passed {s['n_passed']} + rejected "
             f"{s['n_rejected']} + quarantined {s['n_quarantined']} + source_failed {s['n_source_failed']}  [checked]",
             "funnel:"]
    left = s["n_in"]
    lines.append(f"  {'input':<12}{left:>8}   (img2dataset rows)")
    f = s["n_source_failed"]
    left -= f
    lines.append(f"  {'downloaded':<12}{left:>8}   (-{f} source_failed: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(s["source_failed_by_stage"].items())) + ")")
    q = sum(s["quarantined_by_stage"].values())
    left -= q
    lines.append(f"  {'readable':<12}{left:>8}   (-{q} quarantined: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(s["quarantined_by_stage"].items())) + ")")
    for stage, k in s.get("order", []):
        left -= k
        lines.append(f"  {stage:<12}{left:>8}   (-{k})")
    lines.append("backends: " + ", ".join(f"{k}={v}" for k, v in sorted(s["backends"].items())))
    for shard, errs in s["shard_errors"].items():
        lines.append(f"shard {shard}: " + "; ".join(errs))
    return "\n".join(lines)
