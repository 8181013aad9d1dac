"""Image and board rows of the store: images land in a board only while it exists."""

from __future__ import annotations

import asyncio
import enum
import uuid
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from cofounder_agent.jobs.tables import BoardRow, ImageRow, utcnow

if TYPE_CHECKING:
    from cofounder_agent.jobs.ports import BlobStore


class AnyBoard(enum.Enum):
    """``list_images``' filter for images in any board or in none."""

    ANY = "any"


ANY_BOARD = AnyBoard.ANY


class ImageRows:
    """Images and boards; part of ``Store`` (the engine and sessions are the store's)."""

    session: async_sessionmaker[AsyncSession]

    async def add_image(self, row: ImageRow) -> ImageRow:
        """Insert an image row; return it as stored.

        An image whose board is deleted while it is being written lands without a board,
        exactly like the board's earlier images: never pointing at a board that is gone.
        """
        row.created_at = row.created_at or utcnow()
        row.intermediate = bool(row.intermediate)
        values = {column.key: getattr(row, column.key) for column in ImageRow.__table__.columns}
        board_id = row.board_id
        if board_id is not None:
            try:
                async with self.session() as s, s.begin():
                    # The board id is read from boards by the INSERT itself: NULL if the board
                    # is gone, in the same statement (so no delete falls between check and write).
                    board = select(BoardRow.id).where(BoardRow.id == board_id).scalar_subquery()
                    await s.execute(insert(ImageRow).values({**values, "board_id": board}))
                    stored_board = await s.scalar(select(ImageRow.board_id).where(ImageRow.id == row.id))
                row.board_id = stored_board
                return row
            except IntegrityError:
                # PostgreSQL: a delete that commits while the INSERT runs fails its foreign key check.
                if await self.get_board(board_id) is not None:
                    raise
                row.board_id = values["board_id"] = None
        async with self.session() as s, s.begin():
            await s.execute(insert(ImageRow).values(values))
        return row

    async def get_image(self, image_id: str) -> ImageRow | None:
        async with self.session() as s:
            return await s.get(ImageRow, image_id)

    async def intermediate_ids(self, job_id: str) -> list[str]:
        async with self.session() as s:
            query = select(ImageRow.id).where(ImageRow.job_id == job_id, ImageRow.intermediate.is_(True))
            return list((await s.scalars(query)).all())

    async def delete_image(self, image_id: str) -> bool:
        async with self.session() as s, s.begin():
            row = await s.get(ImageRow, image_id)
            if row is None:
                return False
            await s.delete(row)
        return True

    async def list_images(
        self,
        board: str | AnyBoard | None,
        limit: int,
        offset: int,
        *,
        newest: bool = False,
        intermediate: bool | None = None,
    ) -> tuple[Sequence[ImageRow], int]:
        """A page of images and how many match: in ``board``, in none (``None``), or all (``ANY_BOARD``).

        Ties in ``created_at`` are broken by id, so pages never repeat or skip a row.
        """
        where: list[ColumnElement[bool]] = []
        if board is None:
            where.append(ImageRow.board_id.is_(None))
        elif not isinstance(board, AnyBoard):
            where.append(ImageRow.board_id == board)
        if intermediate is not None:
            where.append(ImageRow.intermediate.is_(intermediate))
        created = ImageRow.created_at.desc() if newest else ImageRow.created_at
        page = select(ImageRow).where(*where).order_by(created, ImageRow.id).limit(limit).offset(offset)
        async with self.session() as s:
            rows = (await s.scalars(page)).all()
            total = await s.scalar(select(func.count()).select_from(ImageRow).where(*where)) or 0
        return rows, total

    async def move_image(self, image_id: str, board_id: str | None) -> ImageRow | None:
        """Put the image in the board (``None``: in no board); ``None`` when the image or the board is gone.

        The board's existence is checked by the UPDATE itself, so a refused move changes nothing
        and no delete falls between the check and the write.
        """
        where: list[ColumnElement[bool]] = [ImageRow.id == image_id]
        if board_id is not None:
            where.append(select(BoardRow.id).where(BoardRow.id == board_id).exists())
        try:
            async with self.session() as s, s.begin():
                moved = await s.execute(update(ImageRow).where(*where).values(board_id=board_id))
                if not getattr(moved, "rowcount", 0):
                    return None
                return await s.get(ImageRow, image_id, populate_existing=True)
        except IntegrityError:
            # PostgreSQL: the board's delete committed while the UPDATE ran (foreign key check).
            return None

    async def add_board(self, name: str) -> BoardRow:
        board = BoardRow(id=uuid.uuid4().hex, name=name)
        async with self.session() as s, s.begin():
            s.add(board)
        return board

    async def get_board(self, board_id: str) -> BoardRow | None:
        async with self.session() as s:
            return await s.get(BoardRow, board_id)

    async def list_boards(self) -> Sequence[BoardRow]:
        async with self.session() as s:
            return (await s.scalars(select(BoardRow).order_by(BoardRow.created_at))).all()

    async def rename_board(self, board_id: str, name: str) -> BoardRow | None:
        async with self.session() as s, s.begin():
            board = await s.get(BoardRow, board_id)
            if board is not None:
                board.name = name
        return board

    async def delete_board(self, board_id: str) -> list[str] | None:
        """Delete a board; return the ids of its images (the caller keeps or deletes them)."""
        async with self.session() as s, s.begin():
            board = await s.get(BoardRow, board_id)
            if board is None:
                return None
            ids = list((await s.scalars(select(ImageRow.id).where(ImageRow.board_id == board_id))).all())
            await s.execute(update(ImageRow).where(ImageRow.board_id == board_id).values(board_id=None))
            await s.delete(board)
        return ids

    async def image_ids(self) -> list[str]:
        """The ids of all image rows."""
        async with self.session() as s:
            return list((await s.scalars(select(ImageRow.id))).all())

    async def prune_unreferenced(
        self, job_id: str, keep_ids: Collection[str], files: BlobStore | None = None
    ) -> list[str]:
        """Delete the job's images but ``keep_ids`` (what its results name); return the deleted ids.

        For a job that ended early: pictures of a result that never finished (its
        intermediates, a streamed stage picture) are referenced by nothing.
        """
        async with self.session() as s, s.begin():
            gone = await delete_images(s, (ImageRow.job_id == job_id) & ImageRow.id.not_in(list(keep_ids)))
        if files is not None:
            await asyncio.to_thread(delete_files, files, gone)
        return gone


async def delete_images(s: AsyncSession, where: Any) -> list[str]:
    """Delete the image rows that match; return their ids."""
    ids = list((await s.scalars(select(ImageRow.id).where(where))).all())
    if ids:
        await s.execute(delete(ImageRow).where(ImageRow.id.in_(ids)))
    return ids


def delete_files(files: BlobStore, image_ids: list[str]) -> None:
    for image_id in image_ids:
        files.delete(image_id)
