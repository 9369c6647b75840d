"""A ``twistd vw-turn`` process on free loopback ports, and a STUN client with its REST
credentials, for the TURN end-to-end tests."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import BIN, free_port, stop, wait_for_health
from vw.stun import (
    TRANSPORT_UDP,
    Attribute,
    ErrorCode,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    RequestedTransport,
    Username,
    long_term_key,
)
from vw.turn.auth import rest_password

#: The TURN REST shared secret (coturn's ``static-auth-secret``) of the test server.
SECRET = "turn-test-secret"


def free_udp_port() -> int:
    return free_port(socket.SOCK_DGRAM)


def stream_exchange(sock: socket.socket, request: bytes) -> Message | None:
    """Send a STUN request over a stream; its answer, or None if the server closes first."""
    sock.sendall(request)
    data = b""
    while len(data) < 20 or len(data) < 20 + int.from_bytes(data[2:4], "big"):
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
    return Message.parse(data)


def over_udp(sock: socket.socket, server: tuple[str, int]) -> Callable[[bytes], Message]:
    """Requests to ``server`` from the UDP socket ``sock``, one answer each."""
    def exchange(data: bytes) -> Message:
        sock.sendto(data, server)
        return Message.parse(sock.recv(2048))
    return exchange


def over_stream(sock: socket.socket) -> Callable[[bytes], Message | None]:
    """Requests on the TCP or TLS connection ``sock``."""
    return lambda data: stream_exchange(sock, data)


class TurnClient:
    """A client with REST credentials under :data:`SECRET`: the first request, an Allocate
    without them, learns REALM and NONCE from its 401."""

    def __init__(self, exchange: Callable[[bytes], Message | None], name: str) -> None:
        self.exchange = exchange
        self.user = f"{int(time.time()) + 3600}:{name}"
        challenge = exchange(Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[
            RequestedTransport(TRANSPORT_UDP)]).bytes())
        assert challenge is not None
        code = challenge.get(ErrorCode)
        assert code is not None and code.code == 401
        self.realm, self.nonce = challenge.get(Realm), challenge.get(Nonce)
        assert self.realm is not None and self.nonce is not None
        self.key = long_term_key(self.user, self.realm.value, rest_password(SECRET, self.user))

    def answer(self, method: int, *attributes: Attribute) -> Message:
        """A signed request's answer."""
        message = Message(method, MessageClass.REQUEST, attributes=[
            *attributes, Username(self.user), self.realm, self.nonce])
        reply = self.exchange(message.bytes(self.key, fingerprint=True))
        assert reply is not None
        return reply

    def request(self, method: int, *attributes: Attribute) -> Message:
        """A signed request's answer, which must be a success."""
        reply = self.answer(method, *attributes)
        assert reply.message_class is MessageClass.SUCCESS, reply.get(ErrorCode)
        return reply

    def allocate(self) -> Message:
        return self.request(Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))


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


def run_turn(directory: Path, extra: str = "", bind: str = "127.0.0.1") -> Iterator[Turn]:
    """vw-turn on free ports of ``bind`` in ``directory``; loopback peers allowed (they are
    denied by default); ``extra`` is more TOML for the ``[turn]`` table."""
    port, tcp_port, tls_port, http_port = free_udp_port(), free_port(), free_port(), free_port()
    config = directory / "vw.toml"
    config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
bind = "{bind}"
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


@contextlib.contextmanager
def turn_running(directory: Path, extra: str = "", bind: str = "127.0.0.1") -> Iterator[Turn]:
    """:func:`run_turn` for a ``with`` block."""
    yield from run_turn(directory, extra, bind)
