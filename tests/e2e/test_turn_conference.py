"""A conference through vw-turn: two headless Chromium meeting pages, ICE restricted to relay,
get only TURN over TCP (then only TURN over TLS) from XEP-0215, reach the bridge through
vw-turn and decode each other's video."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack, run_stack
from tests.e2e.test_meeting_page import (
    ARGS,
    Participant,
    chromium,
    everyone_sees_everyone,
    until,
)

SECRET = "turn-conference-secret"

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is missing")


def metrics(http_port: int) -> dict[str, float]:
    """The unlabelled samples of a vw service's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {name: float(value) for name, value in re.findall(r"^(vw_\w+) (\S+)$", text, re.M)}


@dataclass
class Setup:
    stack: Stack
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
    """The all-in-one whose XEP-0215 offers only ``transport`` of its own vw-turn, which may
    relay to loopback (the bridge there), refused by default."""
    transport = request.param
    run = contextlib.contextmanager(run_stack)
    (tmp_path / "stack").mkdir()
    with run(tmp_path / "stack", turn='allowed_peers = ["127.0.0.1/32"]',
             xmpp_turn=f'transports = ["{transport}"]') as stack:
        yield Setup(stack, transport)


def test_a_conference_relayed_through_vw_turn(setup: Setup, tmp_path: Path) -> None:
    stack = setup.stack
    url = stack.url("turnroom?relay=true")
    offered = {"tcp": f"turn:127.0.0.1:{stack.turn_port}?transport=tcp",
               "tls": f"turns:127.0.0.1:{stack.turn_tls_port}?transport=tcp"}[setup.transport]

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
            return pairs, received, bridge, await asyncio.to_thread(metrics, stack.turn_http_port)

    try:
        pairs, received, bridge, after = asyncio.run(scenario())
    except BaseException:
        print(stack.log_tail())
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
