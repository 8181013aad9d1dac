"""Boards: named collections of images, listed, renamed, deleted and downloaded as a zip."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import FileResponse, Response

from cofounder_agent.deps import GalleryDep, JobStoreDep
from cofounder_agent.errors import AppError
from cofounder_agent.routes.images import Order, image_url
from cofounder_agent.schemas import ErrorBody
from cofounder_agent.schemas.jobs import BoardCreate, BoardPublic, BoardsPublic, BoardUpdate, ImagesPublic
from cofounder_agent.services.gallery import board_public

router = APIRouter(prefix="/v1/boards", tags=["boards"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody}}


@router.post("", status_code=201)
async def create_board(body: BoardCreate, db: JobStoreDep) -> BoardPublic:
    """Create a board."""
    return board_public(await db.add_board(body.name))


@router.get("")
async def list_boards(db: JobStoreDep) -> BoardsPublic:
    """All boards, oldest first."""
    boards = [board_public(b) for b in await db.list_boards()]
    return BoardsPublic(data=boards, count=len(boards))


@router.patch("/{board_id}", responses=NOT_FOUND)
async def rename_board(board_id: str, body: BoardUpdate, db: JobStoreDep) -> BoardPublic:
    """Rename a board."""
    board = await db.rename_board(board_id, body.name)
    if board is None:
        raise AppError(404, "board_not_found", "no board with this id", field="board_id")
    return board_public(board)


@router.delete("/{board_id}", status_code=204, responses=NOT_FOUND)
async def delete_board(board_id: str, gallery: GalleryDep, delete_images: bool = False) -> Response:
    """Delete a board; its images are kept (unassigned) unless ``delete_images=true``."""
    await gallery.delete_board(board_id, delete_images)
    return Response(status_code=204)


@router.get("/{board_id}/images", responses=NOT_FOUND)
async def board_images(
    board_id: str,
    request: Request,
    gallery: GalleryDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    order: Order = "oldest",
) -> ImagesPublic:
    """The board's images, oldest first unless ``order=newest``."""
    return await gallery.board_images(board_id, limit, offset, image_url(request), newest=order == "newest")


ZIP: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A zip of the board's images",
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.get("/{board_id}/download", response_class=FileResponse, responses=NOT_FOUND | ZIP)
async def download_board(board_id: str, gallery: GalleryDep, cleanup: BackgroundTasks) -> FileResponse:
    """All of the board's images in one zip file."""
    path, name = await gallery.zip_board(board_id)
    cleanup.add_task(path.unlink, missing_ok=True)
    return FileResponse(path, media_type="application/zip", filename=name)
