"""Migrations: older data dirs upgrade in place and keep their data; both backends reach one schema."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import Connection, create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from cofounder_agent.config import Settings
from cofounder_agent.jobs.store import Store, sqlite_url
from cofounder_agent.jobs.tables import Base
from cofounder_agent.migrations import current_revision, head_revision, upgrade
from conftest import make_settings, running_server, wait_job, wait_ready

# Made by the code of commit 895e1d1, before migrations (tests/data/README.md says how).
OLD_DIR = Path(__file__).parent / "data" / "datadir_895e1d1"
OLD_BOARD = "8a43de36a548439b8da7c6777b7025dc"
OLD_UPLOAD = "ae9c54adb53f4f58bd3fe00f18e33e40"
OLD_JOB = "b2cf120e60ab475088fe688ea79403c3"
OLD_RESULT = "7fac76457d854d31bbafc05b98a7cf5f"
SRC = Path(__file__).resolve().parents[1] / "src"


def _copy_old_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(OLD_DIR, data)
    return data


def _serves_the_old_data(settings: Settings) -> None:
    """Today's server on the upgraded dir reads back the old job, images and board, and runs a new job."""
    with running_server(settings) as base, httpx.Client(base_url=base, timeout=60) as client:
        job = client.get(f"/v1/jobs/{OLD_JOB}").json()
        assert (job["status"], job["image_ids"], job["recipe"]["prompt"]) == ("succeeded", [OLD_RESULT], "a red fox")
        for image_id in (OLD_RESULT, OLD_UPLOAD):
            picture = client.get(f"/v1/images/{image_id}")
            assert picture.status_code == 200
            assert picture.content == (OLD_DIR / "images" / f"{image_id}.png").read_bytes()
        upload = client.get(f"/v1/images/{OLD_UPLOAD}/metadata").json()
        assert (upload["board_id"], upload["source"], upload["width"]) == (OLD_BOARD, "upload", 64)
        boards = client.get("/v1/boards").json()
        assert [(b["id"], b["name"]) for b in boards["data"]] == [(OLD_BOARD, "old board")]
        in_board = client.get(f"/v1/boards/{OLD_BOARD}/images").json()
        assert {image["id"] for image in in_board["data"]} == {OLD_UPLOAD, OLD_RESULT}  # the job was in it
        # The new columns work on the old table: a new job queues, runs and ends.
        wait_ready(base)
        new = client.post("/v1/jobs", json={"prompt": "a fox", "width": 64, "height": 64, "steps": 2}).json()
        assert wait_job(client, new["id"])["status"] == "succeeded"


def _revision(url: str) -> str | None:
    return asyncio.run(current_revision(url))


def test_a_data_dir_from_before_migrations_upgrades_in_place(tmp_path: Path) -> None:
    data = _copy_old_dir(tmp_path)
    assert _revision(sqlite_url(data)) is None
    _serves_the_old_data(make_settings(tmp_path, image_data_dir=data))
    assert _revision(sqlite_url(data)) == head_revision()


def test_a_data_dir_made_with_the_column_bridge_upgrades_in_place(tmp_path: Path) -> None:
    # Today's tables as create_all made them before migrations (bridge columns in, no
    # alembic_version), holding the old dir's rows.
    data = tmp_path / "data"
    shutil.copytree(OLD_DIR / "images", data / "images")
    engine = create_engine(f"sqlite:///{data / 'jobs.sqlite3'}")
    # Only the tables of that version: the queue's counters and event tables came later (0003).
    Base.metadata.create_all(engine, tables=[Base.metadata.tables[name] for name in ("boards", "images", "jobs")])
    engine.dispose()
    with sqlite3.connect(data / "jobs.sqlite3") as db:
        db.execute("ATTACH DATABASE ? AS old", (str(OLD_DIR / "jobs.sqlite3"),))
        for table in ("boards", "images", "jobs"):
            columns = ", ".join(row[1] for row in db.execute(f"PRAGMA old.table_info({table})"))
            # Today's models write cancel_requested themselves: create_all gave it no default.
            extra, values = (", cancel_requested", ", 0") if table == "jobs" else ("", "")
            db.execute(f"INSERT INTO {table} ({columns}{extra}) SELECT {columns}{values} FROM old.{table}")  # noqa: S608
    db.close()
    assert _revision(sqlite_url(data)) is None
    _serves_the_old_data(make_settings(tmp_path, image_data_dir=data))
    assert _revision(sqlite_url(data)) == head_revision()


def _differences(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


async def _schema_differences(url: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_differences)
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a new SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "data")
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.mark.timeout(300)  # without the lock, PostgreSQL's CREATE TABLEs wait on each other for good
async def test_concurrent_upgrades_of_an_empty_database_make_one_schema(empty_database: str) -> None:
    # Four replicas starting at once: each waits for the lock, then finds the schema current.
    # (Without it: SQLite "table alembic_version already exists"; PostgreSQL hangs.)
    revisions = await asyncio.gather(*(upgrade(empty_database) for _ in range(4)))
    assert revisions == [head_revision()] * 4
    assert await _schema_differences(empty_database) == []


def test_db_upgrade_from_the_cli_in_two_processes_at_once(empty_database: str, tmp_path: Path) -> None:
    # Real separate processes; whether their upgrades overlap is up to timing, so the lock itself
    # is proven by the in-process test above. This one proves the command and its output.
    env = {**os.environ, "PYTHONPATH": str(SRC), "IMAGE_DATABASE_URL": empty_database, "IMAGE_LOG_FILE": ""}
    command = [sys.executable, "-m", "cofounder_agent", "db"]
    runs = [subprocess.Popen([*command, "upgrade"], env=env, cwd=tmp_path, stderr=subprocess.PIPE) for _ in range(2)]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err.decode()
    current = subprocess.run([*command, "current"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert current.returncode == 0 and current.stdout.strip().endswith(f": {head_revision()}")
    assert asyncio.run(_schema_differences(empty_database)) == []


async def test_the_store_works_on_a_migrated_postgresql_database(postgres_url: str) -> None:
    store = Store(postgres_url)
    await store.init()
    try:
        assert await current_revision(postgres_url) == head_revision()
        job, new = await store.add_job({"prompt": "x"}, batch_key="k")
        claimed = await store.claim_next()
        assert new and claimed is not None and claimed.id == job.id and claimed.batch_key == "k"
        done = await store.finish(job.id, "succeeded", image_ids=["a"])
        assert done is not None and (done.status, done.image_ids) == ("succeeded", ["a"])
    finally:
        await store.close()


def test_the_database_url_is_never_logged_with_its_password(tmp_path: Path) -> None:
    from cofounder_agent.migrations import redacted

    url = "postgresql+asyncpg://app:s3cret@db.example:5432/images"
    settings = make_settings(tmp_path, image_database_url=url)
    assert settings.database_url == url and "s3cret" not in repr(settings)
    assert redacted(url) == "postgresql+asyncpg://app:***@db.example:5432/images"
    with pytest.raises(ValidationError, match="driver 'postgresql' is not supported") as refused:
        make_settings(tmp_path, image_database_url="postgresql://app:s3cret@db/images")
    assert "s3cret" not in str(refused.value)
