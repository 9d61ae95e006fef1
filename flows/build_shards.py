"""``build-shards``: passed pairs -> webdataset tars at native resolution + the ``samples`` index.

A thin Prefect wrapper over ``tasks.shard_writer.build`` (the plain function tests call).
"""
from __future__ import annotations

import argparse

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from prefect import flow, get_run_logger

from djepa_t2i.config import Config, ConfigPaths, load_config, require_writable
from tasks import shard_writer
from warehouse.artifacts import publish_summary
from warehouse.lake import checked_lake


def checked(lake: str | None, out: str | None, config_path: ConfigPaths,
            overrides: list[str] | None) -> tuple[Config, str, str]:
    """The validated config, the lake to read and the folder to write, checked before any work."""
    cfg = load_config(config_path, overrides)
    lake, out = checked_lake(cfg, lake), out or cfg.shards.out
    require_writable("shards.out", out)
    return cfg, lake, out


@flow(name="build-shards")
def build_shards(lake: str | None = None, out: str | None = None, config_path: ConfigPaths = None,
                 overrides: list[str] | None = None) -> dict:
    cfg, lake, out = checked(lake, out, config_path, overrides)
    res = shard_writer.build(lake, out, cfg.shards.samples_per_shard)
    log = get_run_logger()
    log.info("build-shards: %d samples in %d shards under %s", res.n_samples, len(res.shards), out)
    if res.missing:
        log.warning("build-shards: %d passed keys had no image in their source tar, e.g. %s",
                    len(res.missing), res.missing[:5])
    summary = {"shards": res.shards, "n_samples": res.n_samples, "missing": res.missing}
    publish_summary("build-shards", lake, summary)
    return summary


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)
    p.add_argument("--out", help="output directory for the tars (default: config shards.out)")


def run(args: argparse.Namespace) -> int:
    cfg, lake, out = checked(args.lake, args.out, args.config, args.overrides)
    if args.no_prefect:
        res = shard_writer.build(lake, out, cfg.shards.samples_per_shard)
        said = {"n_samples": res.n_samples, "shards": len(res.shards), "missing": len(res.missing)}
    else:
        r = build_shards(lake, out, args.config, args.overrides)
        said = {"n_samples": r["n_samples"], "shards": len(r["shards"]), "missing": len(r["missing"])}
    print(said)
    return 0
