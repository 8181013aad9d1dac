"""The OpenAI Images API translated onto jobs: generations, edits (our inpaint), variations (our refine).

Each request becomes one job run for its caller (``jobs.attend.run_for``), so the API key,
the queue limit, cancel, timeouts, metadata and boards apply as to any job. Edits and
variations store the caller's picture like an upload first (and an edit its mask, converted
to this service's convention: white = refine), then refine that stored picture once per
image asked for: image i runs with seed + i.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps

from cofounder_agent.contract.errors import Conflict, InvalidField, NotFound, QueueFull, Unavailable
from cofounder_agent.contract.fields import OPENAI_FIELDS
from cofounder_agent.jobs.attend import Caller, run_for
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.schemas.openai import OpenAIImage, OpenAIImagesResponse, ResponseFormat
from cofounder_agent.services.gallery import FILE_MISSING, Gallery
from cofounder_agent.services.pictures import WEB_FORMATS, open_picture
from cofounder_agent.stages.inpaint import InpaintStage
from cofounder_agent.stages.refine import RefineStage
from cofounder_agent.storage import ImageStore

UrlFor = Callable[[str], str]
# An edit repaints its region from (almost) pure noise, as OpenAI's edits do: the inpaint
# stage's strongest detail level (30 steps at strength 0.9, guidance 10).
EDIT_DETAIL = "ultra"
EDIT_FEATHER = 8  # pixels of blur on the mask's edge; pixels beyond ~3x this stay untouched
# A variation keeps the picture's composition and colours but redraws its details: img2img
# from the picture at strength 0.6 with the base UNet (the refiner is trained for low noise).
VARIATION_STRENGTH = 0.6
VARIATION_STEPS = 30
# OpenAI's variations take no prompt; the refine pass needs one.
VARIATION_PROMPT = "a high quality, detailed picture"
MAX_SIDE = 2048


@dataclass(frozen=True)
class EditInput:
    """An edit's picture and mask as stored (PNG), at the size the job runs."""

    picture: bytes
    mask: bytes
    size: tuple[int, int]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def edit_region(source: Image.Image, field: str) -> Image.Image:
    """OpenAI's mask convention turned into ours: fully transparent pixels (alpha 0) become white."""
    if not _has_alpha(source):
        raise InvalidField(field, "needs an alpha channel: its fully transparent pixels mark the region to edit")
    region = source.convert("RGBA").getchannel("A").point(lambda alpha: 255 if alpha == 0 else 0)
    if region.getbbox() is None:
        raise InvalidField(field, "has no fully transparent pixel: nothing to edit")
    return region


