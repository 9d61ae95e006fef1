"""``t2i``: the command line. Each subcommand lives in the module that does the work.

A command module defines ``add_arguments(parser)`` and ``run(args) -> int``; the table below
maps names to modules and is the only thing this file knows. Modules are imported lazily so
``t2i --help`` and ``t2i sql`` start fast.

A bad argument, config value or path (an unwritable lake included) is one line on stderr naming
the key and what is allowed, exit code 2 (argparse's convention), before any work starts. A
runtime fault of the machine, not of the input (a full disk, a quota, an I/O error), is one line
too, exit code 1: every step writes whole files renamed into place, so its rerun after the fault
is fixed redoes only what was not finished. ``--debug`` shows the traceback of either.
"""
from __future__ import annotations

import argparse
import faulthandler
import importlib
import sys
from typing import NoReturn

import djepa_t2i.env  # noqa: F401  (offline environment before any library import)
from djepa_t2i.cli_args import runtime_fault
from djepa_t2i.config import ConfigError

COMMANDS: dict[str, tuple[str, str]] = {
    "make-sample": ("tasks.mini_laion", "write a mini-LAION in img2dataset layout"),
    "curate": ("flows.curate_laion", "run the curate-laion flow over a folder of shards"),
    "recaption": ("flows.recaption", "caption curated pairs (InternVL2 or keep alt text)"),
    "notions": ("flows.notion_stats", "extract notions and publish sampling weights v0"),
    "build-shards": ("flows.build_shards", "write passed pairs into webdataset tars + index"),
    "encode": ("flows.encode", "cache VAE tokens + text states beside the training shards"),
    "train": ("flows.train", "train D-JEPA·T2I (CPU, or under torchrun)"),
    "sft-tier": ("warehouse.tiers", "write a quality tier of the samples index (the SFT phase's data)"),
    "post-train": ("flows.post_train", "GRPO on the flow head from an SFT checkpoint (rollouts + checkpoints)"),
    "evaluate": ("flows.evaluate_checkpoints", "evaluate checkpoints not yet scored"),
    "feedback": ("flows.feedback", "publish the next sampling-weights version"),
    "generate": ("training.generate_cli", "generate an image from a checkpoint"),
    "sql": ("warehouse.sql_cli", "run SQL (or a saved query) on the warehouse"),
    "lake": ("warehouse.lake_check", "check a lake's files for damage, or move damaged ones aside (check|repair)"),
    "report": ("report.page", "write the PNG/HTML report of the lake"),
    "demo": ("flows.demo", "the whole loop on the embedded default"),
    "demo-post": ("flows.demo_post", "SFT on a composition tier + GRPO on make demo's model, evaluated"),
    "rehearse": ("flows.rehearse", "the production configs end to end on tiny weights (configs/rehearsal.yaml)"),
    "convert-weights": ("tasks.convert_weights", "convert OpenAI CLIP TorchScript / Keras NSFW weights to safetensors"),
    "check-backends": ("tasks.check_backends", "load every configured backend and run it on one image"),
    "rehearsal-weights": ("tasks.rehearsal_weights", "write every production backend's weights, tiny, in the published formats"),
    "serve": ("djepa_t2i.serve.cli", "the local Prefect server, work pool, deployments and worker (start|stop|status|demo)"),
}


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (``t2i curate: error: argument --workers:
    ...``), exit code 2; ``--help`` still prints the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """``--help`` shows an option's default, unless its help already names one or there is none
    worth printing (None, False, an empty list)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        if not h or "default" in h or not action.option_strings or action.default in (None, False, []) \
                or action.default is argparse.SUPPRESS:
            return h
        return h + " (default: %(default)s)"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``t2i`` parser; only ``command``'s module is imported to add its arguments."""
    p = Parser(prog="t2i", description="D-JEPA·T2I data + training pipeline")
    p.add_argument("--debug", action="store_true", help="show the traceback of a config/argument error")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_,
                            formatter_class=DefaultsFormatter)
        sp.set_defaults(_module=module)
        # also accepted after the command; SUPPRESS keeps a `t2i --debug CMD` from being reset
        sp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        if name == command:
            importlib.import_module(module).add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a real command line (not a test calling in): a native crash such as an
        faulthandler.enable()  # abort in a library's thread pool at exit prints Python's stacks
    argv = sys.argv[1:] if argv is None else argv
    sys.argv = [sys.argv[0]] + argv
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except Exception as e:
        fault = None if args.debug else runtime_fault(e)
        if fault:
            print(f"t2i {args.command}: error: {fault}", file=sys.stderr)
            return 1
        if args.debug or not isinstance(e, one_line_errors()):
            raise
        print(f"t2i {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def one_line_errors() -> tuple[type[Exception], ...]:
    """Errors that are the user's to fix (a bad value, path, lake or weights file), printed as one
    line. The modules' own errors are looked up, not imported: a command that raised one has
    loaded its module, and ``t2i --help`` stays free of pyarrow and torch."""
    found = [getattr(sys.modules.get(m), name, None) for m, name in
             (("warehouse.lake", "LakeNotWritable"), ("tasks.weights_formats", "WeightsFormatError"))]
    return (ConfigError, *(c for c in found if c is not None))


if __name__ == "__main__":
    sys.exit(main())
