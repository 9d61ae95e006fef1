"""Training images/s per GPU that the model's FLOPs allow at an assumed MFU (no GPU needed).

    python bench/step_rate.py [--model djepa_t2i_2b6] [--img-tokens 256 4096] [--text-len 77 256]
        [--mask 0.87] [--mfu 0.4] [--peak-tflops 989.4]

Builds the model on PyTorch's ``meta`` device (shapes only, no memory) and counts
``model.flops.train_flops`` per image: the rate a data path has to feed. Defaults: the paper's
2.6B model with SD3-VAE tokens (64-d: 16 channels x patch 2), T5-XXL text (4096-d), phase 1's
256 image tokens (256 px) and phase 2's 4096 (1024 px), the mean mask ratio of
``model.masking.mask_ratios`` (truncated normal, mean 1, sd 0.25, on [0.7, 1]: 0.87), and an
H100's dense bf16 peak. The MFU is an assumption until ``bench/gpu_check.sh`` measures one.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401
import torch  # noqa: E402

from model.djepa import MODELS, count_parameters  # noqa: E402
from model.flops import train_flops  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default="djepa_t2i_2b6", choices=sorted(MODELS))
    ap.add_argument("--token-dim", type=int, default=64)
    ap.add_argument("--text-dim", type=int, default=4096)
    ap.add_argument("--img-tokens", type=int, nargs="+", default=[256, 4096])
    ap.add_argument("--text-len", type=int, nargs="+", default=[77, 256])
    ap.add_argument("--mask", type=float, default=0.87)
    ap.add_argument("--mfu", type=float, default=0.4)
    ap.add_argument("--peak-tflops", type=float, default=989.4)
    a = ap.parse_args()
    with torch.device("meta"):
        model = MODELS[a.model](token_dim=a.token_dim, text_dim=a.text_dim)
    print(f"{a.model}: {count_parameters(model) / 1e9:.2f}B parameters; MFU {a.mfu:.0%} of {a.peak_tflops} TFLOP/s")
    print("| image tokens | text tokens | train TFLOP per image | images/s per GPU |\n|---|---|---|---|")
    for img in a.img_tokens:
        for txt in a.text_len:
            f = train_flops(model, [txt], [img], a.mask)
            print(f"| {img} | {txt} | {f / 1e12:.2f} | {a.mfu * a.peak_tflops * 1e12 / f:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
