"""A throwaway PostgreSQL cluster for the tests: Debian's server binaries, run as the
``postgres`` user when the tests run as root (PostgreSQL refuses root), listening on a unix
socket in a temporary directory only."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

#: Debian installs each major version's server under /usr/lib/postgresql/VERSION/bin.
SERVERS = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


def installed() -> bool:
    return bool(SERVERS)


class Cluster:
    """One cluster in a temporary directory; its databases are named by the tests."""

    def __init__(self) -> None:
        self.bin = SERVERS[-1].parent
        self.directory = Path(tempfile.mkdtemp(prefix="vw-postgresql-"))
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.data = self.directory / "data"
        self._server("initdb", "--pgdata", str(self.data), "--auth", "trust",
                     "--username", "postgres", "--encoding", "UTF8", "--no-sync")
        # No TCP listener; fsync off: a test cluster need not survive a power cut.
        options = f"-k {self.directory} -c listen_addresses= -F"
        self._server("pg_ctl", "--pgdata", str(self.data), "--log",
                     str(self.directory / "server.log"), "--options", options, "--wait",
                     "start")

    def _server(self, program: str, *args: str) -> None:
        subprocess.run([*self.as_owner, str(self.bin / program), *args], check=True,
                       capture_output=True, cwd=self.directory)

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (psycopg 3) of ``database``."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.directory}"

    def execute(self, statement: str) -> None:
        """Run ``statement`` outside a transaction (CREATE and DROP DATABASE need that)."""
        with psycopg.connect(host=str(self.directory), user="postgres", dbname="postgres",
                             autocommit=True) as connection:
            connection.execute(statement)

    def stop(self) -> None:
        self._server("pg_ctl", "--pgdata", str(self.data), "--mode", "immediate", "stop")
        shutil.rmtree(self.directory)
