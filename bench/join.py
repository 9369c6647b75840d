"""Joining conferences on vw: the time to the first decoded frame, and signaling under load.

Run: ``.venv/bin/python bench/join.py [--quick]``. The all-in-one (``twistd vw``: XMPP server,
focus and bridge in one process) runs on loopback from a temporary directory.

**Join time.** A sender (the aiortc Jitsi client of tests/e2e/jitsi: XMPP over WebSocket,
Jingle turned into SDP) sits in a room sending video; N times in turn, another such client
opens its WebSocket, logs in, asks the focus for the conference, joins the room, answers the
focus's offer, completes ICE and DTLS with the bridge and decodes the sender's video: the time
from opening the WebSocket to that first decoded frame, p50 and p99 (target: p50 under 1 s).

**Signaling load.** C conferences
of P participants join at once, each participant a raw XMPP client (bench/xmpp_client.py
for the login, vw's own stream parser for what follows) doing what lib-jitsi-meet does:
SASL ANONYMOUS and bind, the ``conference`` request to focus.localhost until ``ready``, the
MUC join, then it waits for the focus's Jingle ``session-initiate`` (with the bridge's
transport, allocated over Colibri2), acknowledges it and answers ``session-accept`` with two
sources of its own. Nobody completes ICE: this is the signaling path only.

Reported: participants that completed the exchange, errors (IQ errors, refused joins,
timeouts), the time from connecting to the acknowledged ``session-accept`` (p50, p99; with
everyone connecting at once this is mostly queueing), the wall time for everyone, and the CPU
seconds of the all-in-one process and of the load generator. There is no anchor here
(Jicofo is not packaged in Debian); the target is the issue's: everyone joins, no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from bridge import Stack
from xmpp_client import RawClient, XMPPError, client_tls_context

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vw.xmpp.xmlparser import ElementReceived, XMLStreamParser  # noqa: E402

HOST = "127.0.0.1"
DOMAIN = "localhost"
FOCUS_NS = "http://jitsi.org/protocol/focus"
JINGLE_NS = "urn:xmpp:jingle:1"
STREAM_OPEN = (b"<stream:stream xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams'>")
FINGERPRINT = ":".join(["5A"] * 32)
RESULTS = Path(__file__).parent / "results"


class Participant:
    """One signaling-only Jitsi participant."""

    def __init__(self, port: int, room: str, nick: str, ssrc: int, timeout: float) -> None:
        self.client = RawClient(HOST, port, DOMAIN, client_tls_context(), timeout)
        self.room = room
        self.nick = nick
        self.ssrc = ssrc
        self.timeout = timeout
        self.parser = XMLStreamParser()
        self.parser.feed(STREAM_OPEN)
        self.stanzas: list = []
        #: Seconds from connecting to a bound resource.
        self.login_time = 0.0

    async def _stanza(self, matches) -> object:  # noqa: ANN001 - a predicate on domish elements
        while True:
            for index, stanza in enumerate(self.stanzas):
                if matches(stanza):
                    return self.stanzas.pop(index)
            data = await self.client.reader.read(262144)
            if not data:
                raise XMPPError("connection closed")
            self.stanzas += [e.element for e in self.parser.feed(data)
                             if isinstance(e, ElementReceived)]

    async def _result(self, stanza_id: str) -> None:
        reply = await self._stanza(lambda s: s.name == "iq" and s.getAttribute("id") == stanza_id)
        if reply["type"] != "result":
            raise XMPPError(f"IQ {stanza_id} failed: {reply.toXml()[:300]}")

    async def join(self) -> float:
        """Connect and get through to an acknowledged session-accept; seconds taken."""
        started = time.perf_counter()
        async with asyncio.timeout(self.timeout):
            await self.client.login()
            self.login_time = time.perf_counter() - started
            self.stanzas += [e.element for e in self.parser.feed(self.client.take_buffer())
                             if isinstance(e, ElementReceived)]
            room = f"{self.room}@conference.{DOMAIN}"
            self.client.send(f"<iq type='set' id='c1' to='focus.{DOMAIN}'><conference "
                             f"xmlns='{FOCUS_NS}' room='{room}'/></iq>".encode())
            await self._result("c1")
            self.client.send(f"<presence to='{room}/{self.nick}'><x xmlns='http://jabber.org/"
                             f"protocol/muc'/></presence>".encode())
            offer = await self._stanza(lambda s: s.name == "iq" and s.getAttribute("type") == "set"
                                       and any(c.name == "jingle" for c in s.elements()))
            jingle = next(c for c in offer.elements() if c.name == "jingle")
            if jingle.getAttribute("action") != "session-initiate":
                raise XMPPError(f"expected session-initiate: {offer.toXml()[:300]}")
            self.client.send(f"<iq type='result' id='{offer['id']}' to='{offer['from']}'/>"
                             .encode())
            self.client.send(self._accept(room, jingle["sid"]).encode())
            await self._result("a1")
        return time.perf_counter() - started

    def _accept(self, room: str, sid: str) -> str:
        contents = "".join(
            f"<content creator='responder' name='{media}' senders='both'>"
            f"<description xmlns='urn:xmpp:jingle:apps:rtp:1' media='{media}'>"
            f"<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='{self.ssrc + n}'>"
            f"<parameter name='msid' value='{self.nick}-s {self.nick}-{media}'/></source>"
            f"</description>"
            f"<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='u{self.ssrc}' "
            f"pwd='p{self.ssrc:021d}'><fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' "
            f"hash='sha-256' setup='active'>{FINGERPRINT}</fingerprint></transport></content>"
            for n, media in enumerate(("audio", "video")))
        return (f"<iq type='set' id='a1' to='{room}/focus'><jingle xmlns='{JINGLE_NS}' "
                f"action='session-accept' sid='{sid}'>{contents}</jingle></iq>")


async def load(port: int, conferences: int, size: int, timeout: float
               ) -> tuple[list[float], list[float], list[str]]:
    participants = [Participant(port, f"load{c}", f"p{n}", 1000 + (c * size + n) * 4, timeout)
                    for c in range(conferences) for n in range(size)]
    outcomes = await asyncio.gather(*(p.join() for p in participants), return_exceptions=True)
    times = [o for o in outcomes if isinstance(o, float)]
    errors = [f"{type(o).__name__}: {o}"[:200] for o in outcomes if not isinstance(o, float)]
    logins = [p.login_time for p, o in zip(participants, outcomes, strict=True)
              if isinstance(o, float)]
    for participant in participants:
        participant.client.abort()
    return times, logins, errors


async def media_joins(ws_url: str, count: int) -> list[float]:
    """Seconds from opening the WebSocket to the first decoded frame of a sender's video."""
    from tests.e2e.jitsi.client import JitsiClient

    sender = JitsiClient(ws_url, "jointime", display_name="sender")
    await sender.join()
    times = []
    try:
        for n in range(count):
            viewer = JitsiClient(ws_url, "jointime", display_name=f"viewer{n}")
            started = time.perf_counter()
            try:
                await viewer.join()
                tracks = await viewer.wait_for_tracks([sender.endpoint_id], ("video",), 20)
                await asyncio.wait_for(tracks[sender.endpoint_id]["video"].track.recv(), 20)
                times.append(time.perf_counter() - started)
            finally:
                await viewer.leave()
    finally:
        await sender.leave()
    return times


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 conferences of 3")
    parser.add_argument("--conferences", type=int, default=100)
    parser.add_argument("--size", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--joins", type=int, default=20, help="timed media joins")
    args = parser.parse_args()
    if args.quick:
        args.conferences, args.size, args.joins = 10, 3, 5
    with tempfile.TemporaryDirectory(prefix="vw-join-") as directory:
        stack = Stack(Path(directory))
        try:
            joins = asyncio.run(media_joins(
                f"ws://127.0.0.1:{stack.xmpp_http}/xmpp-websocket", args.joins))
            process = psutil.Process(stack.popen.pid)
            before = process.cpu_times()
            wall = time.perf_counter()
            client_cpu = time.process_time()
            times, logins, errors = asyncio.run(load(stack.c2s, args.conferences, args.size,
                                                     args.timeout))
            client_cpu = time.process_time() - client_cpu
            wall = time.perf_counter() - wall
            after = process.cpu_times()
        finally:
            stack.stop()
    cpu = (after.user - before.user) + (after.system - before.system)
    total = args.conferences * args.size
    figures = {
        "participants": total, "completed": len(times), "errors": len(errors),
        "join_p50_ms": round(percentile(times, 0.5) * 1000, 1) if times else None,
        "join_p99_ms": round(percentile(times, 0.99) * 1000, 1) if times else None,
        "join_mean_ms": round(statistics.mean(times) * 1000, 1) if times else None,
        "login_p50_ms": round(percentile(logins, 0.5) * 1000, 1) if logins else None,
        "wall_s": round(wall, 2), "server_cpu_s": round(cpu, 2),
        "load_generator_cpu_s": round(client_cpu, 2),
    }
    join_figures = {"joins": len(joins),
                    "first_frame_p50_ms": round(percentile(joins, 0.5) * 1000, 1),
                    "first_frame_p99_ms": round(percentile(joins, 0.99) * 1000, 1)}
    print(f"join time: WebSocket opened -> first decoded remote video frame, "
          f"{args.joins} joins one after another\n")
    for key, value in join_figures.items():
        print(f"  {key:<20} {value}")
    print(f"\n  target (p50 under 1 s): "
          f"{'met' if join_figures['first_frame_p50_ms'] < 1000 else 'not met'}\n")
    print(f"signaling load: {args.conferences} conferences x {args.size} participants "
          f"joining at once\n")
    for key, value in figures.items():
        print(f"  {key:<16} {value}")
    print(f"\n  target (every participant joins, no errors): "
          f"{'met' if not errors and len(times) == total else 'not met'}")
    for error in errors[:5]:
        print(f"  error: {error}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "join-latest.json").write_text(json.dumps({
        "benchmark": "join", "quick": args.quick,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(), "join_time": join_figures, "figures": figures,
        "errors": errors[:20]}, indent=1))


if __name__ == "__main__":
    main()
