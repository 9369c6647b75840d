"""schemathesis against /api/v1/openapi.json of a real ``twistd vw-portal`` on loopback: for
every operation, generated requests (with an administrator's bearer token) get no 5xx and no
answer that breaks the document's schemas."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.conftest import BIN, free_port, stop, wait_for_health
from tests.portal.helpers import PASSWORD
from tests.portal.postgresql import Cluster
from vw.portal.database import open_database
from vw.portal.openapi import DOCUMENT
from vw.portal.passwords import Passwords
from vw.portal.store import Store

#: Generated requests per operation and phase: enough to find the usual 5xx, and the whole
#: run stays well under a minute.
MAX_EXAMPLES = 20
ADMIN = "admin@example.org"
#: Every operation the document names, as schemathesis keys them, and each way to call it:
#: with valid requests, and (where it takes any input) invalid ones.
CALLS = [pytest.param(method.upper(), path, mode, id=f"{method.upper()} {path} {mode.value}")
         for path, item in DOCUMENT["paths"].items() for method, operation in item.items()
         for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode is GenerationMode.POSITIVE or "parameters" in operation
         or "requestBody" in operation or operation.get("security") != []]


@dataclass
class RunningPortal:
    process: subprocess.Popen[bytes]
    directory: Path
    base: str
    token: str

    def log_tail(self) -> str:
        return (self.directory / "twistd.log").read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def running_portal(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPortal]:
    """``twistd vw-portal`` on a free port and on each database, with an administrator and
    a token of theirs."""
    directory = tmp_path_factory.mktemp("schemathesis")
    (directory / "var").mkdir()
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'var' / 'portal.sqlite'}"
    else:
        cluster: Cluster = request.getfixturevalue("postgresql")
        cluster.execute("CREATE DATABASE vw_schemathesis")
        url = cluster.url("vw_schemathesis")
    port = free_port()
    config = directory / "vw.toml"
    config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
[portal]
http_port = {port}
public_url = "http://127.0.0.1:{port}"
database = "{url}"
""")
    engine = open_database(url)
    Store(engine).create_user(ADMIN, "Admin", Passwords().hash(PASSWORD), "admin",
                              datetime.now(UTC))
    engine.dispose()
    with open(directory / "twistd.log", "wb") as log:
        process = subprocess.Popen([BIN / "twistd", "--nodaemon", "--pidfile=", "vw-portal",
                                    "--config", str(config)], cwd=directory, stdout=log,
                                   stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(f"{base}/about/health", process)
        request = urllib.request.Request(
            f"{base}/api/v1/auth/token", method="POST",
            data=json.dumps({"email": ADMIN, "password": PASSWORD}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            token = json.load(response)["access_token"]
        yield RunningPortal(process, directory, base, token)
    finally:
        stop(process)


@pytest.fixture(scope="module")
def api_schema(running_portal: RunningPortal) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{running_portal.base}/api/v1/openapi.json")


@pytest.mark.parametrize("method, path, mode", CALLS)
def test_the_api_answers_as_its_document_says(
        api_schema: schemathesis.BaseSchema, running_portal: RunningPortal, method: str,
        path: str, mode: GenerationMode) -> None:
    """Valid requests (positive) and invalid ones (negative) for one operation."""
    bearer = {"Authorization": f"Bearer {running_portal.token}"}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=api_schema[path][method].as_strategy(mode))
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=bearer,
                               checks=[not_a_server_error, response_schema_conformance])

    try:
        call()
    except BaseException:
        print(running_portal.log_tail())
        raise
