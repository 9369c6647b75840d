"""vw-balancer end to end: real shards (vw-xmpp) and small echo backends behind a
`twistd vw-balancer`, real clients (curl, strophe.js), HAProxy in front sending PROXY v2,
and hostile input."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, Request, TextMessage

from tests.e2e.conftest import (
    BIN,
    XMPPServerProcess,
    free_port,
    have,
    start_xmpp,
    stop,
    wait_for_health,
    wait_for_port,
)
from tests.e2e.strophe_client import run_scenario_async, strophe_available
from vw.balancer.rendezvous import choose
from vw.common import proxyproto
from vw.common.tls import ensure_material
from vw.config import Config, GeneralConfig, ShardConfig

pytestmark = pytest.mark.skipif(not have("curl"), reason="curl missing")

TOKEN = "admin-token-for-tests"
PASSWORD = "admin-password-for-tests"
#: Sources on loopback: HAProxy connects to the balancer from TRUSTED; other clients are not.
TRUSTED, CLIENT = "127.0.0.3", "127.0.0.5"
ROOMS = [f"Room-{i}" for i in range(24)]
#: Health checks that notice a dead shard at once.
QUICK_HEALTH = "health_interval = 0.2\nhealth_timeout = 1.0\nhealth_rise = 1\nhealth_fall = 1"
#: Health checks that would take an hour and 1000 failures to notice a dead shard: the window
#: in which the balancer still sends rooms to it, made long.
BLIND_HEALTH = ("health_interval = 3600.0\nhealth_timeout = 1.0\nhealth_rise = 1\n"
                "health_fall = 1000")

ECHO = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

#: The rooms it has served a request for: what it answers /about/rooms/NAME about.
hosted = set()

class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        path = urlsplit(self.path).path
        if path.startswith("/about/rooms/"):
            status = 200 if unquote(path[len("/about/rooms/"):]) in hosted else 404
        else:
            status = 200
            hosted.add(unquote(path.rsplit("/", 1)[-1]).lower())
        body = json.dumps({"name": sys.argv[1], "path": self.path,
                           "peer": self.client_address[0],
                           "headers": [[k.lower(), v] for k, v in self.headers.items()]})
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Echo).serve_forever()
"""


@dataclass
class Echo:
    name: str
    port: int
    process: subprocess.Popen


def start_echo(name: str) -> Echo:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", ECHO, name, str(port)])
    wait_for_port(port, process)
    return Echo(name, port, process)


@dataclass
class BalancerProcess:
    process: subprocess.Popen
    directory: Path
    config: Path
    http_port: int
    tls_port: int
    admin_port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def stats(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats") as r:
            return json.load(r)

    def shard_up(self, name: str) -> bool:
        return next(s["up"] for s in self.stats()["shards"] if s["name"] == name)


def balancer_config(directory: Path, shards: list[tuple[str, int]], portal: int,
                    ports: tuple[int, int, int], extra: str = "",
                    drained: frozenset[str] = frozenset(), health: str = QUICK_HEALTH) -> str:
    text = f"""
[general]
state_dir = "{directory / 'var'}"

[balancer]
http_port = {ports[0]}
tls_port = {ports[1]}
admin_port = {ports[2]}
admin_token = "{TOKEN}"
admin_password = "{PASSWORD}"
portal = "127.0.0.1:{portal}"
trusted_proxies = ["{TRUSTED}/32"]
bridges = {{ "jvb1" = "127.0.0.1:{portal}" }}
{health}
header_timeout = 1.5
{extra}
"""
    for name, port in shards:
        text += f"""
[[balancer.shards]]
name = "{name}"
address = "127.0.0.1:{port}"
drain = {"true" if name in drained else "false"}
"""
    return text


def start_balancer(directory: Path, shards: list[tuple[str, int]], portal: int,
                   extra: str = "", health: str = QUICK_HEALTH,
                   drained: frozenset[str] = frozenset()) -> BalancerProcess:
    directory.mkdir(parents=True, exist_ok=True)
    ports = (free_port(), free_port(), free_port())
    config = directory / "vw.toml"
    config.write_text(balancer_config(directory, shards, portal, ports, extra,
                                      drained=drained, health=health))
    log = open(directory / "twistd.log", "a")
    process = subprocess.Popen(
        [BIN / "twistd", "--nodaemon", "--pidfile=", "vw-balancer", "--config", str(config)],
        cwd=directory, stdout=log, stderr=subprocess.STDOUT)
    for port in ports:
        wait_for_port(port, process)
    wait_for_health(f"http://127.0.0.1:{ports[2]}/about/health", process)
    return BalancerProcess(process, directory, config, *ports)


def curl(url: str, *options: str) -> tuple[int, dict[str, str], str]:
    """Status, headers (lowercased names) and body of a curl request."""
    result = subprocess.run(["curl", "-s", "-S", "--max-time", "10", "-D", "-", *options, url],
                            capture_output=True, text=True, timeout=20)
    head, _, body = result.stdout.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1]) if lines else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def shard_of(balancer: BalancerProcess, path: str) -> str:
    status, headers, body = curl(balancer.url(path))
    assert "x-vw-shard" in headers, (status, headers, body)
    return headers["x-vw-shard"]


