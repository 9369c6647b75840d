"""Bridge failover: vw-xmpp, vw-focus and two vw-bridge processes; two aiortc participants,
signalled with Jingle by the focus over slixmpp, see each other's video. The bridge they use
fails: killed (SIGKILL, a crash: its XMPP connection drops and it leaves the brewery) or hung
(SIGSTOP: connected but silent, so only the focus's health-check pings find out). The focus ends
their sessions and offers new ones on the other bridge, and both decode each other's video again
within 10 seconds of the failure."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
import slixmpp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.e2e.conftest import BIN, FOCUS_PASSWORD, free_port, stop, wait_for_health
from tests.e2e.slix import connect, disconnect
from tests.xmpp.helpers import xml
from vw.bridge import colibri2
from vw.focus.jingle import JINGLE_NS, Content, Jingle, RtpDescription

ROOM = "failover@conference.localhost"
FOCUS_NS = "http://jitsi.org/protocol/focus"
#: The issue's deadline: from the failure of the bridge in use to video decoded again on the other.
RECOVERY_DEADLINE = 10.0
#: What each participant sends: a frame size of its own tells whose video was decoded.
SIZES = {"alice": (320, 240), "bob": (240, 160)}
#: Jingle ``senders`` -> SDP direction, as lib-jitsi-meet's SDP.fromJingle maps it.
DIRECTIONS = {"both": "sendrecv", "initiator": "sendonly", "responder": "recvonly",
              "none": "inactive"}


# -- the deployment ----------------------------------------------------------------------------

@dataclass
class Process:
    name: str
    process: subprocess.Popen
    log: Path


@dataclass
class BridgeProcess(Process):
    udp_port: int
    http_port: int

    def stats(self) -> dict:
        url = f"http://127.0.0.1:{self.http_port}/colibri/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)


@dataclass
class Deployment:
    directory: Path
    c2s_port: int
    focus_http_port: int
    processes: list[Process]
    bridges: dict[str, BridgeProcess]

    @property
    def ca(self) -> Path:
        return self.directory / "var" / "tls" / "ca.pem"

    def focus_stats(self) -> dict:
        url = f"http://127.0.0.1:{self.focus_http_port}/about/stats"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)

    def logs(self) -> str:
        return "\n".join(f"==== {p.name} ====\n" + p.log.read_text(errors="replace")[-6000:]
                         for p in self.processes)


def _start(directory: Path, name: str, plugin: str,
           config: Path) -> tuple[subprocess.Popen, Path]:
    log = directory / f"{name}.log"
    process = subprocess.Popen(
        [BIN / "twistd", "--nodaemon", "--pidfile=", plugin, "--config", str(config)],
        cwd=directory, stdout=open(log, "w"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return process, log


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    c2s, http, component, focus_http = (free_port() for _ in range(4))
    common = f"""
[general]
domain = "localhost"
state_dir = "{tmp_path / 'var'}"

[xmpp]
c2s_port = {c2s}
http_port = {http}
component_port = {component}
components = {{ "jvb1.localhost" = "secret-b1", "jvb2.localhost" = "secret-b2" }}

[focus]
http_port = {focus_http}
xmpp_port = {c2s}
password = "{FOCUS_PASSWORD}"
"""
    config = tmp_path / "vw.toml"
    config.write_text(common)
    subprocess.run([BIN / "vw-accounts", "--config", str(config), "add", "focus@auth.localhost",
                    "--password-stdin"], input=FOCUS_PASSWORD + "\n", text=True, check=True,
                   cwd=tmp_path, timeout=60)
    processes: list[Process] = []
    bridges: dict[str, BridgeProcess] = {}
    try:
        process, log = _start(tmp_path, "xmpp", "vw-xmpp", config)
        processes.append(Process("xmpp", process, log))
        wait_for_health(f"http://127.0.0.1:{http}/about/health", process)
        for name in ("b1", "b2"):
            udp, bridge_http = free_port(), free_port()
            bridge_config = tmp_path / f"{name}.toml"
            bridge_config.write_text(common + f"""
