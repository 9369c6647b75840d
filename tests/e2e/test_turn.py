"""vw-turn against coturn's own clients: turnutils_stunclient for Binding, turnutils_uclient
over UDP, TCP and TLS relaying through channels and Send indications to turnutils_peer with
REST-secret credentials."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.turn_server import SECRET, Turn, free_udp_port, run_turn
from vw.turn.leases import ChannelRelay

pytestmark = pytest.mark.skipif(shutil.which("turnutils_uclient") is None,
                                reason="Debian's coturn (turnutils) is missing")


@pytest.fixture(scope="module")
def turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    """vw-turn on free ports; loopback peers allowed (they are denied by default)."""
    yield from run_turn(tmp_path_factory.mktemp("turn"),
                        "rfc5766_channels = true\ndrain_seconds = 1")


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
    sent, received = uclient_totals(output)
    # The legs to and from turnutils_peer are UDP: on a busy machine a datagram may drop
    # there (uclient does not retransmit), whatever the client's transport.
    assert sent == 200 and received >= 196, output[-2000:]


@pytest.mark.skipif(ChannelRelay is None, reason="vw.turn._channelrelay not built")
@pytest.mark.parametrize("mode", ["channels", "send-indications"])
def test_udp_media_takes_the_compiled_relay(turn: Turn, mode: str) -> None:
    before = turn.metrics()["vw_turn_compiled_relayed"]
    test_turnutils_uclient_relays(turn, "udp", mode)
    # 2 clients x 100 messages, each relayed twice: all but the first each way in C
    assert turn.metrics()["vw_turn_compiled_relayed"] - before >= 380


def test_turnutils_uclient_relays_channels_in_python(tmp_path: Path) -> None:
    """The same over UDP channels with the compiled relay turned off: the Python path."""
    for turn in run_turn(tmp_path, "rfc5766_channels = true\ncompiled_relay = false"):
        assert "vw_turn_compiled_relayed" not in turn.metrics()
        test_turnutils_uclient_relays(turn, "udp", "channels")
        assert turn.metrics()["vw_turn_to_peers"] >= 196


def uclient_totals(output: str) -> tuple[int, int]:
    totals = re.search(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$", output, re.M)
    assert totals is not None, output[-2000:]
    return int(totals.group(1)), int(totals.group(2))


@pytest.mark.parametrize("secure", [False, True])
def test_turnutils_uclient_tcp_relays_rfc6062(turn: Turn, secure: bool) -> None:
    """-T: pairs of clients with TCP allocations Connect to each other's relayed address; each
    side gets a ConnectionAttempt or a Connect answer and binds a data connection."""
    options, port = (["-S"], turn.tls_port) if secure else ([], turn.tcp_port)
    result = subprocess.run(
        ["turnutils_uclient", "-T", *options, "-m", "2", "-n", "50", "-l", "120",
         "-e", "127.0.0.1", "-X", "-g", "-u", "vwtest", "-W", SECRET, "-p", str(port),
         "127.0.0.1"], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert uclient_totals(output) == (100, 100), output[-2000:]
    assert re.search(r"Total lost packets 0 ", output), output[-2000:]
    assert turn.metrics()["vw_turn_peer_connections"] == 0


def test_a_wrong_secret_is_refused(turn: Turn) -> None:
    result = subprocess.run(
        ["turnutils_uclient", "-s", "-c", "-m", "1", "-n", "5", "-e", "127.0.0.1",
         "-r", "9", "-X", "-u", "vwtest", "-W", "not-the-secret", "-p", str(turn.port),
         "127.0.0.1"], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert "tot_recv_msgs=5" not in output
    assert re.search(r"error 401|Unauthorized|Cannot complete Allocation", output), output[-2000:]
