"""Alembic migrations of the portal's schema, run by :func:`vw.portal.database.open_database`."""
