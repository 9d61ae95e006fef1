"""`t2i generate` at 1K, 2K, 4K and 4:1 through a real-layout KL-VAE: seconds, peak RSS, CPU s.

    python bench/hires_generate.py                      # the four sizes, each `t2i generate` in its own process
    python bench/hires_generate.py --seam 2048          # tiled vs untiled decode of the same latents at 2048²
    python bench/hires_generate.py --patch 2 --device cuda --sizes 4096x4096   # the paper's 65,536 tokens (GPU)

A djepa_tiny checkpoint (random weights: cost does not depend on what the weights are) whose
tokenizer is the rehearsal's ``sd3-vae-tiny`` (diffusers ``AutoencoderKL`` in SD3's latent layout:
16 channels, stride 8, its scaling/shift factors; widths 8-16) with ``--patch`` latent pixels per
token side, and decode tiles of ``--tile`` px above 2048 px (the paper tiles above 2K). Every size
runs the real command line, so peak RSS (``wait4``) is the whole process: model, text encoder,
generation and the VAE decode. ``--steps auto`` gives each size the paper's step count for its
token count (``djepa_t2i.config.auto_steps``, §3.1); the table records it.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

SIZES = ("1024x1024", "2048x2048", "4096x4096", "4096x1024")
# `t2i generate` as is, then its peak GPU memory (only that process can read it)
WRAP = """import sys, torch
from djepa_t2i.cli import main
sys.argv[0] = "t2i"
try:
    rc = main(sys.argv[1:])
finally:
    if torch.cuda.is_available():
        print("gpu_peak_mib", torch.cuda.max_memory_allocated() / 2**20)
sys.exit(rc)
"""


def write_checkpoint(out: Path, patch: int, tile: int) -> Path:
    """A djepa_tiny checkpoint over the rehearsal's SD3-layout VAE (offline text encoder)."""
    from model.checkpoint import save_model
    from model.djepa import djepa_tiny
    from model.tokenizers import VAETokenizer
    from tasks.rehearsal_weights import write_vae
    vae = write_vae(out / "sd3-vae-tiny")
    tok = VAETokenizer(str(vae), patch_size=patch, tile_above=2048, tile_size=tile)
    torch.manual_seed(0)
    model = djepa_tiny(token_dim=tok.token_dim, text_dim=384)
    model.tokenizer = tok
    save_model(str(out / "ckpt"), model, None, {})
    return out / "ckpt"


def run_size(ckpt: Path, size: str, steps: int, args, out: Path) -> dict:
    """One `t2i generate` in a fresh process: wall s, CPU s and peak RSS of that process."""
    cmd = [sys.executable, "-c", WRAP, "generate", "--ckpt", str(ckpt), "--prompt", "a red circle",
           "--size", size, "--steps", str(steps), "--flow-steps", str(args.flow_steps), "--cfg", str(args.cfg),
           "--seed", "0", "--device", args.device, "--out", str(out / f"{size}.png")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    if status:
        raise SystemExit(f"{size}: t2i generate failed\n{log[-3000:]}")
    gpu = [float(ln.split()[1]) for ln in log.splitlines() if ln.startswith("gpu_peak_mib")]
    return {"wall_s": time.perf_counter() - t0, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024,
            "gpu": f"{gpu[0] / 1024:.2f} GiB" if gpu and gpu[0] else ""}


def seam(side: int, tile: int) -> None:
    """Decode the same latents with and without tiles; |difference| on the blend bands vs elsewhere."""
    from model.tokenizers import VAETokenizer
    from tasks.rehearsal_weights import write_vae
    with tempfile.TemporaryDirectory() as tmp:
        tok = VAETokenizer(str(write_vae(Path(tmp) / "vae")), patch_size=1, tile_above=side, tile_size=tile)
        g = (side // tok.stride,) * 2
        tokens = torch.randn(g[0] * g[1], tok.token_dim, generator=torch.Generator().manual_seed(0))
        whole = tok.decode(tokens, g)  # side == tile_above: untiled
        tok.tile_above = side - 1
        tiled = tok.decode(tokens, g)
    d = (whole - tiled).abs().amax(0)  # (H, W): worst channel per pixel
    stride, blend = int(tile * 0.75), int(tile * 0.25)  # diffusers: tiles overlap by a quarter, blended
    band, edge = torch.zeros(side, dtype=torch.bool), torch.zeros(side, dtype=torch.bool)
    for s in range(stride, side, stride):
        band[s:s + blend] = True
        edge[s], edge[min(s + blend, side - 1)] = True, True  # where one tile's pixels meet another's blend
    on = band[:, None] | band[None, :]
    # seam visibility in the tiled image alone: the step between neighbouring columns at a band edge
    # vs between any other neighbouring columns (the untiled decode has no edges to compare)
    jump = (tiled[:, :, 1:] - tiled[:, :, :-1]).abs().mean((0, 1))
    whole_jump = (whole[:, :, 1:] - whole[:, :, :-1]).abs().mean((0, 1))
    at = edge[1:]
    print(f"| {side}x{side} | {tile} px | {100 * on.float().mean():.0f}% | "
          f"{d[on].max():.3f} / {d[on].mean():.4f} | {d[~on].max():.3f} / {d[~on].mean():.4f} | "
          f"{jump[at].mean():.4f} / {jump[~at].mean():.4f} (untiled: {whole_jump[at].mean():.4f} / "
          f"{whole_jump[~at].mean():.4f}) |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated WIDTHxHEIGHT")
    p.add_argument("--patch", type=int, default=8, help="latent pixels per token side (8: 4096 tokens at 4096²)")
    p.add_argument("--tile", type=int, default=512, help="VAE decode tile in pixels above 2048 px")
    p.add_argument("--steps", default="auto", help="'auto' (the paper's rule by token count) or an integer")
    p.add_argument("--flow-steps", type=int, default=8)
    p.add_argument("--cfg", type=float, default=4.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seam", type=int, default=None, help="measure the tile seam at this square side instead")
    args = p.parse_args()
    if args.seam:
        print("| decode | tile | pixels in blend bands | tiled vs untiled, max / mean abs diff on the bands | "
              "same, elsewhere | mean step between neighbouring columns, at band edges / elsewhere |")
        print("|---|---|---|---|---|---|")
        return seam(args.seam, args.tile)
    from djepa_t2i.config import auto_steps
    stride = 8 * args.patch
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_checkpoint(Path(tmp), args.patch, args.tile)
        print(f"| size | tokens | AR steps | wall s | CPU s | peak RSS | peak GPU memory | ({args.device}, {args.threads} threads, "
              f"stride {stride} px, {args.flow_steps} flow steps, cfg {args.cfg}, {time.strftime('%Y-%m-%d')}) |")
        print("|---|---|---|---|---|---|---|---|")
        for size in args.sizes.split(","):
            w, h = (int(x) for x in size.split("x"))
            tokens = (w // stride) * (h // stride)
            steps = auto_steps(tokens) if args.steps == "auto" else int(args.steps)
            r = run_size(ckpt, size, steps, args, Path(tmp))
            print(f"| {size} | {tokens} | {steps} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | "
                  f"{r['rss_mib'] / 1024:.2f} GiB | {r['gpu']} | |", flush=True)


if __name__ == "__main__":
    main()
