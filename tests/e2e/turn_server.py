"""A ``twistd vw-turn`` process on free loopback ports, for the TURN end-to-end tests."""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import BIN, free_port, stop, wait_for_health

#: The TURN REST shared secret (coturn's ``static-auth-secret``) of the test server.
SECRET = "turn-test-secret"


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


@dataclass
class Turn:
    port: int
    tcp_port: int
    tls_port: int
    http_port: int
    directory: Path
    process: subprocess.Popen

    @property
    def ca(self) -> Path:
        """The generated CA that signed the TLS port's certificate."""
        return self.directory / "var" / "tls" / "ca.pem"

    def metrics(self) -> dict[str, float]:
        """The ``vw_turn_*`` samples of ``/metrics``, by name."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples = {}
        for line in text.splitlines():
            if line.startswith("vw_turn_"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def log(self) -> str:
        return (self.directory / "twistd.log").read_text(errors="replace")


def run_turn(directory: Path, extra: str = "") -> Iterator[Turn]:
    """vw-turn on free ports in ``directory``; loopback peers allowed (they are denied by
    default); ``extra`` is more TOML for the ``[turn]`` table."""
    port, tcp_port, tls_port, http_port = free_udp_port(), free_port(), free_port(), free_port()
    config = directory / "vw.toml"
    config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
[xmpp.turn]
secret = "{SECRET}"
[turn]
udp_port = {port}
tcp_port = {tcp_port}
tls_port = {tls_port}
http_port = {http_port}
allowed_peers = ["127.0.0.1/32"]
{extra}
""")
    log = open(directory / "twistd.log", "w")
    process = subprocess.Popen([BIN / "twistd", "--nodaemon", "--pidfile=", "vw-turn",
                                "--config", str(config)], cwd=directory, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_for_health(f"http://127.0.0.1:{http_port}/about/health", process)
        yield Turn(port, tcp_port, tls_port, http_port, directory, process)
    finally:
        stop(process)
        log.close()
