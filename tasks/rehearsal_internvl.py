"""A tiny InternVL2 folder in OpenGVLab's ``internvl_chat`` layout, and the byte-level BPE tokenizer
the tiny InternVL folders share.

The layout is what OpenGVLab publishes as InternVL2-*: ``config.json`` with ``model_type:
internvl_chat`` and an ``auto_map`` naming the folder's own ``configuration_internvl_chat.py`` /
``modeling_internvl_chat.py``, weights in ``model.safetensors``, and a tokenizer with InternVL's
image tokens. The modeling file is a stand-in with InternVL's ``batch_chat(tokenizer,
pixel_values, questions, generation_config, num_patches_list)`` signature: instead of a language
model it reports what it was given (prompt, tiles, tile side, pixel mean), so the loader's
preprocessing and prompt can be checked exactly (tests/test_weights_backends.py) and the
rehearsal (``t2i rehearsal-weights``) runs the production loading path in seconds. The real
folder's code is OpenGVLab's, loaded the same way (``recaption.trust_remote_code``).
"""
from __future__ import annotations

import json
from pathlib import Path

IMAGE_TOKENS = {"start_image_token": "<img>", "end_image_token": "</img>",
                "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"}
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                 "{% for c in m['content'] %}{% if c['type'] == 'image' %}<IMG_CONTEXT>\n"
                 "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # heavy
    from transformers import PreTrainedTokenizerFast  # heavy
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *IMAGE_TOKENS.values()]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = ["a photo of two red circles to the left of a blue square",
              "a green triangle above a yellow star on a white background",
              "Describe this image in one detailed sentence."] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=IMAGE_TOKENS, padding_side="left", chat_template=CHAT_TEMPLATE)


CONFIG_PY = '''
from transformers import PretrainedConfig


class InternVLChatConfig(PretrainedConfig):
    model_type = "internvl_chat"

    def __init__(self, force_image_size=448, hidden=8, **kwargs):
        super().__init__(**kwargs)
        self.force_image_size, self.hidden = force_image_size, hidden
'''

MODELING_PY = '''
import torch
from transformers import PreTrainedModel

from .configuration_internvl_chat import InternVLChatConfig


class InternVLChatModel(PreTrainedModel):
    config_class = InternVLChatConfig
    base_model_prefix = "internvl"

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Linear(3, config.hidden)
        self.post_init()

    def batch_chat(self, tokenizer, pixel_values, questions, generation_config, num_patches_list=None,
                   history=None, return_history=False, IMG_START_TOKEN="<img>", IMG_END_TOKEN="</img>",
                   IMG_CONTEXT_TOKEN="<IMG_CONTEXT>", verbose=False, image_counts=None):
        assert sum(num_patches_list) == pixel_values.shape[0] == len(questions)
        assert tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN) != tokenizer.unk_token_id
        out, i = [], 0
        for q, n in zip(questions, num_patches_list):
            tile = pixel_values[i:i + n]
            i += n
            feat = self.proj(tile.float().mean(dim=(2, 3))).sum().item()
            out.append(f"{q.splitlines()[-1]} | tiles={n} side={tile.shape[-1]} "
                       f"mean={tile.float().mean().item():.3f} feat={feat:.3f} "
                       f"max_new_tokens={generation_config['max_new_tokens']}")
        return out
'''


def write_internvl_chat(out: str | Path, image_size: int = 56, hub_ref: bool = False) -> Path:
    """Write the folder; ``hub_ref`` points auto_map at a hub repo (which the loader must refuse)."""
    import torch  # heavy
    from safetensors.torch import save_file  # heavy

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "configuration_internvl_chat.py").write_text(CONFIG_PY)
    (out / "modeling_internvl_chat.py").write_text(MODELING_PY)
    prefix = "OpenGVLab/InternVL2-2B--" if hub_ref else ""
    cfg = {"model_type": "internvl_chat", "architectures": ["InternVLChatModel"], "force_image_size": image_size,
           "hidden": 8, "auto_map": {"AutoConfig": prefix + "configuration_internvl_chat.InternVLChatConfig",
                                     "AutoModel": prefix + "modeling_internvl_chat.InternVLChatModel"}}
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    g = torch.Generator().manual_seed(0)
    save_file({"proj.weight": torch.randn(8, 3, generator=g), "proj.bias": torch.zeros(8)},
              str(out / "model.safetensors"), metadata={"format": "pt"})
    build_tokenizer().save_pretrained(out)
    return out
