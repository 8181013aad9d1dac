"""Models of the seed-compatible media API and the shared error shape."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from cofounder_agent.contract.body import Body, Dimension, Prompt
from cofounder_agent.contract.params import MAX_SEED, RefinerMode, SchedulerName
from cofounder_agent.services.pexels import ATTRIBUTION


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


class WorkerPublic(BaseModel):
    """A live worker process (one per device) from the workers table."""

    id: str
    host: str
    pid: int
    device: str
    model: str
    precision: str
    ready: bool
    state: str = Field(description="its engine: idle, loading, ready or failed")
    current_job_ids: list[str]
    heartbeat_age_s: float = Field(description="seconds since its last heartbeat")
    same_image_dir: bool | None = Field(
        None, description="whether it writes into this server's image directory (false: its images cannot be served)"
    )


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
    workers: list[WorkerPublic] = Field(default_factory=list, description="the live workers, this process's too")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
