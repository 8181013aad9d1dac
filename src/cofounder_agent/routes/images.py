"""Images: listed, downloaded by id (full or thumbnail), metadata, upload, move, delete. Never by path."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response

from cofounder_agent.deps import GalleryDep, SettingsDep
from cofounder_agent.errors import AppError
from cofounder_agent.schemas import ErrorBody
from cofounder_agent.schemas.jobs import ImagePublic, ImagesPublic, ImageUpdate

router = APIRouter(prefix="/v1/images", tags=["images"])
# Uploads get their own router: main.py includes it with the IMAGE_MAX_UPLOAD_MB body limit,
# enforced while the body streams in (the JSON routes keep IMAGE_MAX_BODY_MB).
upload_router = APIRouter(prefix="/v1/images", tags=["images"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}
# Content never changes for an id, so clients and proxies may cache it for good.
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


def image_url(request: Request) -> Any:
    return lambda image_id: str(request.url_for("get_image", image_id=image_id))


Order = Literal["oldest", "newest"]


@router.get("", responses=NOT_FOUND)
async def list_images(
    request: Request,
    gallery: GalleryDep,
    board_id: Annotated[
        str | None,
        Query(
            pattern=r"^(?:[0-9a-f]{32}|none)$",
            description="a board's id; none: the images in no board; omitted: every image",
        ),
    ] = None,
    intermediate: Annotated[
        bool | None, Query(description="false: final pictures only; true: intermediates only; omitted: both")
    ] = None,
    order: Order = "oldest",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ImagesPublic:
    """Stored images, oldest first unless ``order=newest``: in a board, in no board, or all."""
    return await gallery.images(board_id, intermediate, limit, offset, image_url(request), newest=order == "newest")


# Stored pictures are PNG, JPEG or WebP (uploads keep their type); thumbnails are PNG.
PICTURE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The picture",
        "content": {
            t: {"schema": {"type": "string", "format": "binary"}} for t in ("image/png", "image/jpeg", "image/webp")
        },
    }
}


@router.get("/{image_id}", name="get_image", response_class=FileResponse, responses=NOT_FOUND | PICTURE)
async def get_image(image_id: str, gallery: GalleryDep, variant: Literal["full", "thumbnail"] = "full") -> FileResponse:
    """Download the image at full resolution, or a thumbnail (at most 256 px a side)."""
    if variant == "thumbnail":
        return FileResponse(await gallery.thumbnail(image_id), media_type="image/png", headers=IMMUTABLE)
    stored = await gallery.file(image_id)
    return FileResponse(stored.path, media_type=stored.media_type, headers=IMMUTABLE)


@router.get("/{image_id}/metadata", responses=NOT_FOUND)
async def image_metadata(image_id: str, request: Request, gallery: GalleryDep) -> dict[str, Any]:
    """The image's record plus everything stored with it (generation parameters, stages, source)."""
    row = await gallery.image(image_id)
    public = gallery.public(row, image_url(request)).model_dump(mode="json")
    return {**public, "metadata": await gallery.metadata(image_id)}


@upload_router.post("", status_code=201, responses={413: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def upload_image(
    file: Annotated[UploadFile, File(description="PNG, JPEG or WebP")],
    request: Request,
    gallery: GalleryDep,
    settings: SettingsDep,
    # An empty form field means no board (FastAPI reads it as omitted): the pattern says so.
    board_id: Annotated[str | None, Form(pattern=r"^(?:[0-9a-f]{32})?$", description="empty: no board")] = None,
) -> ImagePublic:
    """Upload a picture (for example to refine it), optionally into a board."""
    limit = int(settings.image_max_upload_mb * 1024 * 1024)
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise AppError(413, "too_large", f"file: larger than {settings.image_max_upload_mb:g} MB", field="file")
    row = await gallery.upload(data, board_id)
    return gallery.public(row, image_url(request))


@router.delete("/{image_id}", status_code=204, responses=NOT_FOUND)
async def delete_image(image_id: str, gallery: GalleryDep) -> Response:
    """Delete the image, its thumbnail and its metadata."""
    await gallery.delete_image(image_id)
    return Response(status_code=204)


@router.patch("/{image_id}", responses={**NOT_FOUND, 422: {"model": ErrorBody}})
async def update_image(image_id: str, body: ImageUpdate, request: Request, gallery: GalleryDep) -> ImagePublic:
    """Move the image into a board, or out of every board (``board_id: null``)."""
    return gallery.public(await gallery.move(image_id, body.board_id), image_url(request))
