"""InternVL captioning throughput through the production captioner (issue 3): images/s at batch 32.

    python bench/caption_throughput.py --size 2b --batch 32 --max-new-tokens 77       # H100
    python bench/caption_throughput.py --size tiny --batch 4 --max-new-tokens 8 --device cpu

Random weights, real-size shapes. ``--size 2b`` is an InternVL2-2B-like config: the InternViT-300M
vision tower (transformers' InternVLVisionConfig defaults: 448 px tiles, patch 14, 24 layers,
1024 wide, 16 heads, MLP 4096) and an InternLM2-1.8B-sized text model as native Qwen2 (InternLM2
has no native transformers class): 24 layers, 2048 wide, 16 heads / 8 KV heads, MLP 8192, vocab
92,553; 256 image tokens per tile (pixel shuffle 0.5). It is built directly on the device in bf16
(no 4 GB save/load), then handed to ``InternVLCaptioner`` with the same processor settings
the constructor would set. ``--size tiny`` saves ``tests/tiny_internvl.py``'s checkpoint to a temp
dir and loads it through the real constructor, so the whole loading path runs too.

The timed region is ``InternVLCaptioner.caption(images)``: preprocessing, ``generate()`` (greedy,
``max_new_tokens``) and decoding, as the recaption flow runs it. Random weights rarely emit EOS,
so every caption runs the full ``max_new_tokens`` (the worst case of a real model). One
synchronize before and after each timed batch (``caption`` itself syncs when it decodes);
warm-up batches first; the median over ``--repeats`` batches is reported.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import device_of, hardware, peak_memory_gib, sync

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import tiny_internvl

from tasks.captioning import InternVLCaptioner

PROMPT = "Describe this image in one detailed sentence."

# InternVL2-2B-like: InternViT-300M-448px + an InternLM2-1.8B-sized decoder (as Qwen2)
SIZE_2B = {
    "vision": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
               "intermediate_size": 4096, "image_size": 448, "patch_size": 14},
    "text": {"model_type": "qwen2", "vocab_size": 92553, "hidden_size": 2048, "num_hidden_layers": 24,
             "num_attention_heads": 16, "num_key_value_heads": 8, "intermediate_size": 8192,
             "max_position_embeddings": 32768, "rope_theta": 1e6},
}


def build_2b(device: torch.device, dtype: torch.dtype) -> tuple:
    """Random InternVL2-2B-like model (on ``device``, in ``dtype``) and its processor, in memory."""
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)
    tok = tiny_internvl.build_tokenizer()
    vis = SIZE_2B["vision"]
    seq = int((vis["image_size"] // vis["patch_size"]) ** 2 * 0.25)  # pixel shuffle 0.5 -> 256
    cfg = InternVLConfig(
        vision_config=vis,
        text_config=dict(SIZE_2B["text"], eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids(tiny_internvl.IMAGE_TOKENS["context_image_token"]),
        image_seq_length=seq)
    torch.manual_seed(0)
    with torch.device(device):
        model = InternVLForConditionalGeneration._from_config(cfg, dtype=dtype).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    ip = GotOcr2ImageProcessor(size={"height": vis["image_size"], "width": vis["image_size"]},
                               crop_to_patches=False)
    proc = InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=InternVLVideoProcessor(),
                             image_seq_length=seq, chat_template=tiny_internvl.CHAT_TEMPLATE)
    return model, proc


def captioner_2b(device: torch.device, max_new_tokens: int) -> InternVLCaptioner:
    """An ``InternVLCaptioner`` around the in-memory model, set up as ``__init__`` does after loading."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, proc = build_2b(device, dtype)
    cap = InternVLCaptioner.__new__(InternVLCaptioner)
    cap.device, cap.dtype, cap.processor, cap.model = str(device), dtype, proc, model
    cap.processor.tokenizer.padding_side = "left"
    cap.image_size, cap.crop_to_patches = SIZE_2B["vision"]["image_size"], False
    cap.max_new_tokens = max_new_tokens
    cap.text = cap._prompt_text(PROMPT)
    return cap


def random_images(n: int, seed: int = 0) -> list:
    """LAION-like varied sizes (the processor resizes every one to the tile size)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(256, 1025, size=2))
        out.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--size", choices=["tiny", "2b"], default="tiny")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=77)
    p.add_argument("--device", default="auto")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed batches; the median is reported")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dev = device_of(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.size == "tiny":
            cap = InternVLCaptioner(str(tiny_internvl.build(Path(tmp) / "tiny-internvl")), PROMPT,
                                    max_new_tokens=args.max_new_tokens, image_size=56, device=str(dev))
        else:
            cap = captioner_2b(dev, args.max_new_tokens)
        n_params = sum(q.numel() for q in cap.model.parameters())
        images = random_images(args.batch)
        for _ in range(args.warmup):
            cap.caption(images)
        sync(dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            sync(dev)
            t0 = time.perf_counter()
            cap.caption(images)
            sync(dev)
            times.append(time.perf_counter() - t0)
    dt = statistics.median(times)
    print(f"InternVL {args.size} ({n_params / 1e6:.1f}M params, random) on {hardware(dev)}, "
          f"{str(cap.dtype).replace('torch.', '')}, backend=internvl (InternVLCaptioner.caption)")
    print(f"batch {args.batch}, {cap.image_size} px tiles, max_new_tokens {args.max_new_tokens}, "
          f"median of {args.repeats} after {args.warmup} warm-up; s/batch runs: "
          + ", ".join(f"{t:.3f}" for t in times))
    print(f"images/s {args.batch / dt:.2f}  s/batch {dt:.6f}  peak_mem_gib {peak_memory_gib(dev):.2f}")


if __name__ == "__main__":
    main()
