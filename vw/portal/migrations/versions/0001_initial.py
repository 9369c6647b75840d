"""The first schema: users, sessions, meetings, co-hosts, tokens, audit, throttling.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("display_name", sa.String(100), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("avatar_url", sa.String(2000), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.CheckConstraint("role IN ('admin', 'host', 'member', 'guest')",
                           name="portal_users_role"),
    )
    op.create_index("portal_users_email", "portal_users", [sa.text("lower(email)")],
                    unique=True)
    op.create_table(
        "portal_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("portal_users.id", ondelete="CASCADE")),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=False),
    )
    op.create_index("ix_portal_sessions_user_id", "portal_sessions", ["user_id"])
    op.create_index("ix_portal_sessions_expires", "portal_sessions", ["expires"])
    op.create_table(
        "portal_meetings",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("portal_users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("start", sa.DateTime, nullable=False),
        sa.Column("duration", sa.Integer, nullable=False),
        sa.Column("recurrence", sa.String(500), nullable=False),
        sa.Column("ends", sa.DateTime),
        sa.Column("room", sa.String(64), nullable=False, unique=True),
        sa.Column("password", sa.String(100), nullable=False),
        sa.Column("lobby", sa.Boolean, nullable=False),
        sa.Column("guests_allowed", sa.Boolean, nullable=False),
        sa.Column("max_participants", sa.Integer, nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_index("ix_portal_meetings_owner_id", "portal_meetings", ["owner_id"])
    op.create_table(
        "portal_cohosts",
        sa.Column("meeting_id", sa.String(32),
                  sa.ForeignKey("portal_meetings.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("portal_users.id", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_portal_cohosts_user_id", "portal_cohosts", ["user_id"])
    op.create_table(
        "portal_refresh_tokens",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("portal_users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_index("ix_portal_refresh_tokens_user_id", "portal_refresh_tokens", ["user_id"])
    op.create_table(
        "portal_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_portal_audit_time", "portal_audit", ["time"])
    op.create_table(
        "portal_login_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.DateTime, nullable=False),
        sa.Column("account", sa.String(254), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
    )
    op.create_index("portal_login_failures_account", "portal_login_failures",
                    ["account", "time"])
    op.create_index("portal_login_failures_address", "portal_login_failures",
                    ["address", "time"])
    op.create_table(
        "portal_invitations",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(8), nullable=False),
        sa.Column("created_by", sa.Integer),
        sa.Column("created", sa.DateTime, nullable=False),
        sa.Column("expires", sa.DateTime, nullable=False),
        sa.Column("used_by", sa.Integer),
    )
    op.create_table(
        "portal_password_resets",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("portal_users.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("expires", sa.DateTime, nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    for table in ("portal_password_resets", "portal_invitations", "portal_login_failures",
                  "portal_audit", "portal_refresh_tokens", "portal_cohosts", "portal_meetings",
                  "portal_sessions", "portal_users"):
        op.drop_table(table)
