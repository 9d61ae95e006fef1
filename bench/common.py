"""Shared bench plumbing: device/precision setup, a random packed batch, peak memory."""
from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import djepa_t2i.env  # noqa: E402,F401
from djepa_t2i.config import resolve_device  # noqa: E402

import torch  # noqa: E402

from model.batch import PackedImages, cu_seqlens_from_lengths  # noqa: E402
from model.djepa import MODELS  # noqa: E402
from model.text_encoder import TextStates  # noqa: E402

H100_BF16_DENSE_TFLOPS = 989.4


def add_common(p) -> None:
    p.add_argument("--model", default="djepa_tiny")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--grid", type=int, default=16, help="image tokens per side (16 -> 256 tokens)")
    p.add_argument("--token-dim", type=int, default=16, help="16 = KL-16 latent channels (MAR)")
    p.add_argument("--text-len", type=int, default=32)
    p.add_argument("--text-dim", type=int, default=384)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--attention", default="auto")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the blocks (and, sampling, the flow head's Euler step)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--check-syncs", action="store_true",
                   help="CUDA: warn on every host-device sync inside the timed loop")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="for MFU; default: H100 dense bf16 on CUDA, none on CPU")


def device_of(name: str) -> torch.device:
    return torch.device(resolve_device(name))


def bench_model(args, grad_checkpointing: bool = False) -> tuple[torch.nn.Module, torch.device]:
    """(model, device) for a benchmark: ``--threads``, ``--device``, seed 0, ``args.model`` built
    from the common options, compiled per part with ``--compile``."""
    torch.set_num_threads(args.threads)
    dev = device_of(args.device)
    torch.manual_seed(0)
    model = MODELS[args.model](token_dim=args.token_dim, text_dim=args.text_dim,
                               attention=args.attention).to(dev)
    model.set_grad_checkpointing(grad_checkpointing)
    if args.compile:
        compile_parts(model)
    return model, dev


def random_batch(args, device) -> tuple[PackedImages, TextStates]:
    n = args.grid * args.grid
    images = PackedImages(torch.randn(args.batch * n, args.token_dim), [(args.grid, args.grid)] * args.batch,
                          cu_seqlens_from_lengths([n] * args.batch), [None] * args.batch).to(device)
    text = TextStates(torch.randn(args.batch, args.text_len, args.text_dim),
                      torch.ones(args.batch, args.text_len, dtype=torch.bool),
                      [args.text_len] * args.batch).to(device)
    return images, text


def compile_parts(model) -> None:
    for stack in (model.context.stack, model.predictor, model.target.stack):
        for blk in stack.blocks:
            blk.compile(dynamic=True)


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, n: int, args, device):
    """(seconds per call, last result) of ``n`` calls of ``fn`` after the caller's warm-up; peak
    memory is counted from here, and ``--sync-debug`` guards the timed calls only."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync_debug(args, device, True)
    t0 = time.perf_counter()
    for _ in range(n):
        out = fn()
    sync(device)
    sync_debug(args, device, False)
    return (time.perf_counter() - t0) / n, out


def peak_memory_gib(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # peak RSS (KiB -> GiB)


def hardware(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name()
    name = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} thread(s)"


def peak_tflops(args, device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    return H100_BF16_DENSE_TFLOPS if device.type == "cuda" else None


def sync_debug(args, device, on: bool) -> None:
    """torch's sync debug mode: lists any host sync the timed loop would hide."""
    if args.check_syncs and device.type == "cuda":
        torch.cuda.set_sync_debug_mode("warn" if on else "default")
