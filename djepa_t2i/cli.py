"""``t2i``: the command line. Each subcommand lives in the module that does the work.

A command module defines ``add_arguments(parser)`` and ``run(args) -> int``; the table below
maps names to modules and is the only thing this file knows. Modules are imported lazily so
``t2i --help`` and ``t2i sql`` start fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys

import djepa_t2i.env  # noqa: F401  (offline environment before any library import)

COMMANDS: dict[str, tuple[str, str]] = {
    "make-sample": ("tasks.mini_laion", "write a mini-LAION in img2dataset layout"),
    "curate": ("flows.curate_laion", "run the curate-laion flow over a folder of shards"),
    "recaption": ("flows.recaption", "caption curated pairs (InternVL2 or keep alt text)"),
    "notions": ("flows.notion_stats", "extract notions and publish sampling weights v0"),
    "build-shards": ("flows.build_shards", "write passed pairs into webdataset tars + index"),
    "encode": ("flows.encode", "cache VAE tokens + text states beside the training shards"),
    "train": ("flows.train", "train D-JEPA·T2I (CPU, or under torchrun)"),
    "evaluate": ("flows.evaluate_checkpoints", "evaluate checkpoints not yet scored"),
    "feedback": ("flows.feedback", "publish the next sampling-weights version"),
    "generate": ("training.generate_cli", "generate an image from a checkpoint"),
    "sql": ("warehouse.sql_cli", "run SQL (or a saved query) on the warehouse"),
    "report": ("warehouse.report", "write the PNG/HTML report of the lake"),
    "demo": ("flows.demo", "the whole loop on the embedded default"),
    "convert-weights": ("tasks.convert_weights", "convert OpenAI CLIP TorchScript / Keras NSFW weights to safetensors"),
    "check-backends": ("tasks.check_backends", "load every configured backend and run it on one image"),
}


def add_flow_arguments(p: argparse.ArgumentParser) -> None:
    """The options every flow command shares: where the lake is, the config, overrides."""
    p.add_argument("--lake", default=None, help="lake directory (default: config lake)")
    p.add_argument("--config", default=None, help="YAML config file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. train.steps=100 (repeatable)")
    p.add_argument("--no-prefect", action="store_true", help="run the plain function, no flow run")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="t2i", description="D-JEPA·T2I data + training pipeline")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(_module=module)
        if name in sys.argv[1:2]:  # only import the module that runs
            importlib.import_module(module).add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0]] + argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
