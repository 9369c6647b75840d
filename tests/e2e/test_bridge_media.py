"""Media through vw-bridge: aiortc peers allocated with real Colibri2 IQs exchange video."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import re
import shutil
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.contrib.media import MediaPlayer
from av import VideoFrame
from slixmpp.exceptions import IqError

from tests.e2e.conftest import FOCUS_PASSWORD, Stack
from tests.e2e.slix import connect, disconnect
from tests.e2e.wsclient import WebSocketClient, WebSocketRefused
from tests.xmpp.helpers import xml
from vw.bridge import colibri2

AUDIO_PT = 111
VIDEO_PT = 100
RTX_PT = 96


@dataclass(frozen=True)
class RemoteSource:
    """Another participant's stream, offered on an m-line of its own."""

    owner: str
    media: str
    ssrc: int
    rtx: int | None = None


def source_lines(remote: RemoteSource) -> str:
    lines = f"a=msid:{remote.owner} {remote.owner}-{remote.media}\r\n"
    if remote.rtx is not None:
        lines += f"a=ssrc-group:FID {remote.ssrc} {remote.rtx}\r\n"
    for ssrc in (remote.ssrc, remote.rtx):
        if ssrc is not None:
            lines += f"a=ssrc:{ssrc} cname:{remote.owner}\r\n"
    return lines


def offer_sdp(transport: colibri2.IceUdpTransport, remotes: tuple[RemoteSource, ...] = (),
              version: int = 1, carried: RemoteSource | None = None) -> str:
    """What the focus would turn into Jingle: the bridge's transport, Opus, VP8, and one
    receive-only m-line per remote source (unified plan, as aiortc wants). ``carried`` is a
    remote source signalled on the sendrecv m-line of its media instead."""
    fingerprint = transport.fingerprints[0]
    candidates = "".join(
        f"a=candidate:{c.foundation} 1 udp {c.priority} {c.ip} {c.port} typ {c.type}\r\n"
        for c in transport.candidates)
    common = (f"c=IN IP4 0.0.0.0\r\na=ice-ufrag:{transport.ufrag}\r\na=ice-pwd:{transport.pwd}\r\n"
              f"a=fingerprint:{fingerprint.hash} {fingerprint.value}\r\na=setup:actpass\r\n"
              f"a=rtcp-mux\r\n{candidates}a=end-of-candidates\r\n")
    codecs = {"audio": f"{AUDIO_PT}\r\n", "video": f"{VIDEO_PT} {RTX_PT}\r\n"}
    rtpmap = {"audio": f"a=rtpmap:{AUDIO_PT} opus/48000/2\r\n",
              "video": f"a=rtpmap:{VIDEO_PT} VP8/90000\r\na=rtcp-fb:{VIDEO_PT} nack\r\n"
                       f"a=rtcp-fb:{VIDEO_PT} nack pli\r\n"
                       f"a=rtpmap:{RTX_PT} rtx/90000\r\na=fmtp:{RTX_PT} apt={VIDEO_PT}\r\n"}
    sections = [(media, "sendrecv", source_lines(carried)
                 if carried is not None and carried.media == media else "")
                for media in ("audio", "video")]
    for remote in remotes:
        sections.append((remote.media, "sendonly", source_lines(remote)))
    mids = " ".join(str(i) for i in range(len(sections)))
    sdp = (f"v=0\r\no=- 1 {version} IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
           f"a=group:BUNDLE {mids}\r\n")
    for mid, (media, direction, extra) in enumerate(sections):
        sdp += (f"m={media} 9 UDP/TLS/RTP/SAVPF {codecs[media]}{common}a=mid:{mid}\r\n"
                f"a={direction}\r\n{rtpmap[media]}{extra}")
    return sdp


def media_ssrcs(sdp: str) -> dict[str, int]:
    """The first SSRC of each media type in an answer (audio, and the video primary)."""
    found: dict[str, int] = {}
    for section in sdp.split("m=")[1:]:
        ssrcs = re.findall(r"a=ssrc:(\d+) ", section)
        if ssrcs:
            found.setdefault(section.split()[0], int(ssrcs[0]))
    return found


def rtx_partner(sdp: str, ssrc: int) -> int | None:
    """The RTX SSRC an answer pairs with ``ssrc`` (its FID group)."""
    found = re.search(rf"a=ssrc-group:FID {ssrc} (\d+)", sdp)
    return int(found.group(1)) if found else None


