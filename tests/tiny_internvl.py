"""A tiny random InternVL checkpoint in the standard Hugging Face layout, built offline.

Used by the recaption tests (and bench/caption_throughput.py with a real-size config) so that
the production backend really loads by path and runs ``generate()``: a tiny vision tower, a tiny
Qwen2 text model, a byte-level BPE tokenizer trained on the fly with ``tokenizers`` (the image
special tokens declared as InternVL's processor expects) and InternVL's image processor.
"""
from __future__ import annotations

from pathlib import Path

from tasks.rehearsal_internvl import CHAT_TEMPLATE, IMAGE_TOKENS, build_tokenizer


def build(out: str | Path, image_size: int = 56, patch: int = 14, vision_hidden: int = 32,
          text_hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Save a random InternVL (model + processor) to ``out``; returns the path."""
    import torch
    from transformers import (GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration,
                              InternVLProcessor, InternVLVideoProcessor)
    torch.manual_seed(seed)
    tok = build_tokenizer()
    grid = image_size // patch
    seq = int(grid * grid * 0.25)  # downsample_ratio 0.5 -> a quarter of the patches
    cfg = InternVLConfig(
        vision_config=dict(hidden_size=vision_hidden, num_hidden_layers=layers, num_attention_heads=2,
                           intermediate_size=2 * vision_hidden, image_size=image_size, patch_size=patch),
        text_config=dict(model_type="qwen2", vocab_size=len(tok), hidden_size=text_hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=2 * text_hidden, max_position_embeddings=512,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKENS["context_image_token"]),
        image_seq_length=seq)
    model = InternVLForConditionalGeneration(cfg).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    ip = GotOcr2ImageProcessor(size={"height": image_size, "width": image_size}, crop_to_patches=False)
    proc = InternVLProcessor(image_processor=ip, tokenizer=tok, video_processor=InternVLVideoProcessor(), image_seq_length=seq,
                             chat_template=CHAT_TEMPLATE)
    out = Path(out)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    return out


if __name__ == "__main__":
    import sys
    print(build(sys.argv[1]))