[bridge]
bridge_id = "{name}"
udp_port = {udp}
http_port = {bridge_http}
xmpp_port = {component}
component_domain = "jvb{name[1]}.localhost"
component_secret = "secret-{name}"
""")
            process, log = _start(tmp_path, name, "vw-bridge", bridge_config)
            bridges[name] = BridgeProcess(name, process, log, udp, bridge_http)
            processes.append(bridges[name])
            wait_for_health(f"http://127.0.0.1:{bridge_http}/about/health", process)
        process, log = _start(tmp_path, "focus", "vw-focus", config)
        processes.append(Process("focus", process, log))
        wait_for_health(f"http://127.0.0.1:{focus_http}/about/health", process)
        found = Deployment(tmp_path, c2s, focus_http, processes, bridges)
        deadline = time.monotonic() + 30
        while found.focus_stats()["bridges"] < 2:
            assert time.monotonic() < deadline, "the focus did not see both bridges\n" + \
                found.logs()
            time.sleep(0.2)
        yield found
    finally:
        for entry in reversed(processes):
            stop(entry.process)


# -- Jingle <-> SDP, as lib-jitsi-meet does it (compact) ---------------------------------------

def offer_sdp(offer: Jingle) -> str:
    """The SDP of a session-initiate: one m-line per content, sources as ``a=ssrc`` lines."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    if offer.bundle is not None:
        lines.append("a=group:BUNDLE " + " ".join(offer.bundle.contents))
    for content in offer.contents:
        description, transport = content.description, content.transport
        assert description is not None and transport is not None
        pts = " ".join(str(pt.id) for pt in description.payload_types)
        lines += [f"m={description.media} 9 UDP/TLS/RTP/SAVPF {pts}", "c=IN IP4 0.0.0.0",
                  f"a=mid:{content.name}", f"a={DIRECTIONS[content.senders or 'both']}",
                  f"a=ice-ufrag:{transport.ufrag}", f"a=ice-pwd:{transport.pwd}"]
        for fingerprint in transport.fingerprints:
            lines += [f"a=fingerprint:{fingerprint.hash} {fingerprint.value}",
                      f"a=setup:{fingerprint.setup}"]
        lines += [f"a=candidate:{c.foundation} {c.component} {c.protocol} {c.priority} {c.ip} "
                  f"{c.port} typ {c.type}" for c in transport.candidates]
        if description.rtcp_mux:
            lines.append("a=rtcp-mux")
        for pt in description.payload_types:
            channels = f"/{pt.channels}" if pt.channels else ""
            lines.append(f"a=rtpmap:{pt.id} {pt.name}/{pt.clockrate}{channels}")
            if pt.parameters:
                lines.append(f"a=fmtp:{pt.id} "
                             + ";".join(f"{p.name}={p.value}" for p in pt.parameters))
            lines += [f"a=rtcp-fb:{pt.id} {fb.type}" + (f" {fb.subtype}" if fb.subtype else "")
                      for fb in pt.rtcp_fbs]
        lines += [f"a=extmap:{ext.id} {ext.uri}" for ext in description.header_extensions]
        lines += [f"a=ssrc-group:{g.semantics} " + " ".join(map(str, g.ssrcs))
                  for g in description.groups]
        lines += [f"a=ssrc:{source.ssrc} {p.name}:{p.value}"
                  for source in description.sources for p in source.parameters]
    return "\r\n".join(lines) + "\r\n"