def answer_to_endpoint(endpoint_id: str, sdp: str) -> colibri2.Endpoint:
    """The client's answer as the focus passes it to the bridge: transport and sources."""
    ufrag = re.search(r"a=ice-ufrag:(\S+)", sdp).group(1)
    pwd = re.search(r"a=ice-pwd:(\S+)", sdp).group(1)
    hash_name, value = re.search(r"a=fingerprint:(\S+) (\S+)", sdp).groups()
    candidates = [
        colibri2.Candidate(component=1, foundation=f, ip=ip, port=int(port),
                           priority=int(priority), protocol="udp", type=kind)
        for f, priority, ip, port, kind in re.findall(
            r"a=candidate:(\S+) 1 udp (\d+) (\S+) (\d+) typ (\S+)", sdp, re.I)
        if ip == "127.0.0.1"]  # tests stay on loopback; other addresses come as peer-reflexive
    sources = []
    for section in sdp.split("m=")[1:]:
        media = section.split()[0]
        ssrcs = sorted({int(s) for s in re.findall(r"a=ssrc:(\d+) ", section)})
        groups = [colibri2.SourceGroup(semantics, [int(s) for s in members.split()])
                  for semantics, members in re.findall(r"a=ssrc-group:(\w+) ([\d ]+)", section)]
        sources.append(colibri2.MediaSource(
            type=media, id=f"{endpoint_id}-{media[0]}0",
            sources=[colibri2.Source(ssrc=s) for s in ssrcs], groups=groups))
    ice = colibri2.IceUdpTransport(
        ufrag=ufrag, pwd=pwd, candidates=candidates,
        fingerprints=[colibri2.Fingerprint(hash=hash_name, setup="active", value=value)])
    return colibri2.Endpoint(id=endpoint_id, transport=colibri2.Transport(ice_udp=ice),
                             sources=sources)


async def colibri(focus, request: colibri2.ConferenceModify) -> colibri2.ConferenceModified:
    iq = focus.make_iq_set(ito="jvb.localhost")
    iq.xml.append(ElementTree.fromstring(request.toElement().toXml()))
    reply = await iq.send(timeout=10)
    return colibri2.ConferenceModified.fromElement(xml(str(reply)).firstChildElement())