def raw(port: int, data: bytes, source: str = "127.0.0.1", timeout: float = 10) -> bytes:
    """Send ``data`` (and end of file) and read until the connection closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                  source_address=(source, 0)) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def keep_alive_exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send ``request`` on a kept-alive connection; the whole response (head and a body of
    Content-Length bytes), however the stream cuts it."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, (head, body)
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[XMPPServerProcess]]:
    servers = [start_xmpp(tmp_path_factory.mktemp(f"shard{i}")) for i in (1, 2)]
    yield servers
    for server in servers:
        stop(server.process)


@pytest.fixture(scope="module")
def portal() -> Iterator[Echo]:
    echo = start_echo("portal")
    yield echo
    stop(echo.process)


@pytest.fixture(scope="module")
def balancer(tmp_path_factory: pytest.TempPathFactory, shards: list[XMPPServerProcess],
             portal: Echo) -> Iterator[BalancerProcess]:
    front = start_balancer(tmp_path_factory.mktemp("balancer"),
                           [(f"s{i}", s.http_port) for i, s in enumerate(shards, 1)],
                           portal.port)
    yield front
    stop(front.process)


def test_a_room_lands_on_one_shard_whatever_its_spelling(balancer: BalancerProcess) -> None:
    placement = {}
    for room in ROOMS:
        lower = room.lower()
        quoted = "".join(f"%{ord(c):02X}" for c in room)
        found = {shard_of(balancer, path) for path in (
            f"/{room}", f"/{lower}", f"/{room.upper()}", f"/{quoted}", f"/{room}?lang=en",
            f"/xmpp-websocket?room={lower}", f"/http-bind?room={room}")}
        assert len(found) == 1, (room, found)
        placement[room] = found.pop()
    assert set(placement.values()) == {"s1", "s2"}


def test_the_shard_serves_the_meeting_page(balancer: BalancerProcess) -> None:
    status, headers, body = curl(balancer.url("/some-room"))
    assert status == 200 and headers["x-vw-shard"] in ("s1", "s2")
    assert '"room": "some-room"' in body or "some-room" in body


def test_a_second_balancer_agrees(tmp_path: Path, balancer: BalancerProcess,
                                  shards: list[XMPPServerProcess], portal: Echo) -> None:
    other = start_balancer(tmp_path / "other", [(f"s{i}", s.http_port)
                                                for i, s in enumerate(shards, 1)], portal.port)
    try:
        for room in ROOMS:
            assert shard_of(other, f"/{room}") == shard_of(balancer, f"/{room}")
    finally:
        stop(other.process)


def test_tls_with_alpn_http11(balancer: BalancerProcess) -> None:
    ca = balancer.directory / "var" / "tls" / "ca.pem"
    result = subprocess.run(
        ["curl", "-s", "-v", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_code}",
         f"https://localhost:{balancer.tls_port}/{ROOMS[0].lower()}"],
        capture_output=True, text=True, timeout=20)
    assert result.stdout == "200"
    assert re.search(r"ALPN.*accepted http/1\.1", result.stderr), result.stderr
    assert "X-VW-Shard" in result.stderr


@pytest.mark.skipif(not strophe_available(), reason="node or node_modules missing")
def test_websocket_and_bosh_clients_meet_through_the_balancer(
        balancer: BalancerProcess) -> None:
    """strophe.js over WebSocket and over BOSH, both through the balancer: they meet only if
    both land on the room's shard."""
    room = "Balanced-Meeting"

    def scenario(transport: str, nick: str, spelling: str) -> dict:
        path = "xmpp-websocket" if transport == "websocket" else "http-bind"
        scheme = "ws" if transport == "websocket" else "http"
        return {"url": f"{scheme}://127.0.0.1:{balancer.http_port}/{path}?room={spelling}",
                "transport": transport, "domain": "localhost",
                "muc": f"{room.lower()}@conference.localhost", "nick": nick, "timeout": 20,
                "wait_occupants": 2, "message": f"hello from {nick}", "expect_messages": 1}

    async def both() -> list[dict]:
        return await asyncio.gather(
            run_scenario_async(scenario("websocket", "anna", room)),
            run_scenario_async(scenario("bosh", "bert", room.upper())))

    anna, bert = asyncio.run(both())
    for result, other in ((anna, "bert"), (bert, "anna")):
        assert result["connected"] and result["joined"], result
        assert [m["body"] for m in result["messages"] if not m["self"]] == [
            f"hello from {other}"]


