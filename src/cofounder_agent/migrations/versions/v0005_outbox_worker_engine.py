"""The job-end outbox, and what each worker's engine reports (for health on API replicas).

``job_endings``: one row per job end, written in the transaction that ends the job; a
dispatcher in any API process claims it (``SKIP LOCKED`` on PostgreSQL), runs the finish hooks
(webhooks, metrics) and marks it delivered, so each end is handled once however many replicas run.

``workers.engine``: the worker's engine status (model, refiner, tiny or not, device name, VRAM,
precision, fast path) as JSON, so an API replica without a worker can report it.

Revision ID: 0005_outbox_worker_engine
Revises: 0004_workers_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_outbox_worker_engine"
down_revision = "0004_workers_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("engine", sa.JSON(), nullable=False, server_default="{}"))
    op.create_table(
        "job_endings",
        sa.Column("id", sa.Integer(), sa.Identity(), primary_key=True),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        # A dispatcher's claim: who, and until when (the database's clock); a lapsed claim is retaken.
        sa.Column("claimed_by", sa.String(32), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_job_endings_delivered_at", "job_endings", ["delivered_at"])
    op.create_index("ix_job_endings_job_id", "job_endings", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_endings_job_id", "job_endings")
    op.drop_index("ix_job_endings_delivered_at", "job_endings")
    op.drop_table("job_endings")
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("engine")
