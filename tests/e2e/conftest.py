"""Fixtures that run real vw servers as subprocesses, as an operator would."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
TOKEN_SECRET = "test-app-secret-which-is-long-enough"
TOKEN_APP = "vwtest"


def _candidate_ports() -> range:
    """Ports outside the kernel's ephemeral range: no outgoing connection takes one of them
    between the moment a test chooses it and the moment its server binds it."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(10000, low) if low > 12000 else range(high + 1, 65536)


#: Ports handed out already (their servers may not have bound them yet).
_handed_out: set[int] = set()


def free_port(*kinds: int) -> int:
    """A loopback port free now for every socket kind in ``kinds`` (TCP when none), not
    handed out before in this run."""
    candidates = _candidate_ports()
    while True:
        port = random.choice(candidates)
        if port in _handed_out:
            continue
        try:
            for kind in kinds or (socket.SOCK_STREAM,):
                with socket.socket(socket.AF_INET, kind) as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        _handed_out.add(port)
        return port


def free_udp_and_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (the bridge's media, TURN over UDP and TCP)."""
    return free_port(socket.SOCK_DGRAM, socket.SOCK_STREAM)


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def wait_for_health(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    """Wait until the reactor runs and answers (ports are bound before it runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not become healthy")


@dataclass
class XMPPServerProcess:
    process: subprocess.Popen
    directory: Path
    config: Path
    c2s_port: int
    http_port: int
    component_port: int
    component_secret: str

    @property
    def ca(self) -> Path:
        return self.directory / "var" / "tls" / "ca.pem"

    def add_account(self, jid: str, password: str) -> None:
        subprocess.run([BIN / "vw-accounts", "--config", str(self.config), "add", jid,
                        "--password-stdin"], input=password + "\n", text=True, check=True,
                       cwd=self.directory)

    def log(self) -> str:
        return (self.directory / "twistd.log").read_text(errors="replace")


def start_xmpp(directory: Path, extra: str = "", general: str = "",
               reuse: XMPPServerProcess | None = None) -> XMPPServerProcess:
    """Start vw-xmpp in ``directory``; ``reuse`` restarts a stopped one on its ports."""
    if reuse is not None:
        ports = [reuse.c2s_port, reuse.http_port, reuse.component_port]
    else:
        ports = [free_port() for _ in range(3)]
    config = directory / "vw.toml"
    config.write_text(f"""
[general]
domain = "localhost"
state_dir = "{directory / 'var'}"
{general}

[xmpp]
c2s_port = {ports[0]}
http_port = {ports[1]}
component_port = {ports[2]}
keepalive_interval = 30
resume_timeout = 30
components = {{ "echo.localhost" = "component-secret" }}

[xmpp.token]
app_id = "{TOKEN_APP}"
app_secret = "{TOKEN_SECRET}"
allow_anonymous = true
{extra}
""")
    log = open(directory / "twistd.log", "a")
    process = subprocess.Popen(
        [BIN / "twistd", "--nodaemon", "--pidfile=", "vw-xmpp", "--config", str(config)],
        cwd=directory, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for port in ports:
        wait_for_port(port, process)
    wait_for_health(f"http://127.0.0.1:{ports[1]}/about/health", process)
    return XMPPServerProcess(process, directory, config, ports[0], ports[1], ports[2],
                             "component-secret")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="session")
def xmpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XMPPServerProcess]:
    server = start_xmpp(tmp_path_factory.mktemp("xmpp"))
    yield server
    stop(server.process)


def have(command: str) -> bool:
    return shutil.which(command) is not None


FOCUS_PASSWORD = "focus-password"


@dataclass
class Stack:
    process: subprocess.Popen
    directory: Path
    c2s_port: int
    udp_port: int
    bridge_http_port: int
    #: The XMPP server's HTTP port: WebSocket at ``/xmpp-websocket``, BOSH at ``/http-bind``,
    #: and the meeting page.
    http_port: int
    #: The portal's pages and /api/v1.
    portal_port: int
    #: vw-turn: UDP and TCP, TLS, /metrics.
    turn_port: int
    turn_tls_port: int
    turn_http_port: int

    @property
    def ca(self) -> Path:
        return self.directory / "var" / "tls" / "ca.pem"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/{path}"

    def portal_url(self, path: str) -> str:
        """A portal address at ``localhost``, where browsers keep its ``__Host-`` cookie."""
        return f"http://localhost:{self.portal_port}/{path}"

    def log_tail(self) -> str:
        return (self.directory / "twistd.log").read_text(errors="replace")[-4000:]


def run_stack(directory: Path, extra: str = "", portal: str = "", turn: str = "",
              xmpp_turn: str = "") -> Iterator[Stack]:
    """The all-in-one (XMPP server, focus, bridge, portal, TURN server) on free ports, the
    focus account's password known to the tests; ``extra`` is more TOML, ``portal``, ``turn``
    and ``xmpp_turn`` more keys of [portal], [turn] and [xmpp.turn]. Ready once every part
    reports healthy (the focus once it has logged in). A port taken between choosing it and
    binding it (an outgoing connection's ephemeral port, say) means a new try on new ports."""
    for attempt in range(1, STACK_TRIES + 1):
        try:
            stack = _start_stack(directory, extra, portal, turn, xmpp_turn)
        except PortTaken:
            if attempt == STACK_TRIES:
                raise
            continue
        try:
            yield stack
        finally:
            stop(stack.process)
        return


#: Times run_stack starts the all-in-one when a chosen port turns out to be taken.
STACK_TRIES = 3


class PortTaken(RuntimeError):
    """The all-in-one could not bind a port chosen as free."""


def _start_stack(directory: Path, extra: str, portal: str, turn: str,
                 xmpp_turn: str) -> Stack:
    c2s, http, component, bridge_http, focus_http, portal_http, turn_tls, turn_http = (
        free_port() for _ in range(8))
    udp, turn_port = free_udp_and_tcp_port(), free_udp_and_tcp_port()
    config = directory / "vw.toml"
    config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
[portal]
http_port = {portal_http}
public_url = "http://localhost:{portal_http}"
meeting_base_url = "http://localhost:{http}"
{portal}
[xmpp]
c2s_port = {c2s}
http_port = {http}
component_port = {component}
[xmpp.turn]
host = "127.0.0.1"
port = {turn_port}
tls_port = {turn_tls}
{xmpp_turn}
[turn]
udp_port = {turn_port}
tcp_port = {turn_port}
tls_port = {turn_tls}
http_port = {turn_http}
drain_seconds = 0
{turn}
[bridge]
udp_port = {udp}
http_port = {bridge_http}
bridge_id = "b1"
xmpp_port = {component}
[focus]
http_port = {focus_http}
xmpp_port = {c2s}
password = "{FOCUS_PASSWORD}"
{extra}""")
    with open(directory / "twistd.log", "w") as log:
        process = subprocess.Popen([BIN / "twistd", "--nodaemon", "--pidfile=", "vw",
                                    "--config", str(config)], cwd=directory, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ})
    try:
        for port in (http, bridge_http, focus_http, portal_http, turn_http):
            wait_for_health(f"http://127.0.0.1:{port}/about/health", process)
    except RuntimeError as error:
        stop(process)
        tail = (directory / "twistd.log").read_text(errors="replace")[-3000:]
        taken = PortTaken if "Address already in use" in tail else RuntimeError
        raise taken(f"{error}; the stack's log ends:\n{tail}") from None
    return Stack(process, directory, c2s, udp, bridge_http, http, portal_http, turn_port,
                 turn_tls, turn_http)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The all-in-one on free ports, shared by a module's tests."""
    yield from run_stack(tmp_path_factory.mktemp("stack"))
