"""``t2i generate``: prompts -> PNGs from a checkpoint, a checkpoints folder or a run folder.

Sampling settings default to the ``evaluate`` section recorded in the checkpoint's config (the
settings its own evaluations used) and the text length to its ``model.text_max_length``, so a
model trained with the demo's config is sampled the way it was evaluated; every flag overrides.
The paper's values (Supp. §7: 64 steps at 256², CFG 6.0 for GenEval, 250 denoising steps, time
shift 4.5) are the config's defaults.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import int_at_least
from djepa_t2i.config import Evaluate, check_section, require_writable
from training import checkpoints as ckpts
from training.generation import SAMPLING, load_generator, settings


def steps_arg(text: str) -> int | str:
    """``--steps``: an integer >= 1 or ``auto``."""
    return text if text == "auto" else int_at_least(1)(text)


def parse_size(s: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' -> (H, W)."""
    m = re.fullmatch(r"(\d+)[xX](\d+)", s.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"size must look like 768x512 (width x height), got {s!r}")
    return int(m.group(2)), int(m.group(1))


def resolve_checkpoint(path: str) -> Path:
    """A checkpoint directory as given, or the newest complete checkpoint in a checkpoints folder
    or a run folder (``<run>/checkpoints/step_*``); a one-line error otherwise."""
    p = Path(path)
    if (p / "meta.json").is_file():
        return p
    for run in (p, p.parent):  # a run folder, or its checkpoints/ folder
        found = ckpts.list_checkpoints(str(run)) if run.is_dir() else []
        if found:
            return found[-1]
    raise FileNotFoundError(f"--ckpt {path}: no checkpoint there (expected a checkpoint directory "
                            "with meta.json, a run folder or its checkpoints/ folder)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    ev = Evaluate()
    p.add_argument("--ckpt", required=True,
                   help="checkpoint directory, or a run / checkpoints folder (its newest checkpoint)")
    p.add_argument("--prompt", required=True, action="append",
                   help="the prompt (repeat for several images in one batch)")
    p.add_argument("--size", type=parse_size, default=None,
                   help="WIDTHxHEIGHT in pixels (default: the checkpoint's evaluate.size, square)")
    for name, typ, what in (("steps", steps_arg, "generalized next-token steps, or auto (by token count: 64 at "
                                                "256 tokens to 100 at 16384+, D-JEPA·T2I §3.1; 4 tokens a "
                                                "step below 256)"),
                            ("cfg", float, "classifier-free guidance scale"),
                            ("cfg-schedule", str, "guidance over the steps: linear (MAR's ramp to cfg) "
                                                  "or constant"),
                            ("temperature", float, "noise scale of the token head"),
                            ("flow-steps", int_at_least(1), "token head sampler steps"),
                            ("time-shift", float, "flow ODE time shift"),
                            ("seed", int, "sampling seed")):
        key = name.replace("-", "_")
        p.add_argument(f"--{name}", type=typ, default=None,
                       help=f"{what} (default: the checkpoint's evaluate.{key}; config default {getattr(ev, key)})")
    p.add_argument("--text-max-length", type=int_at_least(1), default=None,
                   help="tokens kept per prompt (default: the checkpoint's model.text_max_length, the "
                        "length it was trained at)")
    p.add_argument("--offset-b", type=float, default=None, help="VoPE offset b (layout control)")
    p.add_argument("--no-ema", action="store_true", help="use raw weights, not the EMA")
    p.add_argument("--text-encoder", default=None, help="override the text encoder path recorded in the checkpoint")
    p.add_argument("--vae", default=None, help="override the VAE path recorded in the checkpoint")
    p.add_argument("--device", default="auto", help="(default: auto: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True,
                   help="output PNG path (several prompts: out_0.png, out_1.png, ...)")


def run(args) -> int:
    require_writable("--out", Path(args.out).parent)
    given = {k: getattr(args, k) for k in (*SAMPLING, "seed")}
    # the flags take evaluate's ranges (--cfg -1 fails as evaluate.cfg does), before any loading
    check_section("evaluate", {k: v for k, v in given.items() if v is not None})
    try:
        ckpt = resolve_checkpoint(args.ckpt)
        paths = {k: v for k, v in (("text_encoder", args.text_encoder), ("vae", args.vae)) if v}
        gen = load_generator(str(ckpt), args.device, ema=not args.no_ema, encoder_paths=paths,
                             text_max_length=args.text_max_length)
        s = gen.resolve(settings(gen.meta, args.size, **given))  # steps "auto": the number, printed below
        images = gen(args.prompt, s, seed=s["seed"], offset_b=args.offset_b, progress=not args.no_progress)
    except (ValueError, FileNotFoundError, OSError) as e:
        print(f"t2i generate: {e}", file=sys.stderr)
        return 2
    outs = [args.out] if len(images) == 1 else \
        [str(Path(args.out).with_name(f"{Path(args.out).stem}_{i}{Path(args.out).suffix or '.png'}"))
         for i in range(len(images))]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # checked creatable above
    for img, o in zip(images, outs):
        img.save(o)
    h, w = s["size"]
    print(f"wrote {', '.join(outs)} ({w}x{h}) from {ckpt} model={gen.meta['model']['name']} "
          f"tokenizer={gen.tokenizer.kind} text_encoder={gen.text_encoder.backend} "
          f"text_max_length={gen.text_encoder.max_length} steps={s['steps']} cfg={s['cfg']} "
          f"cfg_schedule={s['cfg_schedule']} temperature={s['temperature']} flow_steps={s['flow_steps']} "
          f"time_shift={s['time_shift']} seed={s['seed']}")
    return 0
