"""``encode``: the frozen encoders' outputs cached beside the training shards (issue #15, item 1).

A thin Prefect wrapper over ``training.encode_cache.encode_shards`` (the plain function tests
call): text-encoder states of every sample, VAE tokens at ``train.fixed_side`` (phase 1's crop)
when the tokenizer is a VAE. Run it after ``build-shards``; the trainer reads what matches.
"""
from __future__ import annotations

import argparse

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from prefect import flow, get_run_logger

from djepa_t2i.config import Config, ConfigPaths, load_config
from model.text_encoder import TextEncoder
from model.tokenizers import build_tokenizer
from training import lake_io
from training.encode_cache import encode_shards
from warehouse.lake import require_rows


def encode_lake(cfg: Config, lake: str | None = None) -> dict:
    """Build the configured encoders and cache their outputs for the lake's ``samples`` index."""
    require_rows(lake or cfg.lake, "samples", "t2i build-shards")  # before any encoder is built
    return encode_shards(lake_io.read_index(lake or cfg.lake), build_tokenizer(cfg.model),
                         TextEncoder.from_config(cfg.model), cfg.train.fixed_side)


@flow(name="encode")
def encode(lake: str | None = None, config_path: ConfigPaths = None,
           overrides: list[str] | None = None) -> dict:
    out = encode_lake(load_config(config_path, overrides), lake)
    get_run_logger().info("encode: %s", out)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)


def run(args: argparse.Namespace) -> int:
    if args.no_prefect:
        out = encode_lake(load_config(args.config, args.overrides), args.lake)
    else:
        out = encode(args.lake, args.config, args.overrides)
    print(out)
    return 0
