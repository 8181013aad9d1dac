"""Images served by id from the store; a user never names a path."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from cofounder_agent.deps import StoreDep
from cofounder_agent.errors import AppError
from cofounder_agent.schemas import ErrorBody

router = APIRouter(prefix="/v1/images", tags=["images"])


@router.get("/{image_id}", name="get_image", responses={404: {"model": ErrorBody}})
async def get_image(image_id: str, store: StoreDep) -> FileResponse:
    """Download the full-resolution image."""
    stored = store.find(image_id)
    if stored is None:
        raise AppError(404, "image_not_found", "no image with this id", field="image_id")
    return FileResponse(
        stored.path,
        media_type=stored.media_type,
        # Content never changes for an id, so clients and proxies may cache it for good.
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
    )
