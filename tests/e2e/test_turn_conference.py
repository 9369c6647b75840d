"""A conference through vw-turn: two headless Chromium meeting pages, ICE restricted to relay,
get only TURN over TCP (then only TURN over TLS) from XEP-0215, reach the bridge through
vw-turn and decode each other's video."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Stack, free_port, run_stack, stop, wait_for_health
from tests.e2e.test_meeting_page import (
    ARGS,
    Participant,
    chromium,
    everyone_sees_everyone,
    until,
)

SECRET = "turn-conference-secret"

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is missing")


def free_udp_and_tcp_port() -> int:
    """A loopback port free for both UDP and TCP (TURN over UDP and TCP share one)."""
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


def metrics(http_port: int) -> dict[str, float]:
    """The unlabelled samples of a vw service's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in re.findall(r"^(vw_\w+) (\S+)$", text, re.M)}


@dataclass
class Turn:
    """vw-turn as its own process: TURN over UDP and TCP on ``port``, TLS on ``tls_port``."""

    process: subprocess.Popen
    directory: Path
    port: int
    tls_port: int
    http_port: int

    def metrics(self) -> dict[str, float]:
        return metrics(self.http_port)

    def log_tail(self) -> str:
        return (self.directory / "twistd.log").read_text(errors="replace")[-4000:]


def run_turn(directory: Path, stack: Stack, port: int, tls_port: int) -> Iterator[Turn]:
    """vw-turn with the stack's REST secret and certificate; loopback peers (the bridge)
    allowed, as they are refused by default."""
    http_port = free_port()
    tls = stack.directory / "var" / "tls"
    config = directory / "vw.toml"
    config.write_text(f"""
[general]
state_dir = "{directory / 'var'}"
[tls]
certificate = "{tls / 'server.pem'}"
key = "{tls / 'server.key'}"
[xmpp.turn]
secret = "{SECRET}"
[turn]
udp_port = {port}
tcp_port = {port}
tls_port = {tls_port}
http_port = {http_port}
allowed_peers = ["127.0.0.1/32"]
""")
    log = open(directory / "twistd.log", "w")
    process = subprocess.Popen([BIN / "twistd", "--nodaemon", "--pidfile=", "vw-turn",
                                "--config", str(config)], cwd=directory, stdout=log,
                               stderr=subprocess.STDOUT, env={**os.environ})
    try:
        wait_for_health(f"http://127.0.0.1:{http_port}/about/health", process)
        yield Turn(process, directory, port, tls_port, http_port)
    finally:
        stop(process)
        log.close()


@dataclass
class Setup:
    stack: Stack
    turn: Turn
    #: The one transport XEP-0215 offers: "tcp" or "tls".
    transport: str


@contextlib.asynccontextmanager
async def chromium_trusting(ca: Path, home: Path) -> AsyncIterator:
    """Headless Chromium that trusts ``ca``: it verifies a TURN server's certificate (chain and
    name) as a web site's, and reads user-added roots from $HOME/.pki/nssdb."""
    from playwright.async_api import async_playwright

    database = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True)
    subprocess.run(["certutil", "-N", "-d", database, "--empty-password"], check=True)
    subprocess.run(["certutil", "-A", "-d", database, "-n", "vw local CA", "-t", "C,,",
                    "-i", str(ca)], check=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=ARGS, env={**os.environ, "HOME": str(home)})
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(params=["tcp", pytest.param("tls", marks=pytest.mark.skipif(
    shutil.which("certutil") is None, reason="certutil (libnss3-tools) is missing"))])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """The all-in-one whose XEP-0215 offers only ``transport`` of the vw-turn started beside
    it."""
    transport = request.param
    port, tls_port = free_udp_and_tcp_port(), free_port()
    extra = f"""
[xmpp.turn]
secret = "{SECRET}"
host = "127.0.0.1"
port = {port}
tls_port = {tls_port}
transports = ["{transport}"]
"""
    (tmp_path / "stack").mkdir()
    (tmp_path / "turn").mkdir()
    with (contextlib.contextmanager(run_stack)(tmp_path / "stack", extra) as stack,
          contextlib.contextmanager(run_turn)(tmp_path / "turn", stack, port, tls_port) as turn):
        yield Setup(stack, turn, transport)


def test_a_conference_relayed_through_vw_turn(setup: Setup, tmp_path: Path) -> None:
    stack, turn = setup.stack, setup.turn
    url = stack.url("turnroom?relay=true")
    offered = {"tcp": f"turn:127.0.0.1:{turn.port}?transport=tcp",
               "tls": f"turns:127.0.0.1:{turn.tls_port}?transport=tcp"}[setup.transport]

    # Chromium checks a TURN server's certificate: trust the stack's CA for TLS.
    browsers = (chromium_trusting(stack.ca, tmp_path / "home") if setup.transport == "tls"
                else chromium())

    async def scenario() -> tuple[list[dict], int, dict[str, float], dict[str, float]]:
        """The selected candidate pairs, the RTP packets the pages received, and the bridge's
        and vw-turn's metrics, read in that order while the pages are in the meeting."""
        async with browsers as browser:
            anna, bert = await asyncio.gather(Participant.join(browser, "anna", url),
                                              Participant.join(browser, "bert", url))
            await everyone_sees_everyone([anna, bert])
            pairs = []
            for person in (anna, bert):
                configuration = await person.page.evaluate("vwMeeting.iceConfiguration()")
                assert configuration == {"iceTransportPolicy": "relay", "urls": [offered]}

                async def connected(person: Participant = person) -> bool:
                    pair = await person.page.evaluate("vwMeeting.candidatePair()")
                    return bool(pair) and pair["state"] == "succeeded"

                await until(connected, f"{person.name}'s selected candidate pair")
                pairs.append(await person.page.evaluate("vwMeeting.candidatePair()"))
            # The pages' and the bridge's counts first, then vw-turn's, which can only be
            # higher if it relayed all that media.
            received = 0
            for person in (anna, bert):
                received += sum(track["packetsReceived"]
                                for track in await person.page.evaluate("vwMeeting.stats()"))
            bridge = await asyncio.to_thread(metrics, stack.bridge_http_port)
            return pairs, received, bridge, await asyncio.to_thread(turn.metrics)

    try:
        pairs, received, bridge, after = asyncio.run(scenario())
    except BaseException:
        print(stack.log_tail())
        print(turn.log_tail())
        raise
    for pair in pairs:
        # Chromium's relay candidate: an allocation on vw-turn, reached over the one transport
        # offered; the bridge's UDP port at the other end.
        assert pair["local"]["type"] == "relay", pair
        assert pair["local"]["relayProtocol"] == setup.transport, pair
        assert (pair["remote"]["address"], pair["remote"]["port"]) == ("127.0.0.1",
                                                                       stack.udp_port), pair
    # Every RTP packet the pages received came to them through vw-turn, and every packet the
    # bridge received from them: the media, not only the ICE checks.
    assert after["vw_turn_allocations"] >= 2, after
    assert received > 100 and bridge["vw_bridge_packets_received"] > 100, (received, bridge)
    assert after["vw_turn_to_clients"] >= received, (after, received)
    assert after["vw_turn_to_peers"] >= bridge["vw_bridge_packets_received"], (after, bridge)
