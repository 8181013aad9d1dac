"""AUTOMATIC1111's auxiliary `/sdapi/v1` models: the shapes of A1111 1.10's ``modules/api/models.py``.

Field names, types and defaults are A1111's own, so its clients (open-webui, SillyTavern,
webuiapi) read our answers as they read A1111's. Requests ignore keys they do not know, as
A1111's pydantic models do.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cofounder_agent.contract.body import Body


class A1111Body(Body):
    """A request body as A1111 reads it: unknown keys are ignored, not refused (types stay strict)."""

    model_config = ConfigDict(extra="ignore", strict=True)


class Empty(BaseModel):
    """``{}``: what A1111 answers to ``POST /interrupt``."""


class ProgressState(BaseModel):
    """A1111's ``shared.state``: what the server is doing now (all zero and empty when idle)."""

    skipped: bool = False
    interrupted: bool = Field(False, description="the running job was asked to stop")
    job: str = Field("", description="the running job's id; empty when idle")
    job_count: int = Field(0, description="jobs running and queued")
    job_timestamp: str = Field("0", description="when the running job started, %Y%m%d%H%M%S (UTC)")
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressPublic(BaseModel):
    """``GET /progress``: the running job's progress (0 when idle) and seconds left."""

    progress: float = Field(0.0, ge=0.0, le=1.0)
    eta_relative: float = 0.0
    state: ProgressState
    current_image: str | None = Field(None, description="always null: no preview is rendered mid-job")
    textinfo: str | None = None


class OptionsPublic(BaseModel):
    """``GET /options``: the settings A1111's clients read (A1111 has hundreds; the rest mean nothing here)."""

    sd_model_checkpoint: str | None = Field(None, description="the loaded model's title in /sd-models")
    sd_checkpoint_hash: str | None = Field(None, description="its sha256 in /sd-models")
    sd_vae: str = "Automatic"
    CLIP_stop_at_last_layers: int = 1
    samples_format: str = "png"
    enable_pnginfo: bool = True
    eta_noise_seed_delta: int = 0
    sd_checkpoints_limit: int = 1


class SDModelItem(BaseModel):
    title: str
    model_name: str
    hash: str | None = None
    sha256: str | None = None
    filename: str
    config: str | None = None


class SamplerItem(BaseModel):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class SchedulerItem(BaseModel):
    name: str
    label: str
    aliases: list[str] | None = None
    default_rho: float | None = None
    need_inner_model: bool | None = None


class UpscalerItem(BaseModel):
    name: str
    model_name: str | None = None
    model_path: str | None = None
    model_url: str | None = None
    scale: float | None = None


class LatentUpscalerModeItem(BaseModel):
    name: str


class SDVaeItem(BaseModel):
    model_name: str
    filename: str


class FaceRestorerItem(BaseModel):
    name: str
    cmd_dir: str | None = None


class ScriptsList(BaseModel):
    txt2img: list[str] = Field(default_factory=list)
    img2img: list[str] = Field(default_factory=list)


class ExtrasSingleImageRequest(A1111Body):
    """``POST /extra-single-image``: upscale one picture (2x or 4x), optionally restoring faces."""

    resize_mode: int = Field(0, ge=0, le=1, description="0: by upscaling_resize; 1 (to a size) is refused")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(0, ge=0, le=1, description="> 0: restore faces at this strength")
    codeformer_visibility: float = Field(0, ge=0, le=1, description="> 0: restore faces at this strength")
    codeformer_weight: float = Field(0, ge=0, le=1, description="ignored")
    upscaling_resize: float = Field(2, gt=0, le=8, description="2 or 4")
    upscaling_resize_w: int = Field(512, ge=1, description="ignored (resize_mode 1 is refused)")
    upscaling_resize_h: int = Field(512, ge=1, description="ignored (resize_mode 1 is refused)")
    upscaling_crop: bool = True
    upscaler_1: str = Field("None", description="None or Lanczos (Lanczos + refine), or a name in /upscalers")
    upscaler_2: str = Field("None", description="only with extras_upscaler_2_visibility 0")
    extras_upscaler_2_visibility: float = Field(0, ge=0, le=1, description="> 0 is refused: one upscaler")
    upscale_first: bool = Field(False, description="upscale before restoring faces")
    image: str = Field(..., min_length=1, description="base64 PNG/JPEG/WebP, raw or as a data: URL")


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = Field(None, description="base64 PNG, no data: prefix")
