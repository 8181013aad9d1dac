"""Leases and the workers table: the job's worker, its lease expiry and the worker of each run.

A jobs table made by create_all from a newer model (the pre-migration bridge) keeps the
columns it has: each is added only where it is missing, as in 0002.

Revision ID: 0004_workers_leases
Revises: 0003_pg_queue_events
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0004_workers_leases"
down_revision = "0003_pg_queue_events"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("worker_id", sa.String(32), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        # Jobs of before leases ran on no named worker: an empty list each.
        sa.Column("attempt_workers", sa.JSON(), nullable=False, server_default="[]"),
    ]


def upgrade() -> None:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("jobs")}
    for column in _columns():
        if column.name not in present:
            op.add_column("jobs", column)
    op.create_table(
        "workers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("precision", sa.String(32), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("current_job_ids", sa.JSON(), nullable=False),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_heartbeat_at", "workers")
    op.drop_table("workers")
    with op.batch_alter_table("jobs") as batch:  # SQLite drops a column by copying the table
        for column in reversed(_columns()):
            batch.drop_column(column.name)
