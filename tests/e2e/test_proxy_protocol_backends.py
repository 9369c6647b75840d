"""vw-turn and vw-xmpp behind proxies that send a PROXY header: HAProxy (send-proxy-v2) in
front of vw-turn's TCP and TLS ports, and a PROXY v1 line sent by hand to vw-xmpp. A trusted
proxy's header names the client; an untrusted one's is garbage to the protocol behind."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from tests.e2e.conftest import BIN, free_port, have, stop, wait_for_health, wait_for_port
from tests.e2e.rawxmpp import RawClient
from tests.e2e.turn_server import Turn, TurnClient, over_stream, run_turn, stream_exchange
from vw.common.proxyproto import build_v1, build_v2
from vw.stun import (
    Message,
    MessageClass,
    Method,
    XorMappedAddress,
)

#: The client's loopback address, and the one HAProxy connects to the backends from.
CLIENT, PROXY = "127.0.0.7", "127.0.0.1"
#: The client a hand-written PROXY v1 line names.
NAMED = ("203.0.113.9", 40000)
#: The one address vw-xmpp trusts as a proxy (its health checks come from 127.0.0.1).
XMPP_PROXY = "127.0.0.6"


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    yield from run_turn(tmp_path_factory.mktemp("trusting"),
                        f'trusted_proxies = ["{PROXY}/32"]\ndrain_seconds = 0')


@pytest.fixture(scope="module")
def untrusting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Turn]:
    yield from run_turn(tmp_path_factory.mktemp("untrusting"), "drain_seconds = 0")


@dataclass
class HAProxy:
    """Frontend ports: to the trusting vw-turn's TCP and TLS ports, to the untrusting one's."""

    tcp: int
    tls: int
    untrusted: int


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory, trusting: Turn,
            untrusting: Turn) -> Iterator[HAProxy]:
    if not have("haproxy"):
        pytest.skip("haproxy missing")
    ports = HAProxy(free_port(), free_port(), free_port())
    routes = [("tcp", ports.tcp, trusting.tcp_port), ("tls", ports.tls, trusting.tls_port),
              ("untrusted", ports.untrusted, untrusting.tcp_port)]
    config = tmp_path_factory.mktemp("haproxy") / "haproxy.cfg"
    config.write_text("global\n    nbthread 1\ndefaults\n    mode tcp\n    timeout connect 5s\n"
                      "    timeout client 30s\n    timeout server 30s\n" + "".join(
                          f"listen {name}\n    bind 127.0.0.1:{front}\n"
                          f"    server s 127.0.0.1:{back} send-proxy-v2 source {PROXY}\n"
                          for name, front, back in routes))
    process = subprocess.Popen(["haproxy", "-db", "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _, front, _ in routes:
        wait_for_port(front, process)
    yield ports
    stop(process)


def connect(port: int, source: str = CLIENT) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(5)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def mapped(answer: Message | None) -> str | None:
    address = answer.get(XorMappedAddress) if answer is not None else None
    return address.host if address is not None else None


def binding() -> bytes:
    return Message(Method.BINDING, MessageClass.REQUEST).bytes()


def test_a_trusted_proxy_names_the_client_to_turn_over_tcp(haproxy: HAProxy) -> None:
    with connect(haproxy.tcp) as sock:
        assert mapped(stream_exchange(sock, binding())) == CLIENT
        assert mapped(TurnClient(over_stream(sock), "proxied").allocate()) == CLIENT


def test_a_trusted_proxy_names_the_client_to_turn_over_tls(haproxy: HAProxy,
                                                           trusting: Turn) -> None:
    context = ssl.create_default_context(cafile=str(trusting.ca))
    with context.wrap_socket(connect(haproxy.tls), server_hostname="localhost") as sock:
        assert mapped(stream_exchange(sock, binding())) == CLIENT


def test_turn_does_not_believe_an_untrusted_proxy(haproxy: HAProxy) -> None:
    with connect(haproxy.untrusted) as sock:
        sock.settimeout(2)
        try:
            answer = stream_exchange(sock, binding())
        except (TimeoutError, ConnectionResetError):
            answer = None  # the header began a frame that never ends, or was refused
        assert mapped(answer) != CLIENT


def test_turn_clients_keep_their_address_and_a_trusted_peer_needs_a_header(
        trusting: Turn) -> None:
    """A direct client is not a trusted proxy; a trusted peer without a header is refused
    (a client behind it could otherwise name any address with a header of its own)."""
    with connect(trusting.tcp_port, CLIENT) as sock:
        assert mapped(stream_exchange(sock, binding())) == CLIENT
    with connect(trusting.tcp_port, PROXY) as sock:
        try:
            answer = stream_exchange(sock, binding())
        except ConnectionResetError:
            answer = None
    assert answer is None


def test_turn_closes_and_counts_a_malformed_header_from_a_trusted_proxy(trusting: Turn) -> None:
    key = 'vw_turn_refusals_total{reason="proxy_malformed"}'
    before = trusting.metrics().get(key, 0)
    with connect(trusting.tcp_port, PROXY) as sock:
        try:
            answer = stream_exchange(sock, b"PROXY TCP4 bogus\r\n" + binding())
        except ConnectionResetError:
            answer = None
    assert answer is None
    assert trusting.metrics()[key] == before + 1


@pytest.fixture(scope="module")
def xmpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, int]]:
    """vw-xmpp trusting XMPP_PROXY, and letting only NAMED ask about rooms: its state
    directory, c2s and HTTP ports."""
    directory = tmp_path_factory.mktemp("xmpp")
    c2s, http, component = free_port(), free_port(), free_port()
    config = directory / "vw.toml"
    config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
[xmpp]
c2s_port = {c2s}
http_port = {http}
component_port = {component}
trusted_proxies = ["{XMPP_PROXY}/32"]
room_queries_from = ["{NAMED[0]}/32"]
""")
    with open(directory / "twistd.log", "w") as log:
        process = subprocess.Popen(
            [BIN / "twistd", "--nodaemon", "--pidfile=", "vw-xmpp", "--config", str(config)],
            cwd=directory, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_for_port(c2s, process)
        wait_for_health(f"http://127.0.0.1:{http}/about/health", process)
        yield directory, c2s, http
    finally:
        stop(process)


def wait_for_log(directory: Path, pattern: str) -> None:
    deadline = time.monotonic() + 5
    while not re.search(pattern, (directory / "twistd.log").read_text(errors="replace")):
        assert time.monotonic() < deadline, f"no {pattern!r} in the log"
        time.sleep(0.1)


def http_get(port: int, path: str, header: bytes = b"", source: str = "127.0.0.1") -> bytes:
    """The answer to a GET from ``source`` (empty when the server closes without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5,
                                  source_address=(source, 0)) as sock:
        sock.sendall(header + f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                     .encode())
        response = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                response += chunk
    return response


def test_xmpp_http_sees_the_client_a_trusted_proxy_names(
        xmpp: tuple[Path, int, int]) -> None:
    directory, _, http = xmpp
    header = build_v1(NAMED, ("127.0.0.1", http))
    # Only NAMED may ask about rooms: 404 (no such room) for it, 403 for anyone else.
    assert http_get(http, "/about/rooms/proxied-room", header,
                    XMPP_PROXY).startswith(b"HTTP/1.1 404")
    assert http_get(http, "/about/rooms/proxied-room").startswith(b"HTTP/1.1 403")
    # An untrusted client's header is its own bytes: a bad request, not an address.
    assert not http_get(http, "/about/rooms/proxied-room", header).startswith(b"HTTP/1.1 404")
    # The trusted proxy must send a header: without one its connection is closed.
    assert http_get(http, "/about/rooms/proxied-room", source=XMPP_PROXY) == b""
    wait_for_log(directory, rf'"{re.escape(NAMED[0])}" .*"GET /about/rooms/proxied-room ')


def test_xmpp_c2s_takes_a_proxy_header_then_starttls(xmpp: tuple[Path, int, int]) -> None:
    directory, c2s, _ = xmpp
    client = RawClient(c2s, source=XMPP_PROXY)
    try:
        client.send(build_v1(NAMED, ("127.0.0.1", c2s)))
        assert "starttls" in client.open()
        client.starttls(directory / "var" / "tls" / "ca.pem")
        assert "PLAIN" in client.open()
    finally:
        client.close()


def test_xmpp_websocket_after_a_proxy_header(xmpp: tuple[Path, int, int]) -> None:
    _, _, http = xmpp
    ws = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", http), timeout=5,
                                  source_address=(XMPP_PROXY, 0)) as sock:
        sock.sendall(build_v2(NAMED, ("127.0.0.1", http)) + ws.send(
            Request(host="localhost", target="/xmpp-websocket", subprotocols=["xmpp"])))
        opened = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"
        events: list[object] = []
        while not any(isinstance(event, TextMessage) for event in events):
            data = sock.recv(65536)
            assert data, f"closed after {events}"
            ws.receive_data(data)
            for event in ws.events():
                events.append(event)
                if isinstance(event, AcceptConnection):
                    sock.sendall(ws.send(TextMessage(data=opened)))
    assert "<open" in next(e.data for e in events if isinstance(e, TextMessage))


def test_xmpp_http_refuses_a_malformed_header_from_a_trusted_proxy(
        xmpp: tuple[Path, int, int]) -> None:
    directory, _, http = xmpp
    answer = http_get(http, "/about/health", b"PROXY TCP4 not-an-address\r\n", XMPP_PROXY)
    assert answer == b""
    wait_for_log(directory, f"closing a connection from proxy {XMPP_PROXY}:.*PROXY v1")
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/about/health", timeout=5) as health:
        assert health.status == 200
