"""Image rows on both store adapters: listed by board, in no board or all, in a stable order; moved."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from cofounder_agent.jobs.image_rows import ANY_BOARD
from cofounder_agent.jobs.store import Store, sqlite_url
from cofounder_agent.jobs.tables import BoardRow, ImageRow

ADAPTERS = ["sqlite", "postgresql"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=ADAPTERS)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        store = Store(sqlite_url(tmp_path))
    elif request.param == "postgresql":
        store = Store(request.getfixturevalue("postgres_url"))
    else:  # pragma: no cover - a new adapter must say how it is built
        raise AssertionError(f"unknown adapter {request.param}")
    await store.init()
    try:
        yield store
    finally:
        await store.close()


async def _image(
    db: Store, board_id: str | None, at: datetime, *, image_id: str | None = None, intermediate: bool = False
) -> str:
    row = ImageRow(
        id=image_id or uuid.uuid4().hex,
        board_id=board_id,
        media_type="image/png",
        width=8,
        height=8,
        source="upload",
        intermediate=intermediate,
        created_at=at,
    )
    return (await db.add_image(row)).id


def _ids(page: tuple[object, int]) -> list[str]:
    rows, _ = page
    return [row.id for row in rows]  # type: ignore[attr-defined]


async def test_images_are_listed_by_board_in_none_or_all(db: Store) -> None:
    board = (await db.add_board("b")).id
    other = (await db.add_board("o")).id
    a = await _image(db, board, T0)
    b = await _image(db, None, T0 + timedelta(seconds=1))
    c = await _image(db, board, T0 + timedelta(seconds=2), intermediate=True)
    d = await _image(db, other, T0 + timedelta(seconds=3))

    assert _ids(await db.list_images(board, 10, 0)) == [a, c]
    assert (await db.list_images(board, 10, 0))[1] == 2
    assert _ids(await db.list_images(None, 10, 0)) == [b]
    assert _ids(await db.list_images(ANY_BOARD, 10, 0)) == [a, b, c, d]
    assert _ids(await db.list_images(ANY_BOARD, 10, 0, newest=True)) == [d, c, b, a]
    assert _ids(await db.list_images(ANY_BOARD, 10, 0, intermediate=False)) == [a, b, d]
    assert _ids(await db.list_images(board, 10, 0, intermediate=True)) == [c]
    assert (await db.list_images(ANY_BOARD, 1, 1))[1] == 4  # the count is of every match, not the page
    assert (await db.list_images(None, 10, 0, intermediate=True)) == ([], 0)


async def test_pages_of_images_made_in_the_same_instant_neither_repeat_nor_skip(db: Store) -> None:
    ids = sorted(uuid.uuid4().hex for _ in range(7))
    for image_id in reversed(ids):  # inserted against the id order
        await _image(db, None, T0, image_id=image_id)
    for newest in (False, True):
        seen = [i for offset in range(0, 7, 2) for i in _ids(await db.list_images(None, 2, offset, newest=newest))]
        assert seen == ids  # ties broken by id, in both orders


async def test_a_move_puts_the_image_in_a_board_or_in_none(db: Store) -> None:
    first, second = (await db.add_board("1")).id, (await db.add_board("2")).id
    image_id = await _image(db, first, T0)

    moved = await db.move_image(image_id, second)
    assert moved is not None and (moved.id, moved.board_id, moved.created_at) == (image_id, second, T0)
    assert _ids(await db.list_images(first, 10, 0)) == [] and _ids(await db.list_images(second, 10, 0)) == [image_id]
    out = await db.move_image(image_id, None)
    assert out is not None and out.board_id is None
    assert _ids(await db.list_images(None, 10, 0)) == [image_id]


async def test_a_move_to_a_missing_board_or_of_a_missing_image_changes_nothing(db: Store) -> None:
    board = (await db.add_board("kept")).id
    image_id = await _image(db, board, T0)
    assert await db.move_image(image_id, uuid.uuid4().hex) is None
    assert (await db.get_image(image_id)).board_id == board  # type: ignore[union-attr]
    assert await db.move_image(uuid.uuid4().hex, board) is None
    assert await db.move_image(uuid.uuid4().hex, None) is None
    assert _ids(await db.list_images(ANY_BOARD, 10, 0)) == [image_id]


async def test_images_moved_into_a_board_being_deleted_never_point_at_it(db: Store) -> None:
    board = (await db.add_board("doomed")).id
    ids = [await _image(db, None, T0 + timedelta(seconds=n)) for n in range(30)]

    async def delete_after_some_moves() -> None:
        await asyncio.sleep(0)  # let the first moves start
        assert await db.delete_board(board) is not None

    moves = [db.move_image(image_id, board) for image_id in ids]
    results = await asyncio.gather(*moves[:15], delete_after_some_moves(), *moves[15:])
    async with db.session() as s:
        dangling = await s.scalar(
            select(func.count()).where(ImageRow.board_id.is_not(None), ImageRow.board_id.not_in(select(BoardRow.id)))
        )
    assert dangling == 0
    # A move answered before the delete landed in the board (then emptied); a later one was refused.
    assert all(r is None or r.board_id == board for r in results)
    assert _ids(await db.list_images(None, 100, 0)) == ids
