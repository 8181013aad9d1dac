"""A1111's ``extra-single-image``: one picture upscaled (and its faces restored) as a job on the queue.

The picture is stored like an upload, then refined by a job with ``input_image_ids`` and an
upscale stage (and a face_restore stage when asked), so auth, the queue's limits, cancel and
timeouts apply unchanged. The upload and the result stay in the gallery like any others.
"""

from __future__ import annotations

import asyncio
import base64
import io
from typing import Any

from PIL import Image

from cofounder_agent.contract.errors import Conflict, InvalidField, InvalidImage, Unavailable
from cofounder_agent.jobs.attend import Caller, run_for
from cofounder_agent.schemas.a1111_info import ExtrasSingleImageRequest, ExtrasSingleImageResponse
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.services.a1111_info import A1111Info
from cofounder_agent.services.gallery import Gallery
from cofounder_agent.services.pictures import decode_base64
from cofounder_agent.storage import ImageStore

# The upscale stage's refine pass (Lanczos upscalers) runs img2img on tiles at a low strength:
# it needs a prompt, and A1111's request has none. A neutral one adds detail, not content.
REFINE_PROMPT = "high quality, sharp, detailed"


async def extra_single_image(
    info: A1111Info, gallery: Gallery, files: ImageStore, body: ExtrasSingleImageRequest, caller: Caller
) -> ExtrasSingleImageResponse:
    """Upscale ``body.image`` 2x or 4x through the queue; answer A1111's base64 PNG and html_info."""
    # 1. What the request maps to, checked before anything is stored.
    stages, described = _stages(info, body)
    data = decode_base64(body.image, "image")
    # 2. The picture, stored as an upload (the job refines stored pictures only).
    try:
        row = await gallery.upload(data, None)
    except InvalidField as exc:  # the gallery names its own form field ("file")
        raise InvalidImage("image", exc.reason) from None
    recipe = JobCreate.model_validate({"prompt": REFINE_PROMPT, "input_image_ids": [row.id], "stages": stages})
    # 3. The job, waited for while the client stays.
    try:
        job = await run_for(info.jobs, recipe, caller)
    except InvalidField as exc:  # a stage's check: name the A1111 field that set it
        await gallery.delete_image(row.id)  # refused before queueing: the upload goes too
        raise InvalidField(_request_field(exc.field, stages, body), exc.reason) from None
    if job.status == "cancelled":
        raise Conflict(f"job {job.id} was cancelled: {job.error}", code="job_cancelled", field="job_id")
    if job.status != "succeeded" or not job.image_ids:
        raise Unavailable(f"job {job.id} {job.status}: {job.error}", code="generation_failed")
    return ExtrasSingleImageResponse(html_info=f"<p>{described}</p>", image=await _png_base64(files, job.image_ids[0]))


def _stages(info: A1111Info, body: ExtrasSingleImageRequest) -> tuple[list[dict[str, Any]], str]:
    """The job's stages for the request, and A1111's words for what they do."""
    if body.resize_mode != 0:
        raise InvalidField("resize_mode", "only 0 (scale by upscaling_resize) is supported; upscaling is 2x or 4x")
    if body.upscaling_resize not in (2, 4):
        raise InvalidField("upscaling_resize", f"{body.upscaling_resize:g}: the upscale stage enlarges 2x or 4x")
    if body.extras_upscaler_2_visibility > 0:
        raise InvalidField("extras_upscaler_2_visibility", "one upscaler only: leave it 0")
    upscale: dict[str, Any] = {"type": "upscale", "factor": int(body.upscaling_resize)}
    upscaler = info.upscaler_file(body.upscaler_1, "upscaler_1")
    if upscaler is not None:
        upscale["upscaler"] = upscaler
    name = body.upscaler_1 if upscaler is not None else "Lanczos"
    described = f"Postprocess upscale by: {int(body.upscaling_resize)}, Postprocess upscaler: {name}"
    face = _face_stage(info, body)
    if face is None:
        return [upscale], described
    described += f", Face restoration: {face['face_model']} ({face['strength']:g})"
    return ([upscale, face] if body.upscale_first else [face, upscale]), described


def _face_stage(info: A1111Info, body: ExtrasSingleImageRequest) -> dict[str, Any] | None:
    """A face_restore stage at the larger of the two visibilities; a 422 without a face model."""
    field = "gfpgan_visibility" if body.gfpgan_visibility >= body.codeformer_visibility else "codeformer_visibility"
    strength = max(body.gfpgan_visibility, body.codeformer_visibility)
    if strength <= 0:
        return None
    model = info.settings.image_face_model
    if model is None or not (info.settings.models_dir / model).is_file():
        raise InvalidField(field, "no face restoration model on this server (IMAGE_FACE_MODEL); leave it 0")
    return {"type": "face_restore", "face_model": model, "strength": strength}


def _request_field(field: str | None, stages: list[dict[str, Any]], body: ExtrasSingleImageRequest) -> str:
    """The A1111 field behind a job field a check named (``stages.N.*``, ``input_image_ids.N``)."""
    if field is None or field.startswith("input_image_ids"):
        return "image"
    parts = field.split(".")
    if parts[0] == "stages" and len(parts) > 1 and parts[1].isdigit() and int(parts[1]) < len(stages):
        if stages[int(parts[1])]["type"] == "upscale":
            return "upscaler_1" if parts[-1] == "upscaler" else "upscaling_resize"
        return "gfpgan_visibility" if body.gfpgan_visibility >= body.codeformer_visibility else "codeformer_visibility"
    return field


async def _png_base64(files: ImageStore, image_id: str) -> str:
    """A stored picture as base64 PNG (A1111 answers PNG; a result stored otherwise is converted)."""
    stored = files.find(image_id)
    if stored is None:
        raise Unavailable(f"image {image_id} is recorded but its file is missing", code="image_file_missing")

    def encode() -> bytes:
        raw = stored.path.read_bytes()
        if stored.media_type == "image/png":
            return raw
        buffer = io.BytesIO()
        with Image.open(io.BytesIO(raw)) as picture:
            picture.save(buffer, format="PNG")
        return buffer.getvalue()

    return base64.b64encode(await asyncio.to_thread(encode)).decode()
