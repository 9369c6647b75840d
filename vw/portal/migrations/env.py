"""Alembic environment: runs on the connection :func:`vw.portal.database.migrate` passes in."""

from alembic import context

from vw.portal.database import VERSION_TABLE
from vw.portal.schema import metadata

context.configure(connection=context.config.attributes["connection"],
                  target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