def echo_headers(body: str) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in json.loads(body)["headers"]:
        headers.setdefault(name, []).append(value)
    return headers


def test_a_client_cannot_choose_its_forwarded_for(balancer: BalancerProcess) -> None:
    status, _, body = curl(balancer.url("/api/v1/echo"), "-H", "X-Forwarded-For: 6.6.6.6",
                           "-H", "X-Real-IP: 6.6.6.6", "-H", "Forwarded: for=6.6.6.6",
                           "--interface", CLIENT)
    assert status == 200
    headers = echo_headers(body)
    assert headers["x-forwarded-for"] == [CLIENT]
    assert headers["x-forwarded-proto"] == ["http"]
    assert "x-real-ip" not in headers and "forwarded" not in headers


def test_colibri_websocket_paths_go_to_their_bridge(balancer: BalancerProcess) -> None:
    status, _, body = curl(balancer.url("/colibri-ws/jvb1/conference/endpoint?pwd=x"))
    assert status == 200 and json.loads(body)["path"].startswith("/colibri-ws/jvb1/")
    assert curl(balancer.url("/colibri-ws/unknown/c/e"))[0] == 503


@pytest.fixture(scope="module")
def haproxy(tmp_path_factory: pytest.TempPathFactory,
            balancer: BalancerProcess) -> Iterator[int]:
    if not have("haproxy"):
        pytest.skip("haproxy missing")
    directory = tmp_path_factory.mktemp("haproxy")
    port = free_port()
    config = directory / "haproxy.cfg"
    config.write_text(f"""
global
    nbthread 1
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend front
    bind 127.0.0.1:{port}
    default_backend balancer
backend balancer
    server b1 127.0.0.1:{balancer.http_port} send-proxy-v2 source {TRUSTED}
""")
    process = subprocess.Popen(["haproxy", "-db", "-f", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    yield port
    stop(process)


def test_behind_haproxy_the_backend_sees_the_client_address(haproxy: int) -> None:
    status, headers, body = curl(f"http://127.0.0.1:{haproxy}/api/v1/echo", "--interface",
                                 CLIENT, "-H", "X-Forwarded-For: 6.6.6.6")
    assert status == 200
    seen = echo_headers(body)
    assert seen["x-forwarded-for"] == [CLIENT]
    status, headers, _ = curl(f"http://127.0.0.1:{haproxy}/{ROOMS[0].lower()}",
                              "--interface", CLIENT)
    assert status == 200 and headers["x-vw-shard"] in ("s1", "s2")


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 80\r\n",
    proxyproto.build_v2(("203.0.113.9", 1234), ("127.0.0.1", 80)),
])
def test_an_untrusted_client_cannot_send_a_proxy_header(balancer: BalancerProcess,
                                                        header: bytes) -> None:
    response = raw(balancer.http_port, header + b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n",
                   source=CLIENT)
    assert response.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("header", [
    b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 80 " + b"9" * 100 + b"\r\n",   # over 107 bytes
    proxyproto.V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),              # v2 too short
    proxyproto.V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),             # v2 IPv6 in 12
])
def test_a_malformed_proxy_header_from_a_trusted_peer_is_refused(
        balancer: BalancerProcess, header: bytes) -> None:
    response = raw(balancer.http_port, header + b"GET /api/x HTTP/1.1\r\nHost: a\r\n\r\n",
                   source=TRUSTED)
    assert response.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("path", [
    "/a%2Fb", "/a%2fb", "/../../etc/passwd", "/x/%2e%2e/y", "/" + "r" * 300, "/room%00",
    "/xmpp-websocket?room=a%00b", "/xmpp-websocket?room=" + "x" * 300,
    "/xmpp-websocket?room=a%2F..%2Fb", "/http-bind?room=a&room=b",
])
def test_hostile_room_names_are_refused(balancer: BalancerProcess, path: str) -> None:
    status, headers, _ = curl(balancer.url(path), "--path-as-is")
    assert status == 400 and "x-vw-shard" not in headers


