from __future__ import annotations

import shutil
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from tests.portal.helpers import Portal, make_portal
from tests.portal.postgresql import Cluster, installed
from vw.portal.database import open_database
from vw.portal.store import Store

TEMPLATE = "vw_template"
_names = count()


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database file migrated once, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "portal.sqlite"
    open_database(f"sqlite:///{path}").dispose()
    return path


@pytest.fixture(scope="session")
def postgresql() -> Iterator[Cluster]:
    """A PostgreSQL server of the tests' own, with a migrated template database."""
    if not installed():
        pytest.skip("PostgreSQL's server is not installed (Debian package postgresql)")
    cluster = Cluster()
    try:
        cluster.execute(f"CREATE DATABASE {TEMPLATE}")
        open_database(cluster.url(TEMPLATE)).dispose()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test of the store runs on SQLite and on PostgreSQL."""
    return str(request.param)


def _database(request: pytest.FixtureRequest, backend: str, path: Path,
              template: Path | None) -> Iterator[str]:
    """A database of one test's own: a copy of ``template`` or empty."""
    if backend == "sqlite":
        if template is not None:
            shutil.copy(template, path)
        yield f"sqlite:///{path}"
        return
    cluster: Cluster = request.getfixturevalue("postgresql")
    name = f"vw_test_{next(_names)}"
    cluster.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}" if template else ""))
    yield cluster.url(name)
    cluster.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path,
                 migrated: Path) -> Iterator[str]:
    """A migrated database for one test."""
    yield from _database(request, backend, tmp_path / "portal.sqlite", migrated)


@pytest.fixture
def empty_database_url(request: pytest.FixtureRequest, backend: str,
                       tmp_path: Path) -> Iterator[str]:
    """An empty database (no tables) for one test."""
    yield from _database(request, backend, tmp_path / "empty.sqlite", None)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    engine = open_database(database_url)
    yield Store(engine)
    engine.dispose()


@pytest.fixture
def portal(store: Store, tmp_path: Path) -> Portal:
    return make_portal(store, tmp_path)
