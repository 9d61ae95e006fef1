"""Curate one img2dataset shard in memory: every input pair ends passed, rejected or quarantined.

``process_shard`` reads a shard safely and admits its pairs (tasks/pair_admission.py) in batches of
at most ``curate.max_batch_pixels`` decoded pixels (and ``curate.chunk`` pairs): bounded memory
whatever the images' sizes. Each batch walks the set-up stages of ``curate.order``
(tasks/model_cache.py) without knowing their names: a stage sees the candidates that passed the
stages before it, one ``filter_scores`` row is kept per candidate and stage, and a rejected
candidate becomes its ``pairs`` row. A stage that raises on a batch is run again one candidate at a
time: the candidates it still fails on are quarantined with its error, the others go on (one bad
image does not cost its batch); when it fails on every one, the stage itself is broken and the
shard's pairs are quarantined. It returns the rows of ``pairs``, ``filter_scores`` and
``shard_runs``; tasks/curate.py writes them to the lake.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from typing import Callable

from djepa_t2i.config import Config
from tasks import img2dataset_meta as i2d
from tasks import shard_format as sf
from tasks import shards as sh
from tasks.curate_rows import AccountingError, PairRows, ShardOutput, score_row, shard_base, shard_run_row, storable
from tasks.decode import header_pixels
from tasks.model_cache import Pipeline, load_pipeline
from tasks.pair_admission import Admission
from tasks.stages import CLIP_EMBEDDING, Batch, Candidate, FilterStage, Result, Stage


def process_shard(tar_path: str, cfg: Config, run_id: str = "", pipeline: Pipeline | None = None) -> ShardOutput:
    """Every key of the shard accounted once. A fault in one pair quarantines that pair; a fault
    of the shard itself (a filter model raising, say) quarantines the shard's pairs, so the flow
    and its cross-shard steps go on either way."""
    t0 = time.perf_counter()
    s = sh.read_shard(tar_path, cfg.curate.max_member_bytes)
    base = shard_base(s.name, tar_path, run_id)
    try:
        pipeline = pipeline or load_pipeline(cfg)
        for stage in pipeline.stages:
            stage.start_shard(s.name)
        out = _curate(s, cfg, base, pipeline)
    except Exception as e:  # noqa: BLE001 - the isolation boundary: report, never crash the flow
        out = _shard_fault(s, base, f"{type(e).__name__}: {e}", time.perf_counter() - t0)
    if len({p["key"] for p in out.pairs}) != len(out.pairs):
        raise AccountingError(f"shard {s.name}: a key was accounted twice")
    return storable(out)


def _all_keys(s: sh.ShardRead) -> set[str]:
    return set(s.entries) | set(s.parquet_rows or ()) | {sf.split_key(n)[0] for n, _ in s.refused}


def _shard_fault(s: sh.ShardRead, base: dict, err: str, seconds: float) -> ShardOutput:
    """Every pair of a shard whose processing failed, quarantined with the shard's error."""
    pairs = [{**base, "key": key, "status": "quarantined", "stage": "shard",
              "reason": f"shard failed, its pairs quarantined: {err}"} for key in sorted(_all_keys(s))]
    run = shard_run_row(base, pairs, len(s.refused), list(s.errors) + [f"shard failed: {err}"], seconds,
                        backends="{}")
    return ShardOutput(pairs, [], run)


class StageClock:
    """Wall and process-CPU seconds per step (CPU: what a step costs regardless of contention)."""

    def __init__(self, steps: list[str]):
        self.wall = {k: 0.0 for k in steps}
        self.cpu = dict(self.wall)

    @contextmanager
    def __call__(self, step: str):
        t, tc = time.perf_counter(), time.process_time()
        yield
        self.wall[step] += time.perf_counter() - t
        self.cpu[step] += time.process_time() - tc

    def columns(self) -> dict:
        return {"stage_seconds": json.dumps({k: round(v, 4) for k, v in self.wall.items()}),
                "stage_cpu_seconds": json.dumps({k: round(v, 4) for k, v in self.cpu.items()})}


def _curate(s: sh.ShardRead, cfg: Config, base: dict, pipeline: Pipeline) -> ShardOutput:
    t0, c0 = time.perf_counter(), time.process_time()
    c, tar_path = cfg.curate, base["source_path"]
    rows = PairRows(base, s.parquet_rows)
    out = ShardOutput(rows.rows)
    failed = i2d.read_failed_rows(tar_path[: -len(".tar")] + ".parquet")
    for r in failed:  # URLs img2dataset could not fetch or resize: counted in, never curated
        if str(r["key"]) not in s.entries:  # a tar member wins (it is accounted by its own path)
            rows.emit(**i2d.failed_pair(r))
    clock = StageClock(["read", "decode"] + list(c.order))
    clock.wall["read"], clock.cpu["read"] = time.perf_counter() - t0, time.process_time() - c0
    admission = Admission(s, c, rows, pipeline.decode)
    batch: list[Candidate] = []
    pixels = 0
    for key in sorted(_all_keys(s)):
        e = s.entries.get(key)
        px = header_pixels(e.image) if e is not None and key not in admission.refused else 0
        if batch and (pixels + px > c.max_batch_pixels or len(batch) >= c.chunk):
            run_stages(pipeline, Batch(s.name, batch), out, rows, clock)  # then the batch's memory is released
            batch, pixels = [], 0
        with clock("decode"):
            cand = admission.admit(key)
        if cand:
            batch.append(cand)
            pixels += cand.image.width * cand.image.height
    run_stages(pipeline, Batch(s.name, batch), out, rows, clock)
    stats = i2d.read_stats(tar_path)
    out.run = shard_run_row(base, out.pairs, len(s.refused), _shard_errors(s, stats, len(failed)),
                            time.perf_counter() - t0, backends=json.dumps(pipeline.backends),
                            source_stats=json.dumps(stats) if stats is not None else None,
                            cpu_seconds=time.process_time() - c0, **clock.columns())
    return out


