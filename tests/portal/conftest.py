from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.portal.helpers import Portal, make_portal
from vw.portal.database import open_database
from vw.portal.store import Store


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file migrated once, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "portal.sqlite"
    open_database(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture
def store(tmp_path: Path, migrated: Path) -> Iterator[Store]:
    path = tmp_path / "portal.sqlite"
    shutil.copy(migrated, path)
    engine = open_database(f"sqlite:///{path}")
    yield Store(engine)
    engine.dispose()


@pytest.fixture
def portal(store: Store, tmp_path: Path) -> Portal:
    return make_portal(store, tmp_path)
