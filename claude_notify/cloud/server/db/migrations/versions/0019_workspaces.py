"""Team workspaces: every account gets one (with the account's own id), which takes over its
plan, quota counters and Stripe customer; tokens, tasks, channels and deliveries say which
workspace they belong to; invites and the activity log are new.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

_SCOPED = ("api_tokens", "tasks", "channels", "notifications")
"""Tables whose rows move into their owner's workspace; the owner's id is that workspace's."""


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("plan", sa.String(length=16), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("transfer_to", sa.Uuid(), nullable=True),
        sa.Column("transfer_expires_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["transfer_to"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_workspaces_transfer_to_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspaces")),
    )
    op.create_index(op.f("ix_workspaces_transfer_to"), "workspaces", ["transfer_to"])
    op.create_table(
        "workspace_members",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_workspace_members_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_workspace_members_user_id_users")),
        sa.PrimaryKeyConstraint("workspace_id", "user_id", name=op.f("pk_workspace_members")),
    )
    op.create_index(op.f("ix_workspace_members_user_id"), "workspace_members", ["user_id"])
    op.execute("INSERT INTO workspaces (id, name, plan, timezone, created_at) "
               "SELECT id, email, plan, timezone, created_at FROM users")
    op.execute("INSERT INTO workspace_members (workspace_id, user_id, role, created_at) "
               "SELECT id, id, 'owner', created_at FROM users")

    for name in _SCOPED:
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.add_column(sa.Column("workspace_id", sa.Uuid(), nullable=True))
        op.execute(f"UPDATE {name} SET workspace_id = user_id")  # noqa: S608 - our own names
        with op.batch_alter_table(name, schema=None) as batch_op:
            if name != "notifications":  # a sign-in e-mail belongs to no workspace
                batch_op.alter_column("workspace_id", existing_type=sa.Uuid(), nullable=False)
            batch_op.create_foreign_key(op.f(f"fk_{name}_workspace_id_workspaces"), "workspaces",
                                        ["workspace_id"], ["id"], ondelete="CASCADE")
            if name != "tasks":  # led by ix_tasks_workspace_created
                batch_op.create_index(op.f(f"ix_{name}_workspace_id"), ["workspace_id"])
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index("ix_tasks_workspace_created", ["workspace_id", "created_at"])
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("personal", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("workspace_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(op.f("fk_web_sessions_workspace_id_workspaces"),
                                    "workspaces", ["workspace_id"], ["id"], ondelete="SET NULL")
        batch_op.create_index(op.f("ix_web_sessions_workspace_id"), ["workspace_id"])

    op.create_table(
        "workspace_usage",
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_workspace_usage_workspace_id_workspaces")),
        sa.PrimaryKeyConstraint("workspace_id", "day", "kind", name=op.f("pk_workspace_usage")),
    )
    op.execute("INSERT INTO workspace_usage (workspace_id, day, kind, count) "
               "SELECT user_id, day, kind, count FROM usage_counters")
    op.drop_table("usage_counters")

    for name in ("billing_accounts", "billing_changes"):
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"fk_{name}_user_id_users"), type_="foreignkey")
            if name == "billing_changes":
                batch_op.drop_index(op.f("ix_billing_changes_user_id"))
            batch_op.alter_column("user_id", new_column_name="workspace_id",
                                  existing_type=sa.Uuid(), existing_nullable=False)
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.create_foreign_key(op.f(f"fk_{name}_workspace_id_workspaces"), "workspaces",
                                        ["workspace_id"], ["id"], ondelete="CASCADE")
            if name == "billing_changes":
                batch_op.create_index(op.f("ix_billing_changes_workspace_id"), ["workspace_id"])
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("plan")

    op.create_table(
        "workspace_invites",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("link_hash", sa.String(length=64), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("expires_at", _WHEN, nullable=False),
        sa.Column("accepted_at", _WHEN, nullable=True),
        sa.Column("revoked_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_workspace_invites_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["invited_by"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_workspace_invites_invited_by_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_invites")),
        sa.UniqueConstraint("link_hash", name=op.f("uq_workspace_invites_link_hash")),
    )
    op.create_index(op.f("ix_workspace_invites_workspace_id"), "workspace_invites",
                    ["workspace_id"])
    op.create_index("ix_workspace_invites_inviter_created", "workspace_invites",
                    ["invited_by", "created_at"])
    op.create_table(
        "workspace_audit",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("workspace_id", sa.Uuid(), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("actor_email", sa.String(length=320), nullable=False),
        sa.Column("action", sa.String(length=48), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.Column("at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE",
                                name=op.f("fk_workspace_audit_workspace_id_workspaces")),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], ondelete="SET NULL",
                                name=op.f("fk_workspace_audit_actor_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workspace_audit")),
    )
    op.create_index(op.f("ix_workspace_audit_actor_id"), "workspace_audit", ["actor_id"])
    op.create_index("ix_workspace_audit_workspace_at", "workspace_audit", ["workspace_id", "at"])


