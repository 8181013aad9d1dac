"""What request an Idempotency-Key was first used for: ``jobs.request_hash``.

A key reused with a different request is refused (422 ``idempotency_key_reused``) instead of
silently answering with the first request's job. The column holds the sha256 of the request's
canonical form; jobs stored before it have none and keep the old behaviour (the key alone
finds the job).

Revision ID: 0006_idempotency_request_hash
Revises: 0005_outbox_worker_engine
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_idempotency_request_hash"
down_revision = "0005_outbox_worker_engine"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A data dir whose jobs table create_all made from today's models (before migrations) has it.
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("jobs")}
    if "request_hash" not in present:
        op.add_column("jobs", sa.Column("request_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request_hash")
