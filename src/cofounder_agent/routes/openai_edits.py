"""OpenAI's ``/v1/images/edits`` and ``/v1/images/variations``: multipart pictures onto inpaint and refine jobs.

main.py includes this router with the upload body limit (IMAGE_MAX_UPLOAD_MB). The fields
OpenAI defines and this server has no use for (quality, background, user, ...) are ignored.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, UploadFile
from pydantic import WithJsonSchema

from cofounder_agent.contract.body import Prompt
from cofounder_agent.contract.errors import InvalidField
from cofounder_agent.deps import OpenAIImagesDep, SettingsDep, disconnect_of
from cofounder_agent.errors import AppError
from cofounder_agent.jobs.attend import Caller
from cofounder_agent.jobs.service import fingerprint
from cofounder_agent.routes.images import image_url
from cofounder_agent.routes.openai_compat import ERRORS
from cofounder_agent.schemas.openai import (
    MAX_N,
    SIZE_PATTERN,
    OpenAIErrorBody,
    OpenAIImagesResponse,
    ResponseFormat,
    VariationSize,
    size_of,
)
from cofounder_agent.services.openai_images import prepare_edit, prepare_variation

router = APIRouter(tags=["openai"])
MB = 1024 * 1024
N = Annotated[int, Form(ge=1, le=MAX_N, description="pictures to make (OpenAI allows 10; this server 8)")]
Format = Annotated[ResponseFormat, Form()]
# Accepted so that clients which always send one work; the server runs its one loaded model.
Model = Annotated[str | None, Form(max_length=200, description="accepted and ignored (see GET /v1/models)")]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]
UPLOAD_ERRORS = ERRORS | {413: {"model": OpenAIErrorBody}}
# An optional file part is absent or a file: a form cannot send null (documented as a plain
# file, so that schema-driven clients send a file part, not the text "null").
FILE_SCHEMA = {"type": "string", "contentMediaType": "application/octet-stream"}
OPTIONAL_FILE = WithJsonSchema(FILE_SCHEMA)


async def _read(file: UploadFile, field: str, limit_mb: float) -> bytes:
    limit = int(limit_mb * MB)
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise AppError(413, "too_large", f"{field}: larger than {limit_mb:g} MB", field=field)
    return data


@router.post("/v1/images/edits", response_model_exclude_none=True, responses=UPLOAD_ERRORS)
async def edit_images(
    request: Request,
    images: OpenAIImagesDep,
    settings: SettingsDep,
    prompt: Annotated[Prompt, Form()],
    image: Annotated[UploadFile | None, File(description="PNG, JPEG or WebP"), OPTIONAL_FILE] = None,
    image_list: Annotated[
        list[UploadFile] | None,
        File(alias="image[]", description="as a list: only the first is edited"),
        WithJsonSchema({"type": "array", "items": FILE_SCHEMA}),
    ] = None,
    mask: Annotated[
        UploadFile | None,
        File(description="PNG with alpha, the image's size: fully transparent = edit"),
        OPTIONAL_FILE,
    ] = None,
    n: N = 1,
    size: Annotated[str, Form(pattern=SIZE_PATTERN, description="WIDTHxHEIGHT; auto: the image's")] = "auto",
    response_format: Format = "url",
    model: Model = None,
    idempotency_key: IdempotencyKey = None,
) -> OpenAIImagesResponse:
    """Repaint the region a mask (or the image's own alpha) leaves transparent, ``n`` times."""
    if image is not None and image_list:  # the SDK sends one or the other: both is ambiguous
        raise InvalidField("image", "send the picture as image or as image[], not both")
    upload = image or (image_list[0] if image_list else None)
    if upload is None:
        raise InvalidField("image", "send the picture to edit as the file part image (or image[])")
    limit = settings.image_max_upload_mb
    picture = await _read(upload, "image", limit)
    drawn = await _read(mask, "mask", limit) if mask is not None else None
    target = None if size == "auto" else size_of(size)
    edit = await asyncio.to_thread(prepare_edit, picture, drawn, target)
    asked = ["edits", prompt, n, size, _digest(picture), _digest(drawn)]
    caller = Caller(disconnect_of(request.receive), idempotency_key, fingerprint(asked) if idempotency_key else None)
    job = await images.edit(prompt, edit, n, caller)
    return await images.response(job, response_format, image_url(request), prompt)


@router.post("/v1/images/variations", response_model_exclude_none=True, responses=UPLOAD_ERRORS)
async def create_variations(
    request: Request,
    images: OpenAIImagesDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="PNG, JPEG or WebP; not square: cropped around its centre")],
    n: N = 1,
    size: Annotated[VariationSize, Form()] = "1024x1024",
    response_format: Format = "url",
    model: Model = None,
    idempotency_key: IdempotencyKey = None,
) -> OpenAIImagesResponse:
    """``n`` variations of the picture: each an img2img pass at strength 0.6 with its own seed."""
    data = await _read(image, "image", settings.image_max_upload_mb)
    dimensions = size_of(size)
    picture = await asyncio.to_thread(prepare_variation, data, dimensions)
    asked = ["variations", n, size, _digest(data)]
    caller = Caller(disconnect_of(request.receive), idempotency_key, fingerprint(asked) if idempotency_key else None)
    job = await images.variations(picture, dimensions, n, caller)
    return await images.response(job, response_format, image_url(request))


def _digest(data: bytes | None) -> str | None:
    # The job recipe names the stored copies (new ids each time): a key is compared by the files.
    return hashlib.sha256(data).hexdigest() if data is not None else None
