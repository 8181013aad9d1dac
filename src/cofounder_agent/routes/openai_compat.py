"""OpenAI Images API compatibility: the official ``openai`` client works with base_url pointed here."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Annotated

from fastapi import APIRouter, Header, Request

from cofounder_agent.contract.fields import OPENAI_FIELDS
from cofounder_agent.deps import ImageFilesDep, JobServiceDep, disconnect_of
from cofounder_agent.errors import AppError
from cofounder_agent.jobs.attend import Caller, run_for
from cofounder_agent.schemas import ErrorBody
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.schemas.openai import OpenAIImage, OpenAIImageRequest, OpenAIImagesResponse

router = APIRouter(tags=["openai"])
# Where job options live in OpenAI's body: the size sets width, height and (through the
# server's defaults) the work per image; n is num_images.


@router.post(
    "/v1/images/generations",
    response_model_exclude_none=True,
    responses={
        409: {"model": ErrorBody},
        422: {"model": ErrorBody},
        429: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def create_images(
    body: OpenAIImageRequest,
    request: Request,
    jobs: JobServiceDep,
    store: ImageFilesDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> OpenAIImagesResponse:
    """Generate ``n`` images through the job queue and answer in OpenAI's format.

    A client that leaves first cancels its job, unless it sent an ``Idempotency-Key``.
    """
    width, height = body.dimensions
    recipe = JobCreate(prompt=body.prompt, width=width, height=height, num_images=body.n)
    job = await run_for(jobs, recipe, Caller(disconnect_of(request.receive), idempotency_key), OPENAI_FIELDS)
    if job.status == "cancelled":  # by someone else (DELETE /v1/jobs/{id}): not a server failure
        raise AppError(409, "job_cancelled", f"job {job.id} was cancelled: {job.error}", field="job_id")
    if job.status != "succeeded":
        raise AppError(503, "generation_failed", f"job {job.id} {job.status}: {job.error}")
    data = []
    for image_id in job.image_ids:
        if body.response_format == "b64_json":
            stored = store.find(image_id)
            assert stored is not None
            raw = await asyncio.to_thread(stored.path.read_bytes)
            data.append(OpenAIImage(b64_json=base64.b64encode(raw).decode(), revised_prompt=body.prompt))
        else:
            url = str(request.url_for("get_image", image_id=image_id))
            data.append(OpenAIImage(url=url, revised_prompt=body.prompt))
    return OpenAIImagesResponse(created=int(time.time()), data=data)
