"""vw-turn against coturn's own clients: turnutils_stunclient for Binding, turnutils_uclient
over UDP, TCP and TLS relaying through channels and Send indications to turnutils_peer with
REST-secret credentials."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, free_port, stop, wait_for_health

SECRET = "turn-test-secret"

pytestmark = pytest.mark.skipif(shutil.which("turnutils_uclient") is None,
                                reason="Debian's coturn (turnutils) is missing")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Turn:
    port: int
    tcp_port: int
    tls_port: int
    http_port: int


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    """vw-turn on free ports; loopback peers allowed (they are denied by default)."""
    directory: Path = tmp_path_factory.mktemp("turn")
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
rfc5766_channels = true
""")
    log = open(directory / "twistd.log", "w")
    process = subprocess.Popen([BIN / "twistd", "--nodaemon", "--pidfile=", "vw-turn",
                                "--config", str(config)], cwd=directory, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_for_health(f"http://127.0.0.1:{http_port}/about/health", process)
        yield Turn(port, tcp_port, tls_port, http_port)
    finally:
        stop(process)
        log.close()


def test_binding_with_turnutils_stunclient(turn: Turn) -> None:
    result = subprocess.run(["turnutils_stunclient", "-p", str(turn.port), "127.0.0.1"],
                            capture_output=True, text=True, timeout=30)
    assert re.search(r"UDP reflexive addr: 127\.0\.0\.1:\d+", result.stdout + result.stderr)


@pytest.mark.parametrize("mode", ["channels", "send-indications"])
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_turnutils_uclient_relays(turn: Turn, transport: str, mode: str) -> None:
    options, port = {"udp": ([], turn.port), "tcp": (["-t"], turn.tcp_port),
                     "tls": (["-t", "-S"], turn.tls_port)}[transport]
    if mode == "send-indications":
        options = [*options, "-s"]
    peer_port = free_udp_port()
    peer = subprocess.Popen(["turnutils_peer", "-L", "127.0.0.1", "-p", str(peer_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = subprocess.run(
            ["turnutils_uclient", *options, "-c", "-m", "2", "-n", "100", "-l", "120",
             "-e", "127.0.0.1", "-r", str(peer_port), "-X", "-g", "-u", "vwtest",
             "-W", SECRET, "-p", str(port), "127.0.0.1"],
            capture_output=True, text=True, timeout=120)
    finally:
        peer.terminate()
        peer.wait(10)
    output = result.stdout + result.stderr
    totals = re.search(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", output, re.M)
    assert totals is not None, output[-2000:]
    assert int(totals.group(1)) == int(totals.group(2)) == 200, output[-2000:]
    assert re.search(r"Total lost packets 0 ", output), output[-2000:]


def test_a_wrong_secret_is_refused(turn: Turn) -> None:
    result = subprocess.run(
        ["turnutils_uclient", "-s", "-c", "-m", "1", "-n", "5", "-e", "127.0.0.1",
         "-r", "9", "-X", "-u", "vwtest", "-W", "not-the-secret", "-p", str(turn.port),
         "127.0.0.1"], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert "tot_recv_msgs=5" not in output
    assert re.search(r"error 401|Unauthorized|Cannot complete Allocation", output), output[-2000:]
