"""The portal's tables (SQLAlchemy Core); migrations/ creates and evolves them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC everywhere."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)

    def result_processor(self, dialect: Dialect, coltype: object
                         ) -> Callable[[Any], datetime | None] | None:
        """SQLite's text (ISO 8601 without an offset) read as UTC in one step: the meeting
        lists read three a row, and ``datetime.replace`` cost four times the parsing."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value + "+00:00")

        return process


metadata = MetaData()

users = Table(
    "portal_users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False),
    Column("display_name", String(100), nullable=False),
    Column("password_hash", String(200), nullable=False),
    Column("role", String(8), nullable=False),
    Column("avatar_url", String(2000), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    CheckConstraint("role IN ('admin', 'host', 'member', 'guest')", name="portal_users_role"),
)
Index("portal_users_email", func.lower(users.c.email), unique=True)

sessions = Table(
    "portal_sessions", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("portal_users.id", ondelete="CASCADE"), index=True),
    Column("csrf", String(64), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False, index=True),
)

meetings = Table(
    "portal_meetings", metadata,
    Column("id", String(32), primary_key=True),
    Column("owner_id", Integer, ForeignKey("portal_users.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("title", String(200), nullable=False),
    Column("start", UTCDateTime, nullable=False),
    Column("duration", Integer, nullable=False),
    Column("recurrence", String(500), nullable=False),
    Column("ends", UTCDateTime),
    Column("room", String(64), nullable=False, unique=True),
    Column("password", String(100), nullable=False),
    Column("lobby", Boolean, nullable=False),
    Column("guests_allowed", Boolean, nullable=False),
    Column("max_participants", Integer, nullable=False),
    Column("cancelled", Boolean, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

cohosts = Table(
    "portal_cohosts", metadata,
    Column("meeting_id", String(32), ForeignKey("portal_meetings.id", ondelete="CASCADE"),
           primary_key=True),
    Column("user_id", Integer, ForeignKey("portal_users.id", ondelete="CASCADE"),
           primary_key=True, index=True),
)

refresh_tokens = Table(
    "portal_refresh_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("portal_users.id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("revoked", Boolean, nullable=False),
)

audit = Table(
    "portal_audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", UTCDateTime, nullable=False, index=True),
    Column("event", String(64), nullable=False),
    Column("user_id", Integer),
    Column("address", String(64), nullable=False),
    Column("detail", Text, nullable=False),
)

login_failures = Table(
    "portal_login_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", UTCDateTime, nullable=False),
    #: The e-mail address tried, lowercased (whether or not it has an account).
    Column("account", String(254), nullable=False),
    Column("address", String(64), nullable=False),
    Index("portal_login_failures_account", "account", "time"),
    Index("portal_login_failures_address", "address", "time"),
)

invitations = Table(
    "portal_invitations", metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("role", String(8), nullable=False),
    Column("created_by", Integer),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("used_by", Integer),
)

password_resets = Table(
    "portal_password_resets", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", Integer, ForeignKey("portal_users.id", ondelete="CASCADE"),
           nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("used", Boolean, nullable=False),
)
