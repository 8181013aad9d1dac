"""The job columns of the ports: ``batch_key``, ``cancel_requested``, ``progress``.

A data dir that the pre-migration bridge (``_add_missing_columns``) already gave some of them
keeps those: each column is added only where it is missing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002_job_ports"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("batch_key", sa.Text(), nullable=True),
        # Existing rows were never asked to stop: the default fills them on both backends.
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("progress", sa.JSON(), nullable=True),
    ]


def upgrade() -> None:
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("jobs")}
    for column in _columns():
        if column.name not in present:
            op.add_column("jobs", column)


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:  # SQLite drops a column by copying the table
        for column in reversed(_columns()):
            batch.drop_column(column.name)
