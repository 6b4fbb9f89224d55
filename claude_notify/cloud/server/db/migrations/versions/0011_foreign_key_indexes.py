"""Indexes on the two foreign keys that had none: ``events.task_id`` and
``notifications.event_row_id``.

The relay and the Telegram buttons look events up by task, and deleting a task or an event
(retention, an account's deletion) cascades through them: without an index, each was a scan of
the whole table on PostgreSQL.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_task_id"), ["task_id"], unique=False)
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notifications_event_row_id"), ["event_row_id"],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notifications_event_row_id"))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_task_id"))