def downgrade() -> None:
    """Back to one account per plan: each user keeps their own workspace's plan and rows; rows
    other members reported into someone's workspace go with it."""
    op.drop_table("workspace_audit")
    op.drop_table("workspace_invites")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("plan", sa.String(length=16), nullable=False,
                                      server_default="free"))
    op.execute("UPDATE users SET plan = (SELECT w.plan FROM workspaces w WHERE w.id = users.id)"
               " WHERE EXISTS (SELECT 1 FROM workspaces w WHERE w.id = users.id)")
    for name in ("billing_accounts", "billing_changes"):
        op.execute(f"DELETE FROM {name} WHERE workspace_id NOT IN (SELECT id FROM users)")  # noqa: S608
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"fk_{name}_workspace_id_workspaces"),
                                     type_="foreignkey")
            if name == "billing_changes":
                batch_op.drop_index(op.f("ix_billing_changes_workspace_id"))
            batch_op.alter_column("workspace_id", new_column_name="user_id",
                                  existing_type=sa.Uuid(), existing_nullable=False)
        with op.batch_alter_table(name, schema=None) as batch_op:
            batch_op.create_foreign_key(op.f(f"fk_{name}_user_id_users"), "users", ["user_id"],
                                        ["id"], ondelete="CASCADE")
            if name == "billing_changes":
                batch_op.create_index(op.f("ix_billing_changes_user_id"), ["user_id"])
    op.create_table(
        "usage_counters",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name=op.f("fk_usage_counters_user_id_users")),
        sa.PrimaryKeyConstraint("user_id", "day", "kind", name=op.f("pk_usage_counters")),
    )
    op.execute("INSERT INTO usage_counters (user_id, day, kind, count) SELECT workspace_id, day,"
               " kind, count FROM workspace_usage WHERE workspace_id IN (SELECT id FROM users)")
    op.drop_table("workspace_usage")
    with op.batch_alter_table("web_sessions", schema=None) as batch_op:
        batch_op.drop_index(op.f("ix_web_sessions_workspace_id"))
        batch_op.drop_constraint(op.f("fk_web_sessions_workspace_id_workspaces"),
                                 type_="foreignkey")
        batch_op.drop_column("workspace_id")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("personal")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_workspace_created")
    for name in _SCOPED:
        with op.batch_alter_table(name, schema=None) as batch_op:
            if name != "tasks":
                batch_op.drop_index(op.f(f"ix_{name}_workspace_id"))
            batch_op.drop_constraint(op.f(f"fk_{name}_workspace_id_workspaces"),
                                     type_="foreignkey")
            batch_op.drop_column("workspace_id")
    op.drop_index(op.f("ix_workspace_members_user_id"), table_name="workspace_members")
    op.drop_table("workspace_members")
    op.drop_index(op.f("ix_workspaces_transfer_to"), table_name="workspaces")
    op.drop_table("workspaces")
