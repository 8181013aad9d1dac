"""AUTOMATIC1111's generation API under /sdapi/v1: txt2img, img2img and png-info, for A1111's clients.

Each generation is an ordinary job, held open like POST /v1/images/generations (a client that
leaves cancels it unless it sent an ``Idempotency-Key``); the answer is A1111's, status 200
(webuiapi treats any other as an error), also for a job /sdapi/v1/interrupt cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Header, Request

from cofounder_agent.contract.errors import DomainError, IdempotencyKeyReused, InvalidField
from cofounder_agent.contract.fields import A1111_FIELDS
from cofounder_agent.deps import GalleryDep, ImageFilesDep, JobServiceDep, SettingsDep, disconnect_of
from cofounder_agent.errors import KEY_REUSED, AppError
from cofounder_agent.jobs.attend import Caller, run_for
from cofounder_agent.jobs.service import JobService, fingerprint
from cofounder_agent.jobs.tables import JobRow
from cofounder_agent.schemas import ErrorBody
from cofounder_agent.schemas.a1111 import (
    A1111ImagesResponse,
    A1111Img2Img,
    A1111PngInfoRequest,
    A1111PngInfoResponse,
    A1111Txt2Img,
)
from cofounder_agent.services import a1111
from cofounder_agent.services.a1111_images import png_info
from cofounder_agent.services.gallery import Gallery

router = APIRouter(prefix="/sdapi/v1", tags=["a1111"])
_ERRORS: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorBody},
    422: {"model": ErrorBody, "description": KEY_REUSED},
    429: {"model": ErrorBody},
    503: {"model": ErrorBody},
}
IdempotencyKey = Annotated[str | None, Header(max_length=200)]


async def _run(
    translation: a1111.Translation,
    request: Request,
    jobs: JobService,
    gallery: Gallery,
    key: str | None,
    request_hash: str | None = None,
) -> JobRow:
    """Run the job for the caller; a refused one names the A1111 field and leaves no stored pictures."""
    caller = Caller(disconnect_of(request.receive), key, request_hash)
    try:
        job = await run_for(jobs, translation.recipe, caller, A1111_FIELDS)
    except (InvalidField, IdempotencyKeyReused) as exc:
        for image_id in translation.uploaded:
            with contextlib.suppress(DomainError):
                await gallery.delete_image(image_id)
        raise (translation.renamed(exc) if isinstance(exc, InvalidField) else exc) from None
    # Cancelled (by /sdapi/v1/interrupt or DELETE /v1/jobs/{id}): A1111 answers with what is done.
    if job.status not in ("succeeded", "cancelled"):
        raise AppError(503, "generation_failed", f"job {job.id} {job.status}: {job.error}")
    return job


@router.post("/txt2img", responses=_ERRORS)
async def txt2img(
    body: A1111Txt2Img,
    request: Request,
    jobs: JobServiceDep,
    gallery: GalleryDep,
    files: ImageFilesDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> A1111ImagesResponse:
    """Generate ``batch_size`` x ``n_iter`` pictures, as A1111's txt2img."""
    job = await _run(a1111.txt2img(body, settings), request, jobs, gallery, idempotency_key)
    return await a1111.answer(body, job, files, settings)


@router.post("/img2img", responses=_ERRORS)
async def img2img(
    body: A1111Img2Img,
    request: Request,
    jobs: JobServiceDep,
    gallery: GalleryDep,
    files: ImageFilesDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> A1111ImagesResponse:
    """Refine ``init_images`` (or repaint the ``mask``'s white area), as A1111's img2img."""
    translation = await a1111.img2img(body, settings, gallery)
    # The recipe names the pictures just stored (new ids each time): the key is compared by the body.
    request_hash = fingerprint(body.model_dump(mode="json")) if idempotency_key else None
    job = await _run(translation, request, jobs, gallery, idempotency_key, request_hash)
    return await a1111.answer(body, job, files, settings)


@router.post("/png-info", responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def read_png_info(body: A1111PngInfoRequest) -> A1111PngInfoResponse:
    """A picture's generation parameters (A1111's infotext, parsed) and its other text chunks."""
    return await asyncio.to_thread(png_info, body.image)  # base64 and PNG decoding: off the event loop
