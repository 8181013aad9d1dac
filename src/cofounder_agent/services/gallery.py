"""Images and boards as users see them: uploads, listings, thumbnails, zips, deletion."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cofounder_agent.contract.errors import InvalidField, InvalidImage, NotFound
from cofounder_agent.jobs.image_rows import ANY_BOARD, AnyBoard
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import BoardRow, ImageRow
from cofounder_agent.schemas.jobs import BoardPublic, ImagePublic, ImagesPublic
from cofounder_agent.storage import ImageStore, StoredImage, UnsupportedImage

log = logging.getLogger(__name__)
# The listing's word for "in no board" (InvokeAI's spelling: GET /api/v1/images/?board_id=none).
NO_BOARD = "none"
UrlFor = Callable[[str], str]
# A row whose file this process cannot see: the mark of a worker writing to another image
# directory than the API reads (docs/scaling.md, "Images across hosts").
FILE_MISSING = (
    "image {id} is recorded but its file is not in this server's image directory: every API "
    "replica and worker must mount the same IMAGE_DATA_DIR (see docs/scaling.md)"
)


def _not_found(kind: str, field: str) -> NotFound:
    return NotFound(kind, field)


class Gallery:
    def __init__(self, db: Store, files: ImageStore) -> None:
        self.db, self.files = db, files

    def public(self, row: ImageRow, url_for: UrlFor) -> ImagePublic:
        url = url_for(row.id)
        return ImagePublic(
            id=row.id,
            url=url,
            thumbnail_url=f"{url}?variant=thumbnail",
            media_type=row.media_type,
            width=row.width,
            height=row.height,
            source=row.source,
            job_id=row.job_id,
            board_id=row.board_id,
            intermediate=row.intermediate,
            created_at=row.created_at,
        )

    async def image(self, image_id: str) -> ImageRow:
        """The image's row, when the store wrote both the row and its file."""
        row, _ = await self._stored(image_id)
        return row

    async def file(self, image_id: str) -> StoredImage:
        """The image's file, only for an id with a row: a file that got there otherwise is unknown."""
        _, stored = await self._stored(image_id)
        return stored

    async def thumbnail(self, image_id: str) -> Path:
        """The image's thumbnail; a file that does not decode is a 404 (logged), not a 500."""
        row, _ = await self._stored(image_id)
        path = await asyncio.to_thread(self.files.thumbnail, image_id, row.media_type)  # decoding takes a while
        if path is None:
            raise _not_found("image", "image_id")
        return path

    async def metadata(self, image_id: str) -> dict[str, Any]:
        """What was stored with the image; empty when its sidecar is missing or unreadable."""
        await self._stored(image_id)
        return self.files.metadata(image_id) or {}

    async def _stored(self, image_id: str) -> tuple[ImageRow, StoredImage]:
        row = await self.db.get_image(image_id)
        if row is None:
            raise _not_found("image", "image_id")
        stored = self.files.find(image_id, row.media_type)
        if stored is None:
            log.warning("image %s has a row but no file under %s", image_id, self.files.dir)
            raise NotFound("image", "image_id", FILE_MISSING.format(id=image_id), code="image_file_missing")
        return row, stored

    async def upload(self, data: bytes, board_id: str | None) -> ImageRow:
        """Store an uploaded PNG/JPEG/WebP after decoding it fully (so it can be refined later).

        A board deleted while the upload is written leaves the image without a board.
        """
        if board_id is not None and await self.db.get_board(board_id) is None:
            # A body field, not the path: 422 naming it, as POST /v1/jobs answers.
            raise InvalidField("board_id", f"no such board {board_id} (GET /v1/boards lists them)")
        try:
            stored = await asyncio.to_thread(self.files.save_encoded, data, {"source": "upload"})
        except UnsupportedImage as exc:
            raise InvalidImage("file", str(exc)) from None
        row = ImageRow(
            id=stored.id,
            board_id=board_id,
            media_type=stored.media_type,
            width=stored.width,
            height=stored.height,
            source="upload",
        )
        try:
            return await self.db.add_image(row)
        except Exception:  # no file is left without a row (recovery would find it only at the next start)
            await asyncio.to_thread(self.files.delete, stored.id)
            raise

    async def delete_image(self, image_id: str) -> None:
        found = await self.db.delete_image(image_id)
        removed = await asyncio.to_thread(self.files.delete, image_id)
        if not (found or removed):
            raise _not_found("image", "image_id")

    async def board(self, board_id: str, field: str = "board_id") -> BoardRow:
        board = await self.db.get_board(board_id)
        if board is None:
            raise _not_found("board", field)
        return board

    async def board_images(
        self, board_id: str, limit: int, offset: int, url_for: UrlFor, *, newest: bool = False
    ) -> ImagesPublic:
        return await self.images(board_id, None, limit, offset, url_for, newest=newest)

    async def images(
        self,
        board_id: str | None,
        intermediate: bool | None,
        limit: int,
        offset: int,
        url_for: UrlFor,
        *,
        newest: bool = False,
    ) -> ImagesPublic:
        """A page of images: in a board, in none (``board_id="none"``), or all (``None``)."""
        board: str | AnyBoard | None = board_id
        if board_id is None:
            board = ANY_BOARD
        elif board_id == NO_BOARD:
            board = None
        else:
            await self.board(board_id)
        rows, total = await self.db.list_images(board, limit, offset, newest=newest, intermediate=intermediate)
        return ImagesPublic(data=[self.public(row, url_for) for row in rows], count=total)

    async def move(self, image_id: str, board_id: str | None) -> ImageRow:
        """Move the image into the board, or out of every board (``None``)."""
        await self._stored(image_id)
        moved = await self.db.move_image(image_id, board_id)
        if moved is not None:
            return moved
        if await self.db.get_image(image_id) is None:  # deleted meanwhile
            raise _not_found("image", "image_id")
        # A body field, not the path: 422 naming it, as uploads and POST /v1/jobs answer.
        raise InvalidField("board_id", "no board with this id")

    async def delete_board(self, board_id: str, delete_images: bool) -> None:
        image_ids = await self.db.delete_board(board_id)
        if image_ids is None:
            raise _not_found("board", "board_id")
        if delete_images:
            for image_id in image_ids:
                await self.delete_image(image_id)

    async def zip_board(self, board_id: str) -> tuple[Path, str]:
        """Write the board's images into a temporary zip; return its path and a file name."""
        board = await self.board(board_id)
        rows, _ = await self.db.list_images(board_id, limit=100_000, offset=0)
        paths = [found.path for row in rows if (found := self.files.find(row.id, row.media_type)) is not None]
        return await asyncio.to_thread(self._zip, paths), f"board-{board.id}.zip"

    def _zip(self, paths: list[Path]) -> Path:
        with (
            tempfile.NamedTemporaryFile(dir=self.files.dir, prefix=".tmp-zip-", suffix=".zip", delete=False) as handle,
            zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive,
        ):
            for path in paths:  # PNG/JPEG are compressed already
                try:
                    archive.write(path, arcname=path.name)
                except FileNotFoundError:  # deleted while the zip was being written
                    continue
        return Path(handle.name)


def board_public(board: BoardRow) -> BoardPublic:
    return BoardPublic(id=board.id, name=board.name, created_at=board.created_at)
