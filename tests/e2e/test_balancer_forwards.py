"""vw-balancer's plain TCP pass-through listeners ([[balancer.forwards]]) end to end: a real
`twistd vw-balancer` in front of TCP servers run by the test, plain sockets as clients."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, stop
from tests.e2e.test_balancer import TRUSTED, BalancerProcess, Echo, start_balancer, start_echo
from vw.balancer.passthrough import target_order
from vw.common import proxyproto
from vw.config import ForwardConfig


class Target(socketserver.ThreadingTCPServer):
    """Echoes what it gets; says ``bye:NAME`` and closes when the client has sent all."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str) -> None:
        self.name = name
        #: The bytes each connection brought, in order of arrival.
        self.received: list[bytes] = []
        super().__init__(("127.0.0.1", free_port()), TargetHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class TargetHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: Target = self.server  # type: ignore[assignment]
        got = bytearray()
        while data := self.request.recv(65536):
            got += data
            self.request.sendall(data)
        server.received.append(bytes(got))
        self.request.sendall(b"bye:" + server.name.encode())
        self.request.shutdown(socket.SHUT_WR)


def eventually(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def exchange(port: int, payload: bytes, source: str = "127.0.0.1") -> bytes:
    """Send ``payload``, end the sending side, and read until the other side closes (a
    reset reads as the end)."""
    with socket.socket() as client:
        client.settimeout(10)
        client.bind((source, 0))
        client.connect(("127.0.0.1", port))
        def send() -> None:
            with contextlib.suppress(OSError):  # refused: reset before all was sent
                client.sendall(payload)
                client.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        answer = bytearray()
        try:
            while data := client.recv(65536):
                answer += data
        except ConnectionResetError:
            pass
        sender.join()
        return bytes(answer)


def dead_first(live: str) -> str:
    """A closed port that 127.0.0.1's clients try before ``live``."""
    while True:
        dead = f"127.0.0.1:{free_port()}"
        if target_order(ForwardConfig(targets=[live, dead]), "127.0.0.1")[0] == dead:
            return dead


@pytest.fixture(scope="module")
def shard() -> Iterator[Echo]:
    """A healthy shard: the balancer reports itself healthy only with one."""
    echo = start_echo("s1")
    yield echo
    stop(echo.process)


@pytest.fixture
def targets() -> Iterator[tuple[Target, Target]]:
    made = (Target("one"), Target("two"))
    yield made
    for target in made:
        target.shutdown()
        target.server_close()


def forwards_config(forwards: list[tuple[str, int, list[str], int]]) -> str:
    return "".join(f"""
[[balancer.forwards]]
name = "{name}"
port = {port}
targets = {targets!r}
proxy_protocol = {version}
""".replace("'", '"') for name, port, targets, version in forwards)


Start = Callable[[list[tuple[str, int, list[str], int]]], BalancerProcess]


@pytest.fixture
def start(tmp_path: Path, shard: Echo) -> Iterator[Start]:
    """Starts a balancer with forwards (name, port, targets, PROXY version); stops it."""
    started: list[BalancerProcess] = []

    def run(forwards: list[tuple[str, int, list[str], int]]) -> BalancerProcess:
        # Every port is bound before the health check answers: no probe connection needed.
        started.append(start_balancer(tmp_path / str(len(started)), [("s1", shard.port)],
                                      shard.port, extra=forwards_config(forwards)))
        return started[-1]

    yield run
    for balancer in started:
        stop(balancer.process)


def test_bytes_go_both_ways_unparsed_with_half_close(
        start: Start, targets: tuple[Target, Target]) -> None:
    one, _ = targets
    port = free_port()
    balancer = start([("raw", port, [one.address], 0)])
    payload = os.urandom(3 << 20)
    assert exchange(port, payload) == payload + b"bye:one"
    eventually(lambda: len(one.received) == 1)
    assert one.received == [payload]  # nothing added before it: no PROXY header
    eventually(lambda: balancer.stats()["active"] == 0)  # both sides closed
    assert balancer.stats()["forwarded"] == {"raw": 1}


def test_a_failed_target_is_skipped_and_the_target_learns_the_client_from_proxy_v2(
        start: Start, targets: tuple[Target, Target]) -> None:
    one, _ = targets
    port = free_port()
    dead = dead_first(one.address)
    balancer = start([("c2s", port, [one.address, dead], 2)])
    answer = exchange(port, b"<stream>")
    eventually(lambda: len(one.received) == 1)
    assert answer == one.received[0] + b"bye:one"
    header = proxyproto.parse(one.received[0])
    assert header is not None and header.source is not None
    assert header.source[0] == "127.0.0.1" and header.destination == ("127.0.0.1", port)
    assert one.received[0][header.length:] == b"<stream>"
    assert balancer.stats()["backend_failures"] == {f"c2s:{dead}": 1}


def test_a_trusted_proxy_names_the_client_and_a_bad_header_is_refused(
        start: Start, targets: tuple[Target, Target]) -> None:
    one, _ = targets
    port = free_port()
    balancer = start([("turn", port, [one.address], 1)])
    header = proxyproto.build_v1(("203.0.113.5", 4242), ("198.51.100.1", 443))
    answer = exchange(port, header + b"hello", source=TRUSTED)
    eventually(lambda: len(one.received) == 1)
    assert one.received[0] == header + b"hello"  # the client and where it connected
    assert answer == one.received[0] + b"bye:one"
    # Untrusted: the same bytes are the client's own, passed on after its own header.
    exchange(port, header + b"x")
    eventually(lambda: len(one.received) == 2)
    mine = proxyproto.parse(one.received[1])
    assert mine is not None and mine.source is not None and mine.source[0] == "127.0.0.1"
    assert one.received[1][mine.length:] == header + b"x"
    # Trusted, but not a header: refused without reaching a target.
    assert exchange(port, b"PROXY nonsense\r\n", source=TRUSTED) == b""
    assert balancer.stats()["refused"].get("proxy_header") == 1
    assert len(one.received) == 2


def test_sighup_gives_a_forward_new_targets(
        start: Start, targets: tuple[Target, Target]) -> None:
    one, two = targets
    port = free_port()
    balancer = start([("raw", port, [one.address], 0)])
    assert exchange(port, b"a") == b"abye:one"
    text = balancer.config.read_text().replace(one.address, two.address)
    balancer.config.write_text(text)
    balancer.process.send_signal(signal.SIGHUP)
    eventually(lambda: exchange(port, b"b").endswith(b"bye:two"))
