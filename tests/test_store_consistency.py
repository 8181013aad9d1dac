"""The store stays consistent: boards and their images, what crashes leave, queue positions per page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import event, func, select

from cofounder_agent.jobs.bus import LocalEventBus
from cofounder_agent.jobs.ending import JobEnding
from cofounder_agent.jobs.recipe_book import RecipeBook
from cofounder_agent.jobs.service import JobService
from cofounder_agent.jobs.store import Store
from cofounder_agent.jobs.tables import BoardRow, ImageRow, JobRow
from cofounder_agent.storage import ImageStore
from conftest import make_settings


async def _dangling(store: Store) -> int:
    """Image and job rows that name a board that does not exist."""
    boards = select(BoardRow.id)
    async with store.session() as s:
        # "NULL NOT IN (empty)" is true: unboarded rows are excluded explicitly.
        image = ImageRow.board_id
        images = await s.scalar(select(func.count()).where(image.is_not(None), image.not_in(boards))) or 0
        job = JobRow.board_id
        jobs = await s.scalar(select(func.count()).where(job.is_not(None), job.not_in(boards))) or 0
    return images + jobs


def _image(board_id: str | None, job_id: str | None = None, image_id: str | None = None) -> ImageRow:
    import uuid

    return ImageRow(
        id=image_id or uuid.uuid4().hex,
        job_id=job_id,
        board_id=board_id,
        media_type="image/png",
        width=8,
        height=8,
        source="upload",
    )


async def test_images_and_jobs_written_while_their_board_is_deleted_land_unboarded(store: Store) -> None:
    board = await store.add_board("harbour")
    before, _ = await store.add_job({"n": 1}, board_id=board.id)

    async def delete_after_some_writes() -> None:
        await asyncio.sleep(0)  # let the first inserts start
        assert await store.delete_board(board.id) is not None

    rows = [_image(board.id) for _ in range(40)]
    writes = [store.add_image(row) for row in rows]
    stored = await asyncio.gather(*writes[:20], delete_after_some_writes(), *writes[20:])
    # Written after the deletion finished: the board is certainly gone.
    late = await store.add_image(_image(board.id))
    late_job, _ = await store.add_job({"n": 2}, board_id=board.id)

    assert await _dangling(store) == 0
    assert late.board_id is None and late_job.board_id is None
    assert (await store.get_job(before.id)).board_id is None  # type: ignore[union-attr]
    # Each image is kept, unboarded: those written before the deletion like those written after.
    for row in [r for r in stored if isinstance(r, ImageRow)] + [late]:
        found = await store.get_image(row.id)
        assert found is not None and found.board_id is None


async def test_foreign_keys_are_enforced(store: Store) -> None:
    """Every connection of the pool has them on (SQLite turns them off by default)."""
    async with store.engine.connect() as conn:
        assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1


def _png_file(files: ImageStore, job_id: str | None = None) -> str:
    return files.save_png(Image.new("RGB", (8, 8)), {"job_id": job_id}).id


async def test_recovery_removes_what_interrupted_attempts_and_crashes_left(store: Store, tmp_path: Path) -> None:
    files = ImageStore(tmp_path)
    done, _ = await store.add_job({"n": 1})
    await store.claim_next()
    kept = _png_file(files, done.id)
    await store.add_image(_image(None, done.id, kept))
    await store.finish(done.id, "succeeded", image_ids=[kept])

    interrupted, _ = await store.add_job({"n": 2})
    twice, _ = await store.add_job({"n": 3})
    await store.claim_next()
    await store.claim_next()
    half = [_png_file(files, interrupted.id), _png_file(files, twice.id)]
    for image_id, job in zip(half, (interrupted, twice), strict=True):
        await store.add_image(_image(None, job.id, image_id))
    # A crash between writing a file and inserting its row.
    unrowed = _png_file(files)
    thumb_only = "ab" * 16
    (files.dir / f"{thumb_only}.thumb.png").write_bytes(b"left over")

    # The second job was already on its last attempt.
    async with store.session() as s, s.begin():
        (await s.get(JobRow, twice.id)).attempts = 2  # type: ignore[union-attr]

    assert await store.recover(files) == ([interrupted.id], [twice.id])
    assert await store.image_ids() == [kept]
    assert files.ids() == {kept}
    assert files.find(kept) is not None and all(files.find(i) is None for i in [*half, unrowed])


async def test_prune_deletes_the_images_a_job_ended_without(store: Store, tmp_path: Path) -> None:
    files = ImageStore(tmp_path)
    job, _ = await store.add_job({"n": 1})
    other, _ = await store.add_job({"n": 2})
    ids = [_png_file(files, job.id) for _ in range(3)]
    for image_id in ids:
        await store.add_image(_image(None, job.id, image_id))
    others = _png_file(files, other.id)
    await store.add_image(_image(None, other.id, others))

    gone = await store.prune_unreferenced(job.id, [ids[0]], files)

    assert sorted(gone) == sorted(ids[1:])
    assert sorted(await store.image_ids()) == sorted([ids[0], others])
    assert files.ids() == {ids[0], others}


@contextmanager
def _counting(store: Store) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(store.engine.sync_engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", count)


async def test_a_page_of_queued_jobs_costs_a_fixed_number_of_queries(store: Store, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    bus = LocalEventBus()
    service = JobService(
        store, bus, JobEnding(store, bus, ImageStore(tmp_path)), settings, RecipeBook(tmp_path / "recipes")
    )
    jobs = [(await store.add_job({"n": n}, priority=n % 3))[0] for n in range(80)]
    await store.claim_next()  # one running job among them

    with _counting(store) as small:
        page5 = await service.list("queued", limit=5, offset=0)
    with _counting(store) as large:
        page50 = await service.list("queued", limit=50, offset=3)

    assert len(page5.data) == 5 and len(page50.data) == 50 and page50.count == 79
    assert len(small) == len(large)
    # The positions match the one-job count, computed another way.
    by_id = {job.id: job for job in jobs}
    for view in page5.data + page50.data:
        assert view.queue_position == await store.queue_position(by_id[view.id])


async def test_a_replica_starting_on_postgresql_spares_files_a_worker_is_writing(
    postgres_url: str, tmp_path: Path
) -> None:
    # The image directory is shared: a file without a row may be a running worker's, written an
    # instant before its row. Only one older than the grace is a crash's leftover.
    import os
    import time

    from cofounder_agent.storage import LEFTOVER_AGE_S

    store = Store(postgres_url)
    await store.init()
    try:
        files = ImageStore(tmp_path)
        old, fresh = _png_file(files), _png_file(files)
        then = time.time() - LEFTOVER_AGE_S - 60
        for path in files.dir.glob(f"{old}*"):
            os.utime(path, (then, then))
        await store.recover(files)
        assert files.ids() == {fresh}
    finally:
        await store.close()
