"""AUTOMATIC1111's ``/sdapi/v1`` request and response shapes (txt2img, img2img, png-info).

As in A1111's own pydantic models, keys this server does not know are ignored (SillyTavern sends
``url`` and ``auth``, webuiapi dozens of sampler tweaks). Values are typed as JSON has them, as
in every body of this API (a number is not a string). The fields declared here are the ones
A1111 declares and clients send; docs/compatibility.md says for each whether it is mapped,
ignored or refused. ``parameters`` in a response echoes them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cofounder_agent.contract.body import Body, Dimension, Prompt
from cofounder_agent.contract.params import MAX_SEED

_UNKNOWN_KEYS_IGNORED = ConfigDict(extra="ignore", strict=True)
_Text = Field("", max_length=2000)


class A1111Common(Body):
    """What txt2img and img2img share (A1111's StableDiffusionProcessing plus its API fields)."""

    model_config = _UNKNOWN_KEYS_IGNORED

    prompt: Prompt = Field(description="required and not empty here (A1111 allows an empty prompt)")
    negative_prompt: str | None = _Text
    styles: list[str] | None = Field(None, max_length=64, description="ignored: this server has no styles")
    seed: int = Field(-1, ge=-1, le=MAX_SEED, description="-1: a random seed")
    subseed: int = Field(-1, description="ignored (variation seeds are off unless subseed_strength > 0)")
    subseed_strength: float = Field(0.0, ge=0.0, le=0.0, description="variation seeds are not supported: 0 only")
    seed_resize_from_h: int | None = Field(-1, description="ignored")
    seed_resize_from_w: int | None = Field(-1, description="ignored")
    sampler_name: str | None = Field(None, max_length=100)
    sampler_index: str | None = Field(None, max_length=100, description="used when sampler_name is absent")
    scheduler: str | None = Field(None, max_length=100, description="A1111's schedule type, e.g. Automatic, Karras")
    batch_size: int = Field(1, ge=1, le=8, description="images per batch; batch_size x n_iter at most 8")
    n_iter: int = Field(1, ge=1, le=8, description="batches")
    steps: int = Field(50, ge=1, le=200)
    cfg_scale: float = Field(7.0, ge=1.0, le=30.0)
    width: Dimension = 512
    height: Dimension = 512
    restore_faces: bool | None = Field(None, description="our face_restore stage (needs IMAGE_FACE_MODEL)")
    tiling: bool | None = Field(None, description="seamless tiling is not supported: false or null only")
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = Field(None, description="ignored")
    s_min_uncond: float | None = Field(None, description="ignored")
    s_churn: float | None = Field(None, description="ignored")
    s_tmax: float | None = Field(None, description="ignored")
    s_tmin: float | None = Field(None, description="ignored")
    s_noise: float | None = Field(None, description="ignored")
    override_settings: dict[str, Any] | None = Field(None, description="sd_model_checkpoint is read; the rest ignored")
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = Field(None, max_length=300, description="our refiner, by its name")
    refiner_switch_at: float | None = Field(None, gt=0.0, lt=1.0, description="base share of the schedule")
    disable_extra_networks: bool = False
    comments: dict[str, Any] | None = None
    script_name: str | None = Field(None, max_length=200, description="scripts are not supported: null only")
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = Field(False, description="accepted; pictures are always stored")
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict, description="ignored")
    infotext: str | None = Field(None, max_length=10000, description="ignored")


class A1111Txt2Img(A1111Common):
    """POST /sdapi/v1/txt2img: A1111's StableDiffusionTxt2ImgProcessingAPI."""

    enable_hr: bool = False
    denoising_strength: float | None = Field(None, gt=0.0, le=1.0, description="hires fix: the refine strength")
    firstphase_width: int = Field(0, description="ignored")
    firstphase_height: int = Field(0, description="ignored")
    hr_scale: float = Field(2.0, description="2 or 4")
    hr_upscaler: str | None = Field(None, max_length=200, description="Latent*, Lanczos, None or an upscaler file")
    hr_second_pass_steps: int = Field(0, ge=0, le=200, description="0: as many as steps")
    hr_resize_x: int = Field(0, ge=0, description="0, or width x hr_scale")
    hr_resize_y: int = Field(0, ge=0, description="0, or height x hr_scale")
    hr_checkpoint_name: str | None = Field(None, description="ignored")
    hr_sampler_name: str | None = Field(None, description="ignored")
    hr_scheduler: str | None = Field(None, description="ignored")
    hr_prompt: str = Field("", max_length=2000, description="the hires pass's prompt; empty: the prompt")
    hr_negative_prompt: str = Field("", max_length=2000, description="ignored")
    force_task_id: str | None = Field(None, description="ignored")


class A1111Img2Img(A1111Common):
    """POST /sdapi/v1/img2img: A1111's StableDiffusionImg2ImgProcessingAPI."""

    init_images: list[str] = Field(min_length=1, max_length=8, description="base64 pictures, data: URLs allowed")
    resize_mode: int = Field(0, ge=0, le=1, description="0 just resize, 1 crop and resize")
    denoising_strength: float = Field(0.75, gt=0.0, le=1.0)
    image_cfg_scale: float | None = Field(None, description="ignored (instruct-pix2pix only)")
    mask: str | None = Field(None, description="base64 picture, white = repaint")
    mask_blur_x: int = Field(4, ge=0, le=64)
    mask_blur_y: int = Field(4, ge=0, le=64)
    mask_blur: int | None = Field(None, ge=0, le=64, description="sets both; our inpaint's feather")
    mask_round: bool = True
    inpainting_fill: int = Field(0, ge=0, le=1, description="0 fill, 1 original; latent noise/nothing refused")
    inpaint_full_res: bool | int = Field(True, description="accepted; the whole picture is denoised")
    inpaint_full_res_padding: int = Field(0, ge=0, description="ignored")
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    initial_noise_multiplier: float | None = Field(None, description="ignored")
    latent_mask: str | None = Field(None, description="ignored")
    include_init_images: bool = False
    force_task_id: str | None = Field(None, description="ignored")


class A1111ImagesResponse(BaseModel):
    """txt2img/img2img's answer: raw base64 PNGs, the request echoed, and ``info`` as a JSON string."""

    images: list[str]
    parameters: dict[str, Any]
    info: str


class A1111PngInfoRequest(Body):
    model_config = _UNKNOWN_KEYS_IGNORED

    image: str = Field(description="base64 picture, a data: URL allowed")


class A1111PngInfoResponse(BaseModel):
    info: str = Field(description="the parameters text; empty when the picture has none")
    items: dict[str, str] = Field(description="the picture's other text chunks")
    parameters: dict[str, str] = Field(description="the parameters text, parsed as A1111 does")
