"""Opening the portal's database: SQLite under state_dir by default, any SQLAlchemy URL
(``postgresql+psycopg://...``) otherwise, migrated to the newest schema on open."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine

from vw.config import Config

#: Alembic's bookkeeping table (the XMPP server may share the database).
VERSION_TABLE = "portal_alembic_version"


def database_url(config: Config) -> str:
    return config.portal.database or f"sqlite:///{config.state_dir / 'portal.sqlite'}"


def _sqlite_pragmas(connection: Any, record: object) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    # WAL's usual setting: a commit does not wait for fsync; a power cut may lose the last
    # commits but never corrupts the database.
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def migrate(engine: Engine) -> None:
    """``alembic upgrade head`` on ``engine``."""
    settings = AlembicConfig()
    settings.set_main_option("script_location", "vw.portal:migrations")
    with engine.begin() as connection:
        settings.attributes["connection"] = connection
        command.upgrade(settings, "head")


def open_database(url: str) -> Engine:
    """Connect to ``url`` and bring its schema up to date."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    return engine
