"""OpenAI Images API compatibility: the official ``openai`` client works with base_url pointed here.

Errors on these paths come in OpenAI's shape (``openai_errors.py``); edits and variations,
which take pictures, live in ``openai_edits.py`` under the upload body limit.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request

from cofounder_agent.deps import FleetDep, OpenAIImagesDep, SettingsDep, disconnect_of
from cofounder_agent.errors import KEY_REUSED
from cofounder_agent.jobs.attend import Caller
from cofounder_agent.routes.images import image_url
from cofounder_agent.schemas.jobs import JobCreate
from cofounder_agent.schemas.openai import (
    OpenAIErrorBody,
    OpenAIImageRequest,
    OpenAIImagesResponse,
    OpenAIModel,
    OpenAIModelList,
)

router = APIRouter(tags=["openai"])
# The errors a synchronous OpenAI call can answer besides the body's own (see openapi.py).
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": OpenAIErrorBody} for status in (400, 404, 409, 429, 503)}
ERRORS[400] = {"model": OpenAIErrorBody, "description": KEY_REUSED}  # OpenAI's 400 is the API's 422
OWNER = "cofounder-agent"


@router.post("/v1/images/generations", response_model_exclude_none=True, responses=ERRORS)
async def create_images(
    body: OpenAIImageRequest,
    request: Request,
    images: OpenAIImagesDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> OpenAIImagesResponse:
    """Generate ``n`` images through the job queue and answer in OpenAI's format.

    A client that leaves first cancels its job, unless it sent an ``Idempotency-Key``.
    """
    # The size sets width and height (and, through the server's defaults, the work per image).
    width, height = body.dimensions
    recipe = JobCreate(prompt=body.prompt, width=width, height=height, num_images=body.n)
    job = await images.generate(recipe, Caller(disconnect_of(request.receive), idempotency_key))
    return await images.response(job, body.response_format, image_url(request), body.prompt)


@router.get("/v1/models", responses={503: {"model": OpenAIErrorBody}})
async def list_models(fleet: FleetDep, settings: SettingsDep) -> OpenAIModelList:
    """The model requests run on: the fleet's loaded base model (a request's ``model`` is not checked)."""
    status = await fleet.status()
    name = status.base_model or settings.image_model
    # A hub id as it is; a local folder or file by its name (the server's paths stay its own).
    model_id = PurePath(name).name if PurePath(name).is_absolute() else name
    return OpenAIModelList(data=[OpenAIModel(id=model_id, created=0, owned_by=OWNER)])
