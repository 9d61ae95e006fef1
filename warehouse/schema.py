"""Declared Arrow schemas of every lake table: the contract between writers and SQL views.

Each table's owner appends columns here; readers never guess types, and an empty table still
has a typed view.
"""
from __future__ import annotations

import pyarrow as pa

# column-type shorthands for the tables below (I for int64 reads best beside S, F, B, TS)
S, I, F, B, TS = pa.string(), pa.int64(), pa.float64(), pa.bool_(), pa.timestamp("us", tz="UTC")  # noqa: E741

# ``weights/CURRENT`` names the live sampling-weights version: warehouse.weights writes and reads
# it, the ``sampling_weights_current`` view (warehouse.db) reads it at query time
CURRENT = "CURRENT"

SCHEMAS: dict[str, pa.Schema] = {
    # one row per input pair: its final state (curate-laion)
    "pairs": pa.schema([
        ("key", S), ("shard", S), ("source_path", S), ("status", S),  # passed|rejected|quarantined|source_failed
        ("stage", S), ("reason", S), ("score", F), ("width", I), ("height", I),
        ("caption", S), ("url", S), ("sha256", S), ("phash", S), ("source", S),
        ("run_id", S), ("created_at", TS),
        ("dup_of", S),  # shard/key kept instead of this one (dedup rejections)
        ("orig_width", I), ("orig_height", I), ("mode", S), ("orientation", I),
        # img2dataset's / LAION's own columns, null when absent (tasks/img2dataset_meta.py): LAION's
        # CLIP similarity, P(unsafe), P(watermark), labels; img2dataset's status/error/sha256 and the
        # downloaded file's size before img2dataset resized it
        ("similarity", F), ("punsafe", F), ("pwatermark", F), ("nsfw_label", S), ("language", S),
        ("license", S), ("original_width", I), ("original_height", I), ("source_status", S),
        ("error_message", S), ("source_sha256", S),
        # the alt text as read, kept when normalisation changed it (NFC, control characters removed,
        # cut to curate.caption_max_chars; null: `caption` is the raw text), and what was changed
        ("caption_raw", S), ("caption_changes", S),
    ]),
    # one row per pair per filter that ran on it (curate-laion)
    "filter_scores": pa.schema([
        ("key", S), ("shard", S), ("filter", S), ("backend", S), ("score", F),
        ("passed", B), ("details", S),
    ]),
    # per input shard: counts and accounting check (curate-laion)
    "shard_runs": pa.schema([
        ("shard", S), ("source_path", S), ("n_in", I), ("n_passed", I), ("n_rejected", I),
        ("n_quarantined", I), ("seconds", F), ("backends", S), ("run_id", S), ("created_at", TS),
        ("n_refused", I),  # tar members refused for unsafe paths (each also a quarantined row)
        ("errors", S),  # JSON list of shard-level problems (truncated tar, parquet mismatch, ...)
        ("stage_seconds", S),  # JSON {stage: wall seconds} spent in this shard
        ("stage_cpu_seconds", S),  # JSON {stage: process CPU seconds} (contention-free cost)
        ("cpu_seconds", F),
        ("config_hash", S),  # curate settings the shard ran with; a change redoes the shard
        ("n_source_failed", I),  # img2dataset rows that failed to download/resize (status source_failed)
        ("source_stats", S),  # img2dataset's NNNNN_stats.json as read (JSON), null when absent
    ]),
    # captions with provenance (recaption)
    "captions": pa.schema([
        ("key", S), ("caption", S), ("alt_text", S), ("tags", S), ("source", S),  # alt|vlm
        ("model_id", S), ("prompt_hash", S), ("version", S), ("created_at", TS),
    ]),
    # one row per (key, notion) (notion-stats)
    "notions": pa.schema([("key", S), ("notion", S), ("kind", S), ("caption_version", S)]),
    # one row per notion-stats partition: the denominator of p and the bad-input counts
    "notion_runs": pa.schema([
        ("part", S), ("n_captions", I), ("n_empty", I), ("n_non_utf8", I), ("n_truncated", I),
        ("n_no_notions", I), ("n_rows", I), ("spacy_model", S), ("entities", S), ("seconds", F),
        ("created_at", TS),
    ]),
    # sampling weights, one partition per version vNNNN (notion-stats v0, feedback after)
    "weights": pa.schema([
        ("version", S), ("kind", S), ("value", S), ("target_freq", F), ("observed_freq", F),
        ("eval_score", F), ("weight", F), ("reason", S), ("params", S), ("created_at", TS),
    ]),
    # training index written by build-shards
    "samples": pa.schema([
        ("key", S), ("tar", S), ("width", I), ("height", I), ("caption", S),
        ("caption_version", S), ("notions", pa.list_(S)), ("tags", pa.list_(S)), ("source", S),
        ("offset", I), ("size", I), ("ext", S),  # byte range of the image member inside `tar`
    ]),
    # trainer statistics, long format, every N steps per rank
    "batch_stats": pa.schema([
        ("run_id", S), ("rank", I), ("step", I), ("kind", S), ("value", S), ("count", F),
        ("weights_version", S), ("created_at", TS),
    ]),
    "checkpoints": pa.schema([
        ("run_id", S), ("step", I), ("path", S), ("phase", S), ("weights_version", S),
        ("loss", F), ("created_at", TS), ("config", S), ("world_size", I),
        ("deleted", B),  # True in a later partition when keep_last removed the files
    ]),
    # one row per launch of the `train` flow (flows/train.py)
    "train_runs": pa.schema([
        ("run_id", S), ("nproc", I), ("command", S), ("config", S), ("returncode", I), ("status", S),
        ("started_at", TS), ("finished_at", TS), ("log_path", S),
    ]),
    # evaluate-checkpoints: one row per (checkpoint, prompt, image, notion), the prompt's category
    # among its notions (notion_kind='category'); one partition per checkpoint+benchmark
    "eval_results": pa.schema([
        ("checkpoint", S), ("run_id", S), ("step", I), ("benchmark", S), ("category", S),
        ("prompt_id", S), ("notion", S), ("score", F), ("backend", S), ("image_path", S),
        ("created_at", TS), ("prompt", S), ("image_index", I), ("seed", I), ("notion_kind", S),
        ("reason", S), ("weights_version", S), ("params", S),
        ("control", S),  # NULL: the model's image; else the chance control it scores
        ("clipscore", F),  # the model's image vs its prompt, 0-100 (evaluate.clip set; else NULL)
    ]),
    # post-train (training/grpo_run.py): one row per generated image per step; split 'train'
    # (a GRPO rollout: its group, advantage, KL to the reference, log-probability) or 'heldout'
    # (the held-out prompts, ODE sampling as evaluation does: metric = the held-out metric)
    "rollouts": pa.schema([
        ("run_id", S), ("step", I), ("split", S), ("prompt_id", S), ("prompt", S), ("category", S),
        ("group_id", I), ("image_index", I), ("image_path", S), ("reward", F),
        ("rewards", S),  # JSON {backend: value} before weighting
        ("advantage", F), ("kl", F), ("logp", F), ("metric", F), ("created_at", TS),
    ]),
}