def session_accept(sid: str, answer: str) -> Jingle:
    """The session-accept for an answer: its transport (loopback candidates only; the bridge
    learns the others as peer-reflexive) and the sources it sends, each with its msid."""
    sections = answer.split("\r\nm=")[1:]
    ufrag = re.search(r"a=ice-ufrag:(\S+)", answer).group(1)
    pwd = re.search(r"a=ice-pwd:(\S+)", answer).group(1)
    hash_name, value = re.search(r"a=fingerprint:(\S+) (\S+)", answer).groups()
    candidates = [
        colibri2.Candidate(component=1, foundation=f, ip=ip, port=int(port),
                           priority=int(priority), protocol="udp", type=kind)
        for f, priority, ip, port, kind in re.findall(
            r"a=candidate:(\S+) 1 udp (\d+) (\S+) (\d+) typ (\S+)", answer, re.I)
        if ip == "127.0.0.1"]
    transport = colibri2.IceUdpTransport(
        ufrag=ufrag, pwd=pwd, candidates=candidates,
        fingerprints=[colibri2.Fingerprint(hash=hash_name, setup="active", value=value)])
    contents = []
    for section in sections:
        media = section.split()[0]
        mid = re.search(r"a=mid:(\S+)", section).group(1)
        msid = re.search(r"a=msid:(\S+ \S+)", section)
        sources, groups = [], []
        if msid is not None and re.search(r"a=(sendrecv|sendonly)", section):
            ssrcs = dict.fromkeys(int(s) for s in re.findall(r"a=ssrc:(\d+) ", section))
            sources = [colibri2.Source(ssrc=s, parameters=[
                colibri2.Parameter("msid", msid.group(1))]) for s in ssrcs]
            groups = [colibri2.SourceGroup(semantics, [int(s) for s in members.split()])
                      for semantics, members in re.findall(
                          r"a=ssrc-group:(\S+) ([\d ]+)", section)]
        contents.append(Content(mid, creator="responder", senders="both",
                                description=RtpDescription(media, sources=sources,
                                                           groups=groups),
                                transport=transport))
    return Jingle("session-accept", sid, contents=contents)


# -- the participants --------------------------------------------------------------------------

class SizedTrack(VideoStreamTrack):
    """Frames of one size, with a bar that moves (so the encoder has work to do)."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__()
        self.width, self.height = width, height
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        image = np.full((self.height, self.width, 3), 40, np.uint8)
        column = (self.count * 4) % self.width
        image[:, column:column + 16] = (250, 200, 20)
        self.count += 1
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(time_base)
        return frame


class Participant:
    """A guest driven at the Jingle level: conference request, room, offers answered by aiortc."""

    def __init__(self, client: slixmpp.ClientXMPP, nick: str) -> None:
        self.client = client
        self.nick = nick
        self.jingle: asyncio.Queue[Jingle] = asyncio.Queue()
        self.pc: RTCPeerConnection | None = None
        client.register_handler(Callback("jingle", MatchXPath(
            f"{{jabber:client}}iq/{{{JINGLE_NS}}}jingle"), self._jingle))

    def _jingle(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set" or iq["from"].full != f"{ROOM}/focus":
            return
        iq.reply().send()
        self.jingle.put_nowait(Jingle.fromElement(xml(str(iq)).firstChildElement()))

    async def next_jingle(self, *actions: str, timeout: float = 15) -> Jingle:
        """The next Jingle of one of ``actions`` (source updates are skipped: aiortc routes
        the media of the single video m-line by payload type)."""
        async with asyncio.timeout(timeout):
            while True:
                jingle = await self.jingle.get()
                if jingle.action in actions:
                    return jingle
                assert jingle.action in ("source-add", "source-remove"), (
                    f"{self.nick} expected {' or '.join(actions)}, got {jingle.action}")

    async def join(self) -> Jingle:
        iq = self.client.make_iq_set(ito="focus.localhost")
        iq.xml.append(ElementTree.Element(f"{{{FOCUS_NS}}}conference", room=ROOM))
        reply = await iq.send(timeout=15)
        assert reply.xml.find(f"{{{FOCUS_NS}}}conference").get("ready") == "true"
        presence = self.client.make_presence(pto=f"{ROOM}/{self.nick}")
        ElementTree.SubElement(presence.xml, "{http://jabber.org/protocol/muc}x")
        presence.send()
        return await self.next_jingle("session-initiate")

    async def answer(self, offer: Jingle) -> MediaStreamTrack:
        """A new peer connection for ``offer``, accepted; returns its remote video track."""
        await self.close()
        self.pc = pc = RTCPeerConnection()
        pc.addTrack(SizedTrack(*SIZES[self.nick]))
        tracks: asyncio.Queue = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        await pc.setRemoteDescription(RTCSessionDescription(offer_sdp(offer), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        iq = self.client.make_iq_set(ito=f"{ROOM}/focus")
        accept = session_accept(offer.sid, pc.localDescription.sdp)
        iq.xml.append(ElementTree.fromstring(accept.toElement().toXml()))
        await iq.send(timeout=15)
        async with asyncio.timeout(5):
            while (track := await tracks.get()).kind != "video":
                pass
        return track

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
            self.pc = None


def candidate_ports(offer: Jingle) -> set[int]:
    return {c.port for content in offer.contents for c in content.transport.candidates}


async def decode(track: MediaStreamTrack, sender: str, frames: int = 3,
                 timeout: float = 15) -> float:
    """Decode ``frames`` frames of ``sender``'s video; returns when the first one came."""
    arrivals = []
    async with asyncio.timeout(timeout):
        for _ in range(frames):
            frame = await track.recv()
            arrivals.append(time.monotonic())
            assert (frame.width, frame.height) == SIZES[sender]
    return arrivals[0]


