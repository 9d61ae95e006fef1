"""The config's building blocks: a section (unknown keys refused, assignments validated), a
model-backed step (``backend`` + local ``weights``), and the one error type ``t2i`` prints as one
line with exit 2 (djepa_t2i/config/__init__.py assembles the sections)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


class ConfigError(ValueError):
    """A bad config value, argument or path: ``t2i`` prints it as one line and exits 2."""


