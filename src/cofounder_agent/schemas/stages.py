"""Stage specs of a recipe: a discriminated union on ``type``, validated before a job is queued."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from cofounder_agent.contract.body import Prompt
from cofounder_agent.contract.stage import StageSpec

Strength = Annotated[float, Field(gt=0.0, le=1.0)]
# A model file in the models dir: a plain .safetensors file name, never a path.
MODEL_FILE = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\.safetensors$"

# The seed's inpaint detail levels: steps, strength, guidance.
DETAIL_LEVELS: dict[str, tuple[int, float, float]] = {
    "low": (10, 0.3, 5.0),
    "medium": (15, 0.5, 7.0),
    "high": (20, 0.7, 8.0),
    "ultra": (30, 0.9, 10.0),
}


class _Stage(StageSpec):
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
    """Enlarge 2x or 4x with a learned upscaler, or Lanczos plus a low-strength img2img pass on tiles."""

    type: Literal["upscale"]
    factor: Literal[2, 4] = 2
    upscaler: str | None = Field(
        None,
        pattern=MODEL_FILE,
        description="an ESRGAN-class .safetensors file in IMAGE_MODELS_DIR; omitted: Lanczos + tiled refine",
    )
    strength: Strength = 0.2
    steps: int = Field(20, ge=1, le=200)
    tile: int = Field(512, ge=64, le=2048, multiple_of=8)
    overlap: int = Field(64, ge=0, le=512, multiple_of=8)

    def model_files(self) -> dict[str, str]:
        return {"upscaler": self.upscaler} if self.upscaler is not None else {}


class InpaintStage(_Stage):
    """Refine only a region, given by a mask picture (white = refine) or a box (the seed's enhance_region)."""

    type: Literal["inpaint"]
    model: Literal["refiner", "base"] = "base"
    mask_image_id: str | None = Field(None, pattern=r"^[0-9a-f]{32}$", description="an uploaded mask picture")
    box: tuple[int, int, int, int] | None = Field(None, strict=False, description="left, top, right, bottom in pixels")
    detail: Literal["low", "medium", "high", "ultra"] = Field("high", description="steps/strength/guidance preset")
    feather: int = Field(8, ge=0, le=64, description="blur radius of the mask's edge, in pixels")

    @field_validator("box")
    @classmethod
    def _ordered(cls, box: tuple[int, int, int, int] | None) -> tuple[int, int, int, int] | None:
        if box is not None and (box[2] <= box[0] or box[3] <= box[1] or min(box) < 0):
            raise ValueError("must be left, top, right, bottom in pixels with right > left and bottom > top")
        return box

    def image_inputs(self) -> dict[str, str]:
        return {"mask_image_id": self.mask_image_id} if self.mask_image_id is not None else {}

    @model_validator(mode="after")
    def _one_region(self) -> InpaintStage:
        if (self.mask_image_id is None) == (self.box is None):
            raise ValueError("give exactly one of mask_image_id and box")
        return self


class VariationsStage(_Stage):
    """One picture refined under several prompts as one batch; every variation is a final image."""

    type: Literal["variations"]
    prompts: list[Prompt] = Field(min_length=1, max_length=8)
    prompt: None = Field(None, description="not used: each variation has its own prompt in prompts")
    strength: Strength = 0.5
    steps: int = Field(20, ge=1, le=200)


class FaceRestoreStage(StageSpec):
    """Restore faces with a GFPGAN or RestoreFormer model, blended back by ``strength``.

    The seed's ``detect_and_enhance_faces``. No prompt, guidance or UNet: it runs the face model.
    """

    type: Literal["face_restore"]
    face_model: str | None = Field(
        None,
        pattern=MODEL_FILE,
        description="a GFPGAN or RestoreFormer .safetensors file in IMAGE_MODELS_DIR; default: IMAGE_FACE_MODEL",
    )
    strength: Strength = Field(0.5, description="1 takes the restored face, lower blends it with the original")
    max_faces: int = Field(8, ge=1, le=32, description="the largest faces first")


# The stages that denoise with a loaded UNet (all but face_restore).
DenoisingStage = RefineStage | ProgressiveStage | AdaptiveStage | UpscaleStage | InpaintStage | VariationsStage

Stage = Annotated[
    DenoisingStage | FaceRestoreStage,
    Field(discriminator="type"),
]
