"""AUTOMATIC1111's txt2img and img2img, translated onto a job recipe, and the job's end back into A1111's answer.

Everything A1111-specific stops here: below, a request is an ordinary job (one code path for
auth, 429, cancel, timeouts, metadata and boards). docs/compatibility.md lists each field.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cofounder_agent.config import Settings
from cofounder_agent.contract.a1111_names import A1111_NAMES, our_scheduler
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.contract.infotext import VERSION, infotext, model_name
from cofounder_agent.contract.params import MAX_SEED
from cofounder_agent.contract.stage import StageSpec
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas.a1111 import A1111Common, A1111ImagesResponse, A1111Img2Img, A1111Txt2Img
from cofounder_agent.schemas.jobs import JobCreate, RefinerSpec
from cofounder_agent.services.a1111_images import init_pictures
from cofounder_agent.services.gallery import Gallery
from cofounder_agent.stages import FaceRestoreStage, InpaintStage, RefineStage, UpscaleStage
from cofounder_agent.stages.common import MODEL_FILE
from cofounder_agent.storage import ImageStore

# hr_upscaler names that mean our Lanczos + refine pass: A1111's latent modes upscale before a
# denoising pass too, and "None"/"Lanczos" are plain resizes (ours adds the refine pass).
_LANCZOS = frozenset(
    {
        "",
        "none",
        "lanczos",
        "latent",
        "latent (antialiased)",
        "latent (bicubic)",
        "latent (bicubic antialiased)",
        "latent (nearest)",
        "latent (nearest-exact)",
    }
)
_HR_FACTORS = (2, 4)


@dataclass
class Translation:
    """A job recipe made from an A1111 request, and the request's names for the recipe's fields."""

    recipe: JobCreate
    # Our field (e.g. "stages.0.strength") -> the A1111 field the caller wrote; "stages.N" covers a stage.
    names: dict[str, str] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)  # pictures stored for it (removed if it is refused)

    def renamed(self, error: InvalidField) -> InvalidField:
        """``error`` naming the A1111 field its value came from."""
        ours = error.field or ""
        stage = ".".join(ours.split(".")[:2])
        theirs = self.names.get(ours) or self.names.get(stage)
        if theirs is None and ours.startswith("input_image_ids"):
            theirs = "init_images"
        return error if theirs is None else InvalidField(theirs, error.reason)


def _common(body: A1111Common) -> dict[str, Any]:
    """The job options txt2img and img2img share; refuses what cannot be honoured, naming the field."""
    if body.tiling:
        raise InvalidField("tiling", "seamless tiling is not supported: leave it false")
    if body.script_name:
        raise InvalidField("script_name", "scripts are not supported: leave it null")
    count = body.batch_size * body.n_iter
    if count > 8:
        raise InvalidField("batch_size", f"batch_size x n_iter is {count}: at most 8 images per request")
    sampler, sampler_field = body.sampler_name, "sampler_name"
    if not sampler:
        sampler, sampler_field = body.sampler_index, "sampler_index"
    return {
        "prompt": body.prompt,
        "negative_prompt": body.negative_prompt or None,
        "seed": None if body.seed == -1 else body.seed,
        "steps": body.steps,
        "guidance_scale": body.cfg_scale,
        "scheduler": our_scheduler(sampler, body.scheduler, sampler_field=sampler_field),
        "width": body.width,
        "height": body.height,
    }


def _faces(body: A1111Common, stages: list[StageSpec], names: dict[str, str]) -> None:
    """restore_faces: our face_restore stage, last (it needs IMAGE_FACE_MODEL: else a 422 naming restore_faces)."""
    if body.restore_faces:
        names[f"stages.{len(stages)}"] = "restore_faces"
        stages.append(FaceRestoreStage(type="face_restore"))


def txt2img(body: A1111Txt2Img, settings: Settings) -> Translation:
    """A txt2img request as a job: a generation, then the hires fix (upscale) and face restoration."""
    options = _common(body)
    stages: list[StageSpec] = []
    names: dict[str, str] = {}
    if body.enable_hr:
        names.update(_hires(body, settings, stages))
    _faces(body, stages, names)
    # Any refiner_checkpoint: this server's one refiner, as an ensemble (the infotext names it).
    refiner = None
    if (body.refiner_checkpoint or "").strip().lower() not in ("", "none") or body.refiner_switch_at is not None:
        refiner = RefinerSpec(mode="ensemble", switch_at=body.refiner_switch_at)
    recipe = JobCreate(**options, num_images=body.batch_size * body.n_iter, refiner=refiner, stages=stages)
    return Translation(recipe, names)


def _hires(body: A1111Txt2Img, settings: Settings, stages: list[StageSpec]) -> dict[str, str]:
    """enable_hr: our upscale stage, 2x or 4x; a learned upscaler when hr_upscaler names one."""
    factor = int(body.hr_scale) if body.hr_scale in _HR_FACTORS else None
    if factor is None:
        raise InvalidField("hr_scale", f"{body.hr_scale:g} is not supported: 2 or 4 (the upscale stage's factors)")
    resize = (("hr_resize_x", body.hr_resize_x, body.width), ("hr_resize_y", body.hr_resize_y, body.height))
    for name, value, side in resize:
        if value and value != side * factor:
            raise InvalidField(name, f"0, or {side * factor} ({side} x hr_scale): the upscale is 2x or 4x")
    strength = body.denoising_strength if body.denoising_strength is not None else 0.75
    steps = body.hr_second_pass_steps or body.steps
    spec = UpscaleStage(
        type="upscale",
        factor=2 if factor == 2 else 4,
        upscaler=_upscaler(body.hr_upscaler, settings),
        strength=strength,
        steps=steps,
        prompt=body.hr_prompt.strip() or None,
        guidance_scale=body.cfg_scale,
    )
    at = f"stages.{len(stages)}"
    stages.append(spec)
    step_field = "hr_second_pass_steps" if body.hr_second_pass_steps else "steps"
    return {
        at: "enable_hr",
        f"{at}.factor": "hr_scale",
        f"{at}.upscaler": "hr_upscaler",
        f"{at}.strength": "denoising_strength",
        f"{at}.steps": step_field,
    }


def _upscaler(name: str | None, settings: Settings) -> str | None:
    """None: Lanczos + refine; else an upscaler file in the models dir, with or without .safetensors."""
    if name is None or name.strip().lower() in _LANCZOS:
        return None
    file = name.strip() if name.strip().endswith(".safetensors") else f"{name.strip()}.safetensors"
    if re.fullmatch(MODEL_FILE, file) and (settings.models_dir / file).is_file():
        return file
    found = settings.models_dir.glob("*.safetensors") if settings.models_dir.is_dir() else []
    files = sorted(path.stem for path in found)
    accepted = ", ".join(["Latent", "Lanczos", "None", *files])
    raise InvalidField("hr_upscaler", f"unknown upscaler {name!r}; accepted: {accepted}")


async def img2img(body: A1111Img2Img, settings: Settings, gallery: Gallery) -> Translation:
    """An img2img request as a job: its pictures stored (resized to width x height), then a refine or an inpaint."""
    options = _common(body)
    # Decoding, resizing and filling take a while on big pictures: off the event loop.
    pictures, mask = await asyncio.to_thread(
        init_pictures,
        body.init_images,
        body.mask,
        (body.width, body.height),
        body.resize_mode,
        invert=bool(body.inpainting_mask_invert),
        fill=body.inpainting_fill == 0,
    )
    stored = [(await gallery.upload(picture, None)).id for picture in pictures]
    uploaded = list(stored)
    count = body.batch_size * body.n_iter
    names = {"stages.0": "denoising_strength", "stages.0.strength": "denoising_strength", "stages.0.steps": "steps"}
    stages: list[StageSpec]
    if mask is not None:
        mask_id = (await gallery.upload(mask, None)).id
        uploaded.append(mask_id)
        blur = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y)
        inpaint = InpaintStage(
            type="inpaint",
            mask_image_id=mask_id,
            feather=blur,
            strength=body.denoising_strength,
            steps=body.steps,
            guidance_scale=body.cfg_scale,
        )
        stages = [inpaint]
        names |= {"stages.0.mask_image_id": "mask", "stages.0.feather": "mask_blur"}
    else:
        strength, steps, cfg = body.denoising_strength, body.steps, body.cfg_scale
        stages = [RefineStage(type="refine", model="base", strength=strength, steps=steps, guidance_scale=cfg)]
    _faces(body, stages, names)
    # Picture i of the batch refines init_images[i mod len], as A1111 cycles through them.
    inputs = [stored[index % len(stored)] for index in range(count)]
    return Translation(JobCreate(**options, input_image_ids=inputs, stages=stages), names, uploaded)


def echo(body: A1111Common) -> dict[str, Any]:
    """``parameters``: the request with its defaults, its pictures left out unless include_init_images."""
    data = body.model_dump(mode="json")
    if isinstance(body, A1111Img2Img) and not body.include_init_images:
        data["init_images"], data["mask"] = None, None
    return data


async def answer(body: A1111Common, job: JobRow, files: ImageStore, settings: Settings) -> A1111ImagesResponse:
    """A1111's answer for a job that ended: its pictures (those done, for a cancelled one) and ``info``."""
    ids = list(job.image_ids)
    metas = [files.metadata(image_id) or {} for image_id in ids]
    images: list[str] = []
    if body.send_images:
        for image_id in ids:
            stored = files.find(image_id)
            if stored is not None:
                raw = await asyncio.to_thread(stored.path.read_bytes)
                images.append(base64.b64encode(raw).decode())
    info = _info(body, job, metas, settings)
    return A1111ImagesResponse(images=images, parameters=echo(body), info=json.dumps(info))


