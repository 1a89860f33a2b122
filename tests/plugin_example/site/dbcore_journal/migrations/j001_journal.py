"""journal tables

Revision ID: j001
Revises:
Create Date: 2026-11-24

The plugin's own branch: it starts from nothing, is labelled 'journal', and needs
dbcore's 0003 applied first (its entries reference agents).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import dbcore.types

revision: str = "j001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("journal",)
depends_on: str | Sequence[str] | None = "0003"


def upgrade() -> None:
    op.create_table(
        "journal_kinds",
        sa.Column("id", dbcore.types.GUID(), nullable=False),
        sa.Column("name", sa.Unicode(length=50), nullable=False, comment="Short name of the kind."),
        sa.Column("created_at", dbcore.types.UTCDateTime(), nullable=False, comment="When the row was created (UTC)."),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_kinds")),
        sa.UniqueConstraint("name", name=op.f("uq_journal_kinds_name")),
    )
    op.create_table(
        "journal_entries",
        sa.Column("id", dbcore.types.GUID(), nullable=False),
        sa.Column("agent_id", dbcore.types.GUID(), nullable=False, comment="The agent who wrote it."),
        sa.Column("kind_id", dbcore.types.GUID(), nullable=False, comment="What the entry records."),
        sa.Column("text", sa.Unicode(length=500), nullable=False, comment="The entry."),
        sa.Column("created_at", dbcore.types.UTCDateTime(), nullable=False, comment="When the row was created (UTC)."),
        sa.ForeignKeyConstraint(
            ["agent_id"], ["agents.id"], name=op.f("fk_journal_entries_agent_id_agents"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["kind_id"], ["journal_kinds.id"], name=op.f("fk_journal_entries_kind_id_journal_kinds")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_entries")),
    )
    with op.batch_alter_table("journal_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_journal_entries_agent_id"), ["agent_id"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes (MariaDB refuses to drop an index its foreign key needs).
    op.drop_table("journal_entries")
    op.drop_table("journal_kinds")
