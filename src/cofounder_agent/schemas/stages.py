"""Stage specs of a recipe: a discriminated union on ``type``, validated before a job is queued."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from cofounder_agent.schemas.media import Prompt

Strength = Annotated[float, Field(gt=0.0, le=1.0)]


class _Stage(BaseModel):
    model_config = {"extra": "forbid"}

    prompt: Prompt | None = Field(None, description="default: the job's prompt")
    guidance_scale: float | None = Field(None, ge=1.0, le=30.0, description="default: the job's")
    model: Literal["refiner", "base"] = Field("refiner", description="which loaded UNet denoises")


class RefineStage(_Stage):
    """An img2img pass over the previous picture (the seed's refine_image)."""

    type: Literal["refine"]
    strength: Strength = 0.3
    steps: int = Field(30, ge=1, le=200)


class ProgressiveStage(_Stage):
    """Several refine passes with a decreasing strength schedule; each pass is a picture."""

    type: Literal["progressive"]
    strengths: list[Strength] = Field(default_factory=lambda: [0.5, 0.3, 0.15], min_length=1, max_length=8)
    steps: int = Field(20, ge=1, le=200)


class AdaptiveStage(_Stage):
    """Refine until the no-reference quality (1 - PIQE/100) reaches ``threshold`` or ``max_passes``."""

    type: Literal["adaptive"]
    threshold: float = Field(0.8, ge=0.0, le=1.0)
    max_passes: int = Field(5, ge=1, le=10)
    steps: int = Field(12, ge=1, le=200)
    max_strength: Strength = 0.5


class UpscaleStage(_Stage):
    """Enlarge 2x or 4x: Lanczos plus a low-strength img2img pass over overlapping tiles."""

    type: Literal["upscale"]
    factor: Literal[2, 4] = 2
    strength: Strength = 0.2
    steps: int = Field(20, ge=1, le=200)
    tile: int = Field(512, ge=64, le=2048, multiple_of=8)
    overlap: int = Field(64, ge=0, le=512, multiple_of=8)


Stage = Annotated[RefineStage | ProgressiveStage | AdaptiveStage | UpscaleStage, Field(discriminator="type")]