def _default_size(image: Image.Image) -> tuple[int, int]:
    """The picture's own size, down to multiples of 8 (the pipeline's unit)."""
    width, height = (side // 8 * 8 for side in image.size)
    if min(width, height) < 64 or max(width, height) > MAX_SIDE:
        raise InvalidField("size", f"the picture is {image.width}x{image.height}: give a size (64 to 2048 px a side)")
    return width, height


def prepare_edit(image: bytes, mask: bytes | None, size: tuple[int, int] | None) -> EditInput:
    """Decode the edit's picture and mask, check them, and bring both to the job's size."""
    picture = open_picture(image, "image", WEB_FORMATS)
    if mask is None:
        # OpenAI: without a mask, the picture's own transparent pixels are the region.
        if not _has_alpha(picture):
            raise InvalidField("mask", "no mask given, and the image has no alpha channel to mark the region")
        region = edit_region(picture, "mask")
    else:
        drawn = open_picture(mask, "mask", WEB_FORMATS)
        if drawn.size != picture.size:
            raise InvalidField("mask", f"is {drawn.width}x{drawn.height}, the image {picture.width}x{picture.height}")
        region = edit_region(drawn, "mask")
    target = size or _default_size(picture)
    rgb = picture.convert("RGB")
    if rgb.size != target:  # cropped to the size's aspect around the centre, then scaled
        rgb = ImageOps.fit(rgb, target, Image.Resampling.LANCZOS)
        region = ImageOps.fit(region, target, Image.Resampling.NEAREST)
    return EditInput(_png(rgb), _png(region), target)


def prepare_variation(image: bytes, size: tuple[int, int]) -> bytes:
    """The picture at the variations' size: cropped to a square around its centre, then scaled."""
    rgb = open_picture(image, "image", WEB_FORMATS).convert("RGB")
    return _png(rgb if rgb.size == size else ImageOps.fit(rgb, size, Image.Resampling.LANCZOS))


def openai_field(field: str) -> str:
    """The request field behind a job field the translation wrote (its cost and size checks name them)."""
    if field.startswith("input_image_ids"):  # an image more than the budget allows
        return "n"
    if field.startswith("stages."):  # the work per image: its size
        return "size"
    return field


class OpenAIImages:
    """Runs OpenAI's image requests as jobs and answers in OpenAI's response shape."""

    def __init__(self, jobs: JobService, gallery: Gallery, files: ImageStore) -> None:
        self.jobs, self.gallery, self.files = jobs, gallery, files

    async def generate(self, recipe: JobCreate, caller: Caller) -> JobRow:
        """Run ``recipe`` for the caller; a job that did not succeed is the caller's error."""
        job = await run_for(self.jobs, recipe, caller, OPENAI_FIELDS)
        if job.status == "cancelled":  # by someone else (DELETE /v1/jobs/{id}): not a server failure
            raise Conflict(f"job {job.id} was cancelled: {job.error}", code="job_cancelled", field="job_id")
        if job.status != "succeeded":
            raise Unavailable(f"job {job.id} {job.status}: {job.error}", code="generation_failed")
        return job

    async def edit(self, prompt: str, edit: EditInput, n: int, caller: Caller) -> JobRow:
        """Inpaint the stored picture's region ``n`` times (seeds seed .. seed + n - 1)."""
        picture = await self.gallery.upload(edit.picture, None)
        mask = await self.gallery.upload(edit.mask, None)
        stage = InpaintStage(
            type="inpaint", model="base", mask_image_id=mask.id, detail=EDIT_DETAIL, feather=EDIT_FEATHER
        )
        width, height = edit.size
        recipe = JobCreate(prompt=prompt, width=width, height=height, input_image_ids=[picture.id] * n, stages=[stage])
        return await self._run_on(recipe, caller, [picture.id, mask.id])

    async def variations(self, picture: bytes, size: tuple[int, int], n: int, caller: Caller) -> JobRow:
        """Refine the stored picture ``n`` times at ``VARIATION_STRENGTH``, each with its own seed."""
        stored = await self.gallery.upload(picture, None)
        stage = RefineStage(type="refine", model="base", strength=VARIATION_STRENGTH, steps=VARIATION_STEPS)
        width, height = size
        recipe = JobCreate(
            prompt=VARIATION_PROMPT, width=width, height=height, input_image_ids=[stored.id] * n, stages=[stage]
        )
        return await self._run_on(recipe, caller, [stored.id])

    async def _run_on(self, recipe: JobCreate, caller: Caller, stored: list[str]) -> JobRow:
        """Run a job on pictures stored for it; when no job was queued, the pictures go again."""
        try:
            return await self.generate(recipe, caller)
        except (InvalidField, QueueFull) as exc:  # refused before queueing (a retrying client would pile them up)
            for image_id in stored:
                await self.gallery.delete_image(image_id)
            if isinstance(exc, InvalidField):
                raise InvalidField(openai_field(exc.field or ""), exc.reason) from None
            raise

    async def response(
        self, job: JobRow, response_format: ResponseFormat, url_for: UrlFor, prompt: str | None = None
    ) -> OpenAIImagesResponse:
        """The job's pictures as OpenAI answers them: URLs to fetch, or the PNG bytes in base64."""
        data = []
        for image_id in job.image_ids:
            if response_format == "url":
                data.append(OpenAIImage(url=url_for(image_id), revised_prompt=prompt))
                continue
            stored = self.files.find(image_id)
            if stored is None:  # a worker wrote it where this replica cannot read (docs/scaling.md)
                raise NotFound("image", None, FILE_MISSING.format(id=image_id), code="image_file_missing")
            raw = await asyncio.to_thread(stored.path.read_bytes)
            data.append(OpenAIImage(b64_json=base64.b64encode(raw).decode(), revised_prompt=prompt))
        return OpenAIImagesResponse(created=int(time.time()), data=data)