# -- the test ----------------------------------------------------------------------------------

#: How the bridge in use fails.
FAILURES = {"crash": signal.SIGKILL, "hang": signal.SIGSTOP}


@pytest.mark.parametrize("failure", FAILURES)
def test_participants_move_to_the_other_bridge_when_theirs_fails(deployment: Deployment,
                                                                 failure: str) -> None:
    async def scenario() -> None:
        participants = {}
        for nick in SIZES:
            client = await connect("localhost", "", deployment.c2s_port, deployment.ca,
                                   "ANONYMOUS")
            participants[nick] = Participant(client, nick)
        alice, bob = participants["alice"], participants["bob"]
        tracks = {"alice": await alice.answer(await alice.join())}
        tracks["bob"] = await bob.answer(await bob.join())
        await asyncio.gather(decode(tracks["alice"], "bob"), decode(tracks["bob"], "alice"))

        used = [b for b in deployment.bridges.values() if b.stats()["conferences"]]
        assert len(used) == 1 and used[0].stats()["endpoints"] == 2
        failing = used[0]
        (spare,) = [b for b in deployment.bridges.values() if b is not failing]
        for participant in participants.values():
            assert participant.pc.remoteDescription.sdp.count(f" {failing.udp_port} typ ")

        failed = time.monotonic()
        failing.process.send_signal(FAILURES[failure])

        async def recover(participant: Participant, other: str) -> float:
            await participant.next_jingle("session-terminate")
            offer = await participant.next_jingle("session-initiate")
            assert candidate_ports(offer) == {spare.udp_port}, offer
            track = await participant.answer(offer)
            return await decode(track, other, timeout=RECOVERY_DEADLINE + 5)

        decoded = await asyncio.gather(recover(alice, "bob"), recover(bob, "alice"))
        recovery = max(decoded) - failed
        print(f"{failure}: recovered in {recovery:.2f} s (alice {decoded[0] - failed:.2f} s, "
              f"bob {decoded[1] - failed:.2f} s)")
        assert recovery < RECOVERY_DEADLINE
        stats = spare.stats()
        assert stats["conferences"] == 1 and stats["endpoints"] == 2
        for participant in participants.values():
            await participant.close()
        await disconnect(alice.client, bob.client)

    try:
        asyncio.run(scenario())
    except BaseException:
        print(deployment.logs())
        raise
    finally:
        for bridge in deployment.bridges.values():
            bridge.process.send_signal(signal.SIGCONT)