def _shard_errors(s: sh.ShardRead, stats: dict | None, n_failed: int) -> list[str]:
    """What is wrong with the shard as a whole (its pairs are accounted either way)."""
    errors = list(s.errors)
    why = i2d.stats_mismatch(stats, len(s.parquet_rows or {}) + n_failed, n_failed)
    if why:
        errors.append(why)
    if s.parquet_rows is None:
        errors.append("no parquet beside the tar: keys not cross-checked")
    only_tar, only_pq = set(s.only_in_tar), set(s.only_in_parquet)
    if only_tar or only_pq:
        errors.append(f"parquet disagrees with tar: {len(only_tar)} keys only in tar, {len(only_pq)} only in parquet")
    return errors


def run_stages(pipeline: Pipeline, batch: Batch, out: ShardOutput, rows: PairRows, clock: StageClock) -> None:
    """One decoded batch through every stage in order; the survivors are emitted as passed."""
    cands = batch.cands
    for stage in pipeline.stages:
        if not cands:
            break
        with clock(stage.name):
            cands = _run_stage(stage, Batch(batch.shard, cands), pipeline, out, rows)
    for cand in cands:
        rows.emit(cand.key, "passed", **cand.row)


def _run_stage(stage: Stage, batch: Batch, pipeline: Pipeline, out: ShardOutput, rows: PairRows) -> list[Candidate]:
    """Record each candidate's result; emit the rejected and the ones the stage failed on; return
    the ones that passed."""
    cands = batch.cands
    if CLIP_EMBEDDING in stage.reads:
        todo = [cd for cd in cands if cd.emb is None]
        embs = _each(lambda cds: list(pipeline.clip([cd.image for cd in cds])), todo, retry=True)
        for cd, e in zip(todo, embs):
            cd.emb = e
        cands = [cd for cd in cands if not _failed(cd, cd.emb, "clip", rows)]
    columns = [set(cd.row) for cd in cands]
    results = _each(lambda cds: _checked_results(stage, Batch(batch.shard, cds)), cands, retry=_stateless(stage))
    keep = []
    for cd, r, before in zip(cands, results, columns):
        if _failed(cd, r, stage.name, rows, before):
            continue
        if undeclared := set(cd.row) - before - set(stage.writes):
            raise AccountingError(f"stage {stage.name!r} wrote {sorted(undeclared)}, not in its writes")
        out.scores.append(score_row(batch.shard, cd.key, stage, r))
        if r.passed:
            keep.append(cd)
        else:
            rows.emit(cd.key, "rejected", stage.name, r.reason, float(r.score), **cd.row)
    return keep


def _failed(cd: Candidate, r, stage: str, rows: PairRows, columns: set[str] | None = None) -> bool:
    """Quarantine the candidate when ``r`` is the error the stage (or the CLIP embedder, stage
    ``clip``) raised on it; its row keeps the columns it had before that stage."""
    if not isinstance(r, Exception):
        return False
    cd.emb = None
    rows.emit(cd.key, "quarantined", stage, f"{stage} failed on this pair: {type(r).__name__}: {r}",
              **{k: v for k, v in cd.row.items() if columns is None or k in columns})
    return True


def _checked_results(stage: Stage, batch: Batch) -> list[Result]:
    results = stage.process(batch)
    if len(results) != len(batch.cands):
        raise AccountingError(f"stage {stage.name!r} gave {len(results)} results for {len(batch.cands)} pairs")
    return results


def _stateless(stage: Stage) -> bool:
    """A stage without per-shard state (FilterStage's start_shard) can be run again on part of a
    batch; a dedup cannot (it has already kept the candidates before the one it raised on)."""
    return getattr(type(stage), "start_shard", None) is FilterStage.start_shard


def _each(run: Callable[[list[Candidate]], list], cands: list[Candidate], retry: bool) -> list:
    """``run(cands)``; if it raises, ``run([cand])`` for each candidate, its error in place of its
    output where it still raises. Raises the batch's error when every candidate does (or ``retry``
    is off): a broken stage, not a bad image, so process_shard quarantines the shard."""
    if not cands:
        return []
    try:
        return run(cands)
    except AccountingError:
        raise
    except Exception as batch_error:  # noqa: BLE001 - retried pair by pair below
        if not retry or len(cands) == 1:
            raise
        one: list = []
        for cd in cands:
            try:
                one += run([cd])
            except AccountingError:
                raise
            except Exception as e:  # noqa: BLE001 - this pair is quarantined with the reason
                one.append(e)
        if all(isinstance(r, Exception) for r in one):
            raise batch_error from None
        return one
