"""notes: the downstream project's first table, on top of dbcore's initial schema

Revision ID: ds0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dbcore.types

revision: str = "ds0001"
# The project's own branch: it starts from nothing, is labelled, and needs dbcore's 0001 applied first.
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("downstream",)
depends_on: str | Sequence[str] | None = "0001"


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", dbcore.types.GUID(), nullable=False),
        sa.Column("agent_id", dbcore.types.GUID(), nullable=False),
        sa.Column("title", sa.Unicode(length=200), nullable=False, comment="Short title of the note."),
        sa.Column("body", sa.UnicodeText(), nullable=False, comment="Text of the note."),
        sa.Column("created_at", dbcore.types.UTCDateTime(), nullable=False, comment="When the row was created (UTC)."),
        sa.Column(
            "updated_at", dbcore.types.UTCDateTime(), nullable=False, comment="When the row was last changed (UTC)."
        ),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], name=op.f("fk_notes_agent_id_agents")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
    )
    with op.batch_alter_table("notes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notes_agent_id"), ["agent_id"], unique=False)


def downgrade() -> None:
    # Dropping the table drops its index (MariaDB refuses to drop an index its foreign key needs).
    op.drop_table("notes")