def _info(body: A1111Common, job: JobRow, metas: Sequence[Mapping[str, Any]], settings: Settings) -> dict[str, Any]:
    """A1111's ``processed.js()``: the batch's prompts and seeds, and one infotext per picture."""
    recipe = job.recipe
    count = len(recipe.get("input_image_ids") or []) or int(recipe.get("num_images", 1))
    first = int(recipe.get("seed") or 0)
    seeds = [(first + index) % (MAX_SEED + 1) for index in range(count)]
    sampler = A1111_NAMES.get(recipe.get("scheduler") or settings.image_scheduler, ("Euler", "Automatic"))[0]
    negative = body.negative_prompt or ""
    model = next((m.get("model") for m in metas if m.get("model")), None) or settings.image_model
    faces = [s for s in recipe.get("stages", []) if s.get("type") == "face_restore"]
    texts = [infotext(meta, (int(meta.get("width", 0)), int(meta.get("height", 0)))) or "" for meta in metas]
    return {
        "prompt": body.prompt,
        "all_prompts": [body.prompt] * count,
        "negative_prompt": negative,
        "all_negative_prompts": [negative] * count,
        "seed": seeds[0],
        "all_seeds": seeds,
        "subseed": seeds[0],
        "all_subseeds": seeds,
        "subseed_strength": 0,
        "width": body.width,
        "height": body.height,
        "sampler_name": sampler,
        "cfg_scale": body.cfg_scale,
        "steps": body.steps,
        "batch_size": body.batch_size,
        "restore_faces": bool(faces),
        "face_restoration_model": model_name(faces[0].get("face_model")) if faces else None,
        "sd_model_name": model_name(model),
        "sd_model_hash": None,
        "sd_vae_name": None,
        "sd_vae_hash": None,
        "seed_resize_from_w": -1,
        "seed_resize_from_h": -1,
        "denoising_strength": getattr(body, "denoising_strength", None),
        "extra_generation_params": {},
        "index_of_first_image": 0,
        "infotexts": texts,
        "styles": body.styles or [],
        "job_timestamp": job.created_at.strftime("%Y%m%d%H%M%S"),
        "clip_skip": 1,
        "is_using_inpainting_conditioning": False,
        "version": VERSION,
        # This server's own: the job and its stored pictures (GET /v1/jobs/{id}, /v1/images/{id}).
        "job_id": job.id,
        "image_ids": list(job.image_ids),
        "status": job.status,
    }