class Meeting:
    """The focus's side of one conference: the Colibri2 allocation and each peer's answer."""

    def __init__(self, focus, meeting_id: str, created: colibri2.ConferenceModified) -> None:
        self.focus = focus
        self.id = meeting_id
        self.created = created

    @classmethod
    async def create(cls, focus, room: str, names: tuple[str, ...]) -> Meeting:
        meeting_id = str(uuid.uuid4())
        created = await colibri(focus, colibri2.ConferenceModify(
            meeting_id=meeting_id, name=f"{room}@conference.localhost", create=True,
            endpoints=[colibri2.Endpoint(id=name, create=True, transport=colibri2.Transport(
                ice_controlling=True)) for name in names]))
        return cls(focus, meeting_id, created)

    def transport(self, name: str) -> colibri2.IceUdpTransport:
        return self.created.endpoint(name).transport.ice_udp

    async def join(self, name: str, pc: RTCPeerConnection,
                   offer: str | None = None) -> asyncio.Queue:
        """Offer the bridge's transport to ``pc``, pass its answer to the bridge; its remote
        tracks arrive on the returned queue."""
        tracks: asyncio.Queue = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        await pc.setRemoteDescription(RTCSessionDescription(
            offer or offer_sdp(self.transport(name)), "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self.update(answer_to_endpoint(name, pc.localDescription.sdp))
        return tracks

    async def update(self, endpoint: colibri2.Endpoint) -> None:
        await colibri(self.focus, colibri2.ConferenceModify(meeting_id=self.id,
                                                            endpoints=[endpoint]))


async def first_video(tracks: asyncio.Queue):
    """The first video track a peer is given."""
    while True:
        track = await asyncio.wait_for(tracks.get(), 10)
        if track.kind == "video":
            return track


async def last_frame(track, count: int):
    """Receive ``count`` frames; return the last."""
    for _ in range(count):
        frame = await asyncio.wait_for(track.recv(), 15)
    return frame


async def receive_frames(track, count: int) -> int:
    frames = 0
    while frames < count:
        await asyncio.wait_for(track.recv(), 15)
        frames += 1
    return frames


def test_two_aiortc_peers_exchange_video_through_the_bridge(stack: Stack) -> None:
    async def scenario() -> None:
        focus = await connect("focus@auth.localhost/focus", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        meeting = await Meeting.create(focus, "room", ("alice", "bob"))
        peers, received = {}, {}
        for name in ("alice", "bob"):
            pc = RTCPeerConnection()
            pc.addTrack(MediaPlayer("testsrc=size=320x240:rate=15", format="lavfi").video)
            received[name] = await meeting.join(name, pc)
            peers[name] = pc
        for name in peers:
            assert await receive_frames(await first_video(received[name]), 30) == 30
        for pc in peers.values():
            await pc.close()
        await disconnect(focus)

    asyncio.run(scenario())


SIZES = {"amy": (320, 240), "bert": (384, 288), "cleo": (320, 320)}


def test_three_aiortc_peers_each_receive_the_other_two(stack: Stack) -> None:
    """Each sender's frames carry their number and have a size of their own, so a decoded
    frame says who sent it, in which order and how faithfully."""

    async def scenario() -> None:
        focus = await connect("focus@auth.localhost/focus3", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        meeting = await Meeting.create(focus, "three", tuple(SIZES))
        peers, tracks, ssrcs = {}, {}, {}
        for name, (width, height) in SIZES.items():
            pc = RTCPeerConnection()
            audio = MediaPlayer("sine=frequency=440:sample_rate=48000", format="lavfi")
            pc.addTrack(audio.audio)
            pc.addTrack(CounterTrack(width, height))
            tracks[name] = await meeting.join(name, pc)
            peers[name] = pc
            ssrcs[name] = media_ssrcs(pc.localDescription.sdp)
        for name, pc in peers.items():  # renegotiate: one m-line per remote source
            remotes = tuple(RemoteSource(other, media, ssrc) for other in SIZES if other != name
                            for media, ssrc in ssrcs[other].items())
            await pc.setRemoteDescription(RTCSessionDescription(
                offer_sdp(meeting.transport(name), remotes, version=2), "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        for name in peers:
            received = []
            while len(received) < 6:
                try:
                    received.append(await asyncio.wait_for(tracks[name].get(), 10))
                except TimeoutError:
                    raise AssertionError(f"{name} got {[t.kind for t in received]} "
                                         f"{pc.remoteDescription.sdp}") from None
            # The first two tracks belong to the sendrecv m-lines, which carry nothing here.
            video = [t for t in received[2:] if t.kind == "video"]
            audio = [t for t in received[2:] if t.kind == "audio"]
            decoded = await asyncio.gather(*(faithful_frames(t, 40) for t in video))
            others = {size for other, size in SIZES.items() if other != name}
            assert set(decoded) == others, name
            await asyncio.gather(*(last_frame(t, 5) for t in audio))
        for pc in peers.values():
            await pc.close()
        await disconnect(focus)

    asyncio.run(scenario())


def test_bridge_channel(stack: Stack) -> None:
    async def allocate() -> Meeting:
        focus = await connect("focus@auth.localhost/focus", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        meeting = await Meeting.create(focus, "chat", ("ann", "ben"))
        await disconnect(focus)
        return meeting

    meeting = asyncio.run(allocate())
    urls = {name: meeting.transport(name).web_socket_url for name in ("ann", "ben")}
    with pytest.raises(WebSocketRefused) as refused:
        WebSocketClient(urls["ann"].replace("pwd=", "pwd=wrong"))
    assert refused.value.status == 403
    ann, ben = WebSocketClient(urls["ann"]), WebSocketClient(urls["ben"])
    for client in (ann, ben):
        assert json.loads(client.receive())["colibriClass"] == "ServerHello"
    ann.send('{"colibriClass":"EndpointMessage","to":"","msgPayload":{"hello":"ben"}}')
    relayed = json.loads(ben.receive())
    assert relayed == {"colibriClass": "EndpointMessage", "from": "ann", "to": "",
                       "msgPayload": {"hello": "ben"}}
    ann.send("not json")  # ignored, the channel stays open
    ben.send('{"colibriClass":"EndpointMessage","to":"ann","msgPayload":1}')
    assert json.loads(ann.receive())["from"] == "ben"
    ann.close()
    ben.close()


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

ANSWER_IN_PAGE = """async (offer) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const stream = await navigator.mediaDevices.getUserMedia({audio: true, video: true});
  await pc.setRemoteDescription({type: 'offer', sdp: offer});
  for (const track of stream.getTracks()) {
    const transceiver = pc.getTransceivers().find(
      t => t.receiver.track.kind === track.kind && !t.sender.track);
    transceiver.direction = 'sendrecv';
    await transceiver.sender.replaceTrack(track);
  }
  await pc.setLocalDescription(await pc.createAnswer());
  await new Promise(resolve => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange',
      () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 3000);
  });
  return pc.localDescription.sdp;
}"""

FRAMES_DECODED = """async () => {
  const stats = await window.pc.getStats();
  let frames = 0;
  stats.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video')
                         frames += r.framesDecoded || 0; });
  return frames;
}"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is missing")
def test_chromium_and_aiortc_exchange_video_through_the_bridge(stack: Stack,
                                                               tmp_path: Path) -> None:
    from playwright.async_api import async_playwright

    async def scenario() -> None:
        focus = await connect("focus@auth.localhost/focus-c", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        meeting = await Meeting.create(focus, "browser", ("chromium", "aiortc"))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = await browser.new_page()
            # A page on localhost is a secure context, where getUserMedia exists.
            await page.goto(f"http://127.0.0.1:{stack.bridge_http_port}/about/health")
            answer = await page.evaluate(ANSWER_IN_PAGE, offer_sdp(meeting.transport("chromium")))
            await meeting.update(answer_to_endpoint("chromium", answer))
            pc = RTCPeerConnection()
            pc.addTrack(MediaPlayer("testsrc=size=320x240:rate=15", format="lavfi").video)
            video = await first_video(await meeting.join("aiortc", pc))
            assert await receive_frames(video, 20) == 20  # Chromium's fake camera, decoded
            decoded = 0
            for _ in range(100):
                decoded = await page.evaluate(FRAMES_DECODED)
                if decoded >= 20:
                    break
                await asyncio.sleep(0.1)
            assert decoded >= 20  # aiortc's test pattern, decoded in Chromium
            await browser.close()
            await pc.close()
        await disconnect(focus)

    asyncio.run(scenario())


def test_stats_health_and_metrics(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.bridge_http_port}"
    with urllib.request.urlopen(f"{base}/colibri/stats", timeout=10) as response:
        stats = json.load(response)
    assert {"conferences", "endpoints", "packets_received", "packets_sent",
            "packet_rate_download", "packet_rate_upload", "bit_rate_download",
            "bit_rate_upload", "loss_rate_download", "loss_rate_upload", "rtt_aggregate",
            "stress_level", "graceful_shutdown"} <= set(stats)
    with urllib.request.urlopen(f"{base}/about/health", timeout=10) as response:
        assert json.load(response) == {"status": "ok"}
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        assert b"vw_bridge_packets_sent" in response.read()


class LossyRelay(asyncio.DatagramProtocol):
    """Between a peer and the bridge: drops about 5% of SRTP media toward the peer, reliably
    passes ICE and DTLS, and counts the retransmissions (RTX) that follow."""

    def __init__(self, bridge: tuple[str, int], loss: float = 0.05) -> None:
        self.bridge = bridge
        self.loss = loss
        self.peer: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None
        self.dropped: set[tuple[int, int]] = set()
        self.retransmissions = 0
        self.random = random.Random(7)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.peer = addr
        self.upstream.sendto(data, self.bridge)

    def from_bridge(self, data: bytes) -> None:
        if 128 <= data[0] <= 191 and not 192 <= data[1] <= 223:
            if data[1] & 0x7F == RTX_PT:
                self.retransmissions += 1
            elif self.random.random() < self.loss:
                self.dropped.add((int.from_bytes(data[8:12], "big"),
                                  int.from_bytes(data[2:4], "big")))
                return
        if self.peer is not None:
            self.transport.sendto(data, self.peer)


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.from_bridge(data)


def test_nack_repairs_five_percent_loss(stack: Stack) -> None:
    """The relay drops 5% of the media toward the viewer; the bridge answers the viewer's
    NACKs from its cache as RTX, so decoded frames stay faithful."""

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        relay = LossyRelay(("127.0.0.1", stack.udp_port))
        await loop.create_datagram_endpoint(lambda: relay, local_addr=("127.0.0.1", 0))
        relay.upstream, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(relay), local_addr=("127.0.0.1", 0))
        relay_port = relay.transport.get_extra_info("sockname")[1]
        focus = await connect("focus@auth.localhost/focus-l", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        meeting = await Meeting.create(focus, "lossy", ("source", "viewer"))
        source = RTCPeerConnection()
        source.addTrack(CounterTrack())
        await meeting.join("source", source)
        video_ssrc = media_ssrcs(source.localDescription.sdp)["video"]
        remote = RemoteSource("source", "video", video_ssrc,
                              rtx_partner(source.localDescription.sdp, video_ssrc))
        assert remote.rtx is not None
        viewer = RTCPeerConnection()
        transport = meeting.transport("viewer")  # reached only through the relay
        transport = dataclasses.replace(transport, candidates=[
            dataclasses.replace(transport.candidates[0], port=relay_port)])
        # aiortc takes RTX only from an SSRC its m-line signals, and routes RTX by payload
        # type, which must be unique to that m-line: the source rides on the video m-line.
        await meeting.join("viewer", viewer, offer_sdp(transport, carried=remote))
        video = viewer.getTransceivers()[1].receiver.track
        counters, quality = [], []
        for _ in range(150):  # five seconds
            image = (await asyncio.wait_for(video.recv(), 15)).to_ndarray(format="rgb24")
            counters.append(read_counter(image))
            quality.append(psnr(image, counter_image(counters[-1])))
        assert len(relay.dropped) >= 5
        assert relay.retransmissions >= len(relay.dropped) // 2  # NACKed and resent as RTX
        stats_url = f"http://127.0.0.1:{stack.bridge_http_port}/colibri/stats"
        with urllib.request.urlopen(stats_url, timeout=10) as response:
            stats = json.load(response)
        assert stats["nack_retransmissions"] >= len(relay.dropped) // 2  # from the bridge
        assert stats["rtt_aggregate"] > 0
        steps = [(b - a) % 256 for a, b in zip(counters[-30:], counters[-29:], strict=False)]
        assert all(0 < step < 16 for step in steps), counters
        assert min(quality[-30:]) >= 30, quality  # no lasting corruption
        for pc in (source, viewer):
            await pc.close()
        await disconnect(focus)

    asyncio.run(scenario())


def test_drain_refuses_new_conferences(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.bridge_http_port}"

    def drain(value: object) -> int:
        request = urllib.request.Request(f"{base}/colibri/drain", method="POST",
                                         data=json.dumps({"drain": value}).encode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code

    async def create() -> str:
        focus = await connect("focus@auth.localhost/focus-d", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        iq = focus.make_iq_set(ito="jvb.localhost")
        request = colibri2.ConferenceModify(meeting_id=str(uuid.uuid4()), create=True)
        iq.xml.append(ElementTree.fromstring(request.toElement().toXml()))
        try:
            reply = await iq.send(timeout=10)
            return reply["type"]
        except IqError as e:
            return colibri2.Colibri2Error.fromStanza(xml(str(e.iq))).reason
        finally:
            await disconnect(focus)

    assert drain("yes") == 400
    assert drain(True) == 200
    try:
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(f"{base}/about/health", timeout=10)
        assert unhealthy.value.code == 503
        assert asyncio.run(create()) == "graceful_shutdown"
    finally:
        assert drain(False) == 200
    assert asyncio.run(create()) == "result"


def counter_image(n: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A smooth gradient with the frame number, mod 256, as eight black or white squares
    along the top (``width`` >= 320)."""
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:, :, 0] = np.linspace(30, 220, width, dtype=np.uint8)[None, :]
    image[:, :, 1] = np.linspace(40, 200, height, dtype=np.uint8)[:, None]
    image[:, :, 2] = 128
    for bit in range(8):
        image[0:40, bit * 40:(bit + 1) * 40] = 255 if n >> bit & 1 else 0
    return image


def read_counter(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8)
               if image[8:32, bit * 40 + 8:bit * 40 + 32].mean() > 128)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


class CounterTrack(VideoStreamTrack):
    """Video whose frames say their own number."""

    def __init__(self, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.count = 0
        self.size = (width, height)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(counter_image(self.count, *self.size), format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


async def faithful_frames(track, count: int) -> tuple[int, int]:
    """Decode ``count`` frames of CounterTrack video; check that after the first ten they come
    in order and within 30 dB PSNR of what was sent; return the picture size."""
    counters, quality = [], []
    for _ in range(count):
        frame = await asyncio.wait_for(track.recv(), 15)
        image = frame.to_ndarray(format="rgb24")
        counters.append(read_counter(image))
        quality.append(psnr(image, counter_image(counters[-1], frame.width, frame.height)))
    steps = [(b - a) % 256 for a, b in zip(counters[10:], counters[11:], strict=False)]
    assert all(0 < step < 16 for step in steps), counters
    assert min(quality[10:]) >= 30, quality
    return frame.width, frame.height


def test_decoded_video_is_in_order_and_faithful(stack: Stack) -> None:
    async def scenario() -> None:
        focus = await connect("focus@auth.localhost/focus-p", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        meeting = await Meeting.create(focus, "psnr", ("source", "viewer"))
        peers, queues = {}, {}
        for name in ("source", "viewer"):
            pc = RTCPeerConnection()
            pc.addTrack(CounterTrack())
            queues[name] = await meeting.join(name, pc)
            peers[name] = pc
        video = await first_video(queues["viewer"])
        assert await faithful_frames(video, 60) == (320, 240)
        for pc in peers.values():
            await pc.close()
        await disconnect(focus)

    asyncio.run(scenario())
