"""Models of the seed-compatible media API and the shared error shape."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from cofounder_agent.engine.params import MAX_SEED, RefinerMode, SchedulerName
from cofounder_agent.services.pexels import ATTRIBUTION

# Request bodies: no unknown fields, and no coercion (false is not 0, "1" is not 1, 2.0 is not
# 2): a body is valid exactly when it matches the OpenAPI document.
STRICT_BODY = ConfigDict(extra="forbid", strict=True)


# Deeper than any body of this API nests (a job's stages: 4 levels); deeper is refused with a
# 422 before anything recurses through it.
MAX_DEPTH = 32


def _integral(value: Any, depth: int = 0) -> Any:
    # JSON Schema's integer includes 2.0: read integral floats as ints (strict floats take ints).
    if depth > MAX_DEPTH:
        raise ValueError(f"the body nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v, depth + 1) for v in value]
    return value


class Body(BaseModel):
    """A request body: no unknown fields, no coercion beyond what JSON Schema calls equal."""

    model_config = STRICT_BODY

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        return _integral(data)


Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Dimension = Annotated[int, Field(ge=64, le=2048, multiple_of=8)]


class ImageGenerationRequest(Body):
    """The seed's request, plus the optional fields a reproducible generation needs."""

    prompt: Prompt
    title: str | None = Field(None, max_length=200)
    keywords: list[Annotated[str, StringConstraints(max_length=100)]] | None = Field(None, max_length=20)
    use_pexels: bool = True
    use_generation: bool = False
    use_refinement: bool = Field(True, description="Run the SDXL refiner after the base model")
    high_quality: bool = Field(
        True, description="When false and num_inference_steps is not given, the base runs 30 steps instead of 50"
    )
    num_inference_steps: int = Field(50, ge=20, le=100, description="Base schedule length")
    guidance_scale: float = Field(8.0, ge=1.0, le=20.0)
    negative_prompt: Annotated[str, StringConstraints(max_length=2000)] | None = None
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Omit for a random seed (returned)")
    width: Dimension = 1024
    height: Dimension = 1024
    scheduler: SchedulerName | None = None
    refiner_mode: RefinerMode | None = Field(None, description="Default: the server's IMAGE_REFINER_MODE")
    switch_at: float | None = Field(None, gt=0.0, lt=1.0, description="ensemble: base share of the schedule")
    refiner_steps: int | None = Field(None, ge=1, le=200, description="img2img: refiner schedule length")
    refiner_strength: float | None = Field(None, gt=0.0, le=1.0, description="img2img: re-noising strength")

    @property
    def base_steps(self) -> int:
        if not self.high_quality and "num_inference_steps" not in self.model_fields_set:
            return 30  # the seed's "vs 30 base steps" for non-high-quality requests
        return self.num_inference_steps


class RefinerInfo(BaseModel):
    mode: RefinerMode
    applied: bool
    fallback_reason: str | None = None
    switch_at: float | None = None
    steps: int | None = None
    strength: float | None = None


class PexelsAttribution(BaseModel):
    photographer: str
    photographer_url: str
    photo_url: str
    attribution: str = ATTRIBUTION
    link: str = "https://www.pexels.com"


class ImageGenerationResponse(BaseModel):
    """Where the image is, which source made it and how."""

    success: bool = True
    source: Literal["sdxl", "tiny", "pexels"] = Field(description="tiny = the built-in random-weight model")
    image_id: str
    image_url: str
    width: int
    height: int
    model: str | None = None
    seed: int | None = None
    num_inference_steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    refiner: RefinerInfo | None = None
    timings: dict[str, float] = Field(default_factory=dict)
    pexels: PexelsAttribution | None = None
    generation_error: str | None = Field(None, description="Why generation was not used, when Pexels served")
    job_id: str | None = Field(None, description="the queued job that made the image (GET /v1/jobs/{id})")


class MediaHealth(BaseModel):
    """The seed's health fields plus what an operator needs to see at a glance."""

    status: Literal["ok", "degraded"]
    sdxl_ok: bool = Field(description="real SDXL weights are loaded and ready")
    generation_ok: bool = Field(description="generation works (SDXL or the built-in tiny model)")
    pexels_ok: bool
    model_state: str
    model: str | None
    refiner_model: str | None
    tiny_model: bool
    model_note: str | None
    load_error: str | None
    device: str | None
    device_name: str | None
    vram_gb: float | None
    precision: str | None
    vae_dtype: str | None
    fast_path: list[str] = Field(default_factory=list, description="fast-path switches applied at load")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