def test_slowloris_is_cut_off(balancer: BalancerProcess) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", balancer.http_port), timeout=10) as sock:
        sock.sendall(b"GET /room HTTP/1.1\r\n")
        for _ in range(10):
            # One header line every 0.3 s, until the balancer answers (sending after it
            # closed would reset the connection and lose its answer).
            if select.select([sock], [], [], 0.3)[0]:
                break
            sock.sendall(b"X-A: b\r\n")
        response = sock.recv(65536)
    assert response.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < 5


def test_an_oversized_head_is_refused(balancer: BalancerProcess) -> None:
    status, _, _ = curl(balancer.url("/room"), "-H", "X-Big: " + "a" * 20000)
    assert status == 431
    many = [arg for i in range(120) for arg in ("-H", f"X-{i}: v")]
    assert curl(balancer.url("/room"), *many)[0] == 431


def test_smuggling_attempts_are_refused(balancer: BalancerProcess) -> None:
    response = raw(balancer.http_port, b"POST /api/x HTTP/1.1\r\nHost: a\r\n"
                   b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400")
    response = raw(balancer.http_port, b"POST /api/x HTTP/1.1\r\nHost: a\r\n"
                   b"Transfer-Encoding: chunked\r\n \r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400")


def admin(balancer: BalancerProcess, path: str, method: str = "GET",
          authorization: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{balancer.admin_port}{path}",
                                     method=method)
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("authorization", [
    None, "Bearer wrong", f"Bearer {TOKEN}x", basic("admin", "wrong"),
    basic("root", PASSWORD), "Basic !!!", f"Token {TOKEN}",
])
def test_the_admin_api_needs_credentials(balancer: BalancerProcess,
                                         authorization: str | None) -> None:
    assert admin(balancer, "/admin/shards", authorization=authorization)[0] == 401
    assert admin(balancer, "/admin/shards/s1/drain", "POST", authorization)[0] == 401
    assert not any(s["drain"] for s in balancer.stats()["shards"])


def test_the_admin_api_lists_shards_with_either_credential(balancer: BalancerProcess) -> None:
    for authorization in (f"Bearer {TOKEN}", basic("admin", PASSWORD)):
        status, body = admin(balancer, "/admin/shards", authorization=authorization)
        assert status == 200 and [s["name"] for s in json.loads(body)] == ["s1", "s2"]


def test_stats_and_metrics(balancer: BalancerProcess) -> None:
    stats = balancer.stats()
    assert stats["requests"] > 0 and stats["routed"]["s1"] > 0
    with urllib.request.urlopen(f"http://127.0.0.1:{balancer.admin_port}/metrics") as r:
        text = r.read().decode()
    assert 'vw_balancer_shard_up{shard="s1"} 1.0' in text
    assert "vw_balancer_requests_total" in text
    assert curl(balancer.url("/about/health"))[0] == 200


# --- drain, reload, dead shards: echo shards, cheaper to kill ---------------------------


@pytest.fixture
def echo_front(tmp_path: Path, portal: Echo) -> Iterator[tuple[BalancerProcess, list[Echo]]]:
    echoes = [start_echo(f"e{i}") for i in (1, 2, 3)]
    front = start_balancer(tmp_path / "front", [(e.name, e.port) for e in echoes], portal.port)
    yield front, echoes
    stop(front.process)
    for echo in echoes:
        stop(echo.process)


def placement(front: BalancerProcess, rooms: list[str]) -> dict[str, str]:
    return {room: shard_of(front, f"/{room}") for room in rooms}


def test_draining_keeps_its_rooms_and_gets_no_new_ones(
        echo_front: tuple[BalancerProcess, list[Echo]]) -> None:
    front, _ = echo_front
    before = placement(front, ROOMS)
    assert set(before.values()) == {"e1", "e2", "e3"}
    status, _ = admin(front, "/admin/shards/e1/drain", "POST", f"Bearer {TOKEN}")
    assert status == 200
    assert placement(front, ROOMS) == before
    new = placement(front, [f"new-{i}" for i in range(24)])
    assert "e1" not in new.values() and set(new.values()) == {"e2", "e3"}
    admin(front, "/admin/shards/e1/undrain", "POST", basic("admin", PASSWORD))
    assert "e1" in placement(front, [f"new-{i}" for i in range(24)]).values()


def test_another_balancer_keeps_a_draining_shards_rooms_it_never_saw(
        tmp_path: Path, echo_front: tuple[BalancerProcess, list[Echo]], portal: Echo) -> None:
    """A second instance that starts with e1 draining has seen none of e1's rooms: it asks
    e1 (GET /about/rooms/NAME) and sends the rooms e1 hosts there, and new rooms elsewhere."""
    front, echoes = echo_front
    before = placement(front, ROOMS)
    on_e1 = [room for room, shard in before.items() if shard == "e1"]
    assert on_e1
    other = start_balancer(tmp_path / "other", [(e.name, e.port) for e in echoes],
                           portal.port, drained=frozenset(["e1"]))
    try:
        assert placement(other, ROOMS) == before
        new = placement(other, [f"fresh-{i}" for i in range(24)])
        assert "e1" not in new.values() and set(new.values()) == {"e2", "e3"}
        asked = other.stats()["drain_queries"]["e1"]
        assert asked >= len(on_e1)
        assert placement(other, ROOMS) == before  # answers are remembered: no new questions
        assert other.stats()["drain_queries"]["e1"] == asked
    finally:
        stop(other.process)


def test_sighup_reloads_drain_flags_without_dropping_connections(
        echo_front: tuple[BalancerProcess, list[Echo]], portal: Echo) -> None:
    front, echoes = echo_front
    before = placement(front, ROOMS)
    with socket.create_connection(("127.0.0.1", front.http_port), timeout=10) as sock:
        kept = b"GET /kept HTTP/1.1\r\nHost: a\r\n\r\n"
        assert keep_alive_exchange(sock, kept).startswith(b"HTTP/1.1 200")
        front.config.write_text(balancer_config(
            front.directory, [(e.name, e.port) for e in echoes], portal.port,
            (front.http_port, front.tls_port, front.admin_port), drained=frozenset(["e2"])))
        front.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not next(s["drain"] for s in front.stats()["shards"] if s["name"] == "e2"):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert keep_alive_exchange(sock, kept).startswith(b"HTTP/1.1 200")
    assert placement(front, ROOMS) == before
    assert "e2" not in placement(front, [f"fresh-{i}" for i in range(24)]).values()


def test_killing_a_shard_moves_only_its_rooms(
        echo_front: tuple[BalancerProcess, list[Echo]]) -> None:
    front, echoes = echo_front
    before = placement(front, ROOMS)
    stop(echoes[2].process)
    deadline = time.monotonic() + 10
    while front.shard_up("e3"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    after = placement(front, ROOMS)
    moved = {room for room in ROOMS if before[room] != after[room]}
    assert moved == {room for room in ROOMS if before[room] == "e3"} and moved
    assert "e3" not in after.values()


# --- shards that refuse connections while the health checks still believe in them ------


OPEN = '<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" to="localhost" version="1.0"/>'


def xmpp_websocket_open(port: int, room: str) -> tuple[str, str]:
    """Open an XMPP WebSocket stream for ``room`` through the balancer: the shard that
    accepted the upgrade, and the shard's first frame."""
    ws = WSConnection(ConnectionType.CLIENT)
    shard = ""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(ws.send(Request(host="localhost", target=f"/xmpp-websocket?room={room}",
                                     subprotocols=["xmpp"])))
        while data := sock.recv(65536):
            ws.receive_data(data)
            for event in ws.events():
                assert not isinstance(event, RejectConnection), event
                if isinstance(event, AcceptConnection):
                    shard = dict(event.extra_headers)[b"x-vw-shard"].decode()
                    sock.sendall(ws.send(TextMessage(OPEN)))
                elif isinstance(event, TextMessage):
                    return shard, event.data
    raise AssertionError("the connection closed")


def test_rooms_of_a_refusing_shard_are_retried_on_the_next_shard(
        tmp_path: Path, shards: list[XMPPServerProcess], portal: Echo) -> None:
    front = start_balancer(tmp_path / "front", [("live", shards[0].http_port),
                                                ("dead", free_port())],
                           portal.port, health=BLIND_HEALTH)
    try:
        rooms = [room.lower() for room in ROOMS]
        doomed = [room for room in rooms if choose(room, [
            ShardConfig("live", ""), ShardConfig("dead", "")]).name == "dead"]
        assert doomed
        for room in rooms:
            status, headers, body = curl(front.url(f"/{room}"))
            assert (status, headers.get("x-vw-shard")) == (200, "live"), (room, body)
        upgraded = doomed[:3]
        for room in upgraded:
            shard, frame = xmpp_websocket_open(front.http_port, room)
            assert shard == "live" and frame.startswith("<open"), frame
        retried = len(doomed) + len(upgraded)
        stats = front.stats()
        assert stats["retries"] == stats["backend_failures"] == {"dead": retried}
        assert stats["routed"]["dead"] == retried and "503" not in stats["refused"]
        assert front.shard_up("dead")
        with urllib.request.urlopen(f"http://127.0.0.1:{front.admin_port}/metrics") as r:
            assert f'vw_balancer_retries_total{{backend="dead"}} {retried}.0' in r.read().decode()
    finally:
        stop(front.process)


def test_with_every_shard_refusing_the_client_gets_503_after_the_retries(
        tmp_path: Path, portal: Echo) -> None:
    front = start_balancer(tmp_path / "front", [("d1", free_port()), ("d2", free_port())],
                           portal.port, health=BLIND_HEALTH)
    try:
        status, headers, body = curl(front.url("/some-room"))
        assert status == 503 and "unreachable" in body
        stats = front.stats()
        assert stats["backend_failures"] == {"d1": 1, "d2": 1}
        assert sum(stats["retries"].values()) == 1 and stats["refused"]["503"] == 1
        assert front.shard_up("d1") and front.shard_up("d2")
    finally:
        stop(front.process)


@pytest.fixture(scope="module")
def example_haproxy(tmp_path_factory: pytest.TempPathFactory, shards: list[XMPPServerProcess],
                    portal: Echo) -> Iterator[int]:
    """etc/haproxy.cfg with this machine's ports, certificate and shards."""
    if not have("haproxy"):
        pytest.skip("haproxy missing")
    directory = tmp_path_factory.mktemp("example")
    config = dataclasses.replace(Config(), general=GeneralConfig(state_dir=str(directory)))
    material = ensure_material(config)
    pem = directory / "balancer.pem"
    pem.write_bytes(material.certificate.read_bytes() + material.key.read_bytes())
    http, tls, stats = free_port(), free_port(), free_port()
    text = (Path(__file__).parents[2] / "etc" / "haproxy.cfg").read_text()
    for old, new in [("/etc/vw/balancer.pem", str(pem)),
                     ("/run/haproxy/admin.sock", str(directory / "admin.sock")),
                     (":8443", f"127.0.0.1:{tls}"), ("bind :8080", f"bind 127.0.0.1:{http}"),
                     ("127.0.0.1:8081", f"127.0.0.1:{stats}"),
                     ("10.0.0.11:5280", f"127.0.0.1:{shards[0].http_port}"),
                     ("10.0.0.12:5280", f"127.0.0.1:{shards[1].http_port}"),
                     ("10.0.0.21:9090", f"127.0.0.1:{portal.port}"),
                     ("10.0.0.31:8000", f"127.0.0.1:{portal.port}"),
                     ("bind :5222", f"bind 127.0.0.1:{free_port()}"),
                     ("10.0.0.11:5222", f"127.0.0.1:{shards[0].c2s_port}"),
                     ("10.0.0.12:5222", f"127.0.0.1:{shards[1].c2s_port}")]:
        assert old in text
        text = text.replace(old, new)
    (directory / "haproxy.cfg").write_text(text)
    check = subprocess.run(["haproxy", "-c", "-f", str(directory / "haproxy.cfg")],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    log = open(directory / "haproxy.log", "w")
    process = subprocess.Popen(["haproxy", "-db", "-f", str(directory / "haproxy.cfg")],
                               stdout=log, stderr=subprocess.STDOUT)
    wait_for_port(http, process)
    time.sleep(0.5)  # the first health checks
    yield http
    stop(process)


def test_the_example_haproxy_config_routes_alike(example_haproxy: int) -> None:
    def shard(path: str) -> str:
        status, headers, body = curl(f"http://127.0.0.1:{example_haproxy}{path}")
        return headers.get("x-vw-shard", "")

    placement = {}
    for room in ROOMS:
        found = {shard(path) for path in (f"/{room}", f"/{room.lower()}",
                                          f"/xmpp-websocket?room={room.upper()}",
                                          f"/http-bind?room={room}")}
        assert len(found) == 1, (room, found)
        placement[room] = found.pop()
    assert set(placement.values()) == {"s1", "s2"}
    for path in ("/a%2Fb", "/../x", "/" + "r" * 300, "/room%00",
                 "/http-bind?room=a&room=b"):
        assert curl(f"http://127.0.0.1:{example_haproxy}{path}", "--path-as-is")[0] == 400
    status, _, body = curl(f"http://127.0.0.1:{example_haproxy}/api/v1/echo",
                           "-H", "X-Forwarded-For: 6.6.6.6", "--interface", CLIENT)
    assert status == 200 and echo_headers(body)["x-forwarded-for"] == [CLIENT]


def test_a_shard_says_whether_it_hosts_a_room(shards: list[XMPPServerProcess]) -> None:
    """What the balancer asks a draining shard (the rooms with occupants answer 200)."""
    status, _, body = curl(f"http://127.0.0.1:{shards[0].http_port}/about/rooms/nobody-here")
    assert status == 404 and json.loads(body) == {"error": "no such room"}
