"""Peak RSS (VmHWM reset before the load) of loading a T5 encoder folder and a KL-VAE folder, with and without ``accelerate``.

    python bench/load_weights_rss.py            # writes folders to a temp dir, prints a markdown table

Without ``accelerate`` diffusers falls back to ``low_cpu_mem_usage=False`` (it prints so): the
model is built with random weights and the file's tensors are copied in, so the weights are held
twice at the peak. Each load runs in a fresh process (``ru_maxrss`` is a high-water mark); the
"without" rows hide accelerate from both libraries in that process only. Folders: the rehearsal's
tiny ones (``t2i rehearsal-weights``) and, for a figure that is not noise, a T5-base-sized encoder
(d_model 768, 12 layers, 110M parameters) and a VAE at SD3's real widths (128-512, 84M parameters),
random weights in the published formats.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
kind, path, hide = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
import torch, diffusers, transformers  # imports first: their RSS is not the load's
import diffusers.utils.import_utils as du, diffusers.models.modeling_utils as dm
import transformers.modeling_utils as tm
if hide:  # as if accelerate were not installed (both libraries read these at load time)
    du._accelerate_available = False
    dm.is_accelerate_available = lambda *a, **k: False
    tm.is_accelerate_available = lambda *a, **k: False
from djepa_t2i.config import Model
from model.text_encoder import TextEncoder
from model.vae_loader import load_vae
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current RSS
base = status("VmRSS")
t0, c0 = time.perf_counter(), time.process_time()
m = TextEncoder(path, "t5", "cpu", max_length=Model().text_max_length).model if kind == "t5" else load_vae(path)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
n = sum(p.numel() * p.element_size() for p in m.parameters())
load_peak = status("VmHWM")
with torch.no_grad():  # a first forward reads every weight: count the pages a lazy (mmap) load defers
    sum(float(p.abs().sum()) for p in m.parameters())
print(json.dumps({{"base_kib": base, "peak_kib": load_peak, "used_peak_kib": status("VmHWM"),
                  "weights_bytes": n, "wall_s": wall, "cpu_s": cpu}}))
"""


def write_big(out: Path) -> dict[str, Path]:
    """A T5-base-sized encoder folder and an SD3-width VAE folder (random weights)."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import T5Config, T5EncoderModel

    from tasks.rehearsal_internvl import build_tokenizer
    torch.manual_seed(0)
    tok = build_tokenizer()
    cfg = T5Config(vocab_size=32128, d_model=768, d_kv=64, d_ff=2048, num_layers=12, num_heads=12,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    T5EncoderModel(cfg).save_pretrained(out / "t5-base-size")
    tok.save_pretrained(out / "t5-base-size")
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=2, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                  use_post_quant_conv=False).save_pretrained(out / "sd3-vae-size")
    return {"t5-base-size": out / "t5-base-size", "sd3-vae-size": out / "sd3-vae-size"}


def measure(kind: str, path: Path, hide: bool) -> dict:
    code = CHILD.format(root=str(ROOT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", code, kind, str(path), "1" if hide else "0"],
                       capture_output=True, text=True, env=env, check=True)
    row = json.loads(r.stdout.strip().splitlines()[-1])
    row["warned"] = "low_cpu_mem_usage=False" in r.stderr
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=None, help="folder for the weights (default: a temp dir)")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from tasks.rehearsal_weights import write_t5, write_vae
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        folders = {"t5-v1_1-tiny (rehearsal)": ("t5", write_t5(out / "t5-v1_1-tiny")),
                   "sd3-vae-tiny (rehearsal)": ("vae", write_vae(out / "sd3-vae-tiny"))}
        big = write_big(out)
        folders["T5 encoder, t5-base size"] = ("t5", big["t5-base-size"])
        folders["KL-VAE, SD3 widths"] = ("vae", big["sd3-vae-size"])
        print("| folder | weights | accelerate | peak RSS over the load | same, after reading every weight | "
              "load wall s | load CPU s | low_cpu_mem_usage=False warning |")
        print("|---|---|---|---|---|---|---|---|")
        for name, (kind, path) in folders.items():
            for hide in (True, False):
                r = measure(kind, path, hide)
                print(f"| {name} | {r['weights_bytes'] / 2**20:.1f} MiB | {'no' if hide else '1.16.0'} | "
                      f"{(r['peak_kib'] - r['base_kib']) / 1024:.1f} MiB | {(r['used_peak_kib'] - r['base_kib']) / 1024:.1f} MiB | "
                      f"{r['wall_s']:.2f} | {r['cpu_s']:.2f} | "
                      f"{'yes' if r['warned'] else 'no'} |", flush=True)
    self_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"\nchildren CPU s: {self_ru.ru_utime + self_ru.ru_stime:.1f}; {time.strftime('%Y-%m-%d')}")


if __name__ == "__main__":
    main()
