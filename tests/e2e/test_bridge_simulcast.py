"""Simulcast through vw-bridge: a Chromium camera sends three SSRC-simulcast layers (SDP munged
as lib-jitsi-meet does); two aiortc receivers, constrained over the bridge channel, each decode
the layer their constraints allow, and keep decoding when the constraints change."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import shutil
from collections.abc import Callable

import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection

from tests.e2e.conftest import FOCUS_PASSWORD, Stack
from tests.e2e.slix import connect, disconnect
from tests.e2e.test_bridge_media import (
    CHROMIUM_ARGS,
    Meeting,
    RemoteSource,
    answer_to_endpoint,
    offer_sdp,
)
from tests.e2e.wsclient import WebSocketClient
from vw.bridge import colibri2
from vw.rtp.extensions import TRANSPORT_CC_URI

TRANSPORT_CC_ID = 5
#: The heights of Chromium's three simulcast layers of a 1280x720 camera, lowest first.
LAYER_HEIGHTS = [180, 360, 720]
#: Largest step between the RTP timestamps of consecutive decoded frames (one second): more
#: would be a hole in the picture, not a layer switch.
MAX_TIMESTAMP_STEP = 90_000

SENDER_ANSWER = """async (offer) => {
  const pc = new RTCPeerConnection();
  window.pc = pc;
  const stream = await navigator.mediaDevices.getUserMedia(
    {video: {width: {exact: 1280}, height: {exact: 720}, frameRate: 30}});
  const track = stream.getVideoTracks()[0];
  await pc.setRemoteDescription({type: 'offer', sdp: offer});
  const transceiver = pc.getTransceivers().find(t => t.receiver.track.kind === 'video');
  transceiver.direction = 'sendrecv';
  await transceiver.sender.replaceTrack(track);
  transceiver.sender.setStreams(stream);
  const answer = await pc.createAnswer();
  return {sdp: answer.sdp, settings: track.getSettings()};
}"""

SET_LOCAL = """async (sdp) => {
  const pc = window.pc;
  await pc.setLocalDescription({type: 'answer', sdp});
  await new Promise(resolve => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange',
      () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 3000);
  });
  // A busy shared CPU must not make Chromium scale the layers down.
  const sender = pc.getSenders().find(s => s.track && s.track.kind === 'video');
  const parameters = sender.getParameters();
  parameters.degradationPreference = 'maintain-resolution';
  await sender.setParameters(parameters);
  return pc.localDescription.sdp;
}"""

OUTBOUND = """async () => {
  const stats = await window.pc.getStats();
  const layers = [];
  stats.forEach(r => { if (r.type === 'outbound-rtp' && r.kind === 'video')
    layers.push({ssrc: r.ssrc, height: r.frameHeight || 0, frames: r.framesEncoded || 0,
                 bytes: r.bytesSent || 0, limitation: r.qualityLimitationReason}); });
  return layers;
}"""


def offer_with_transport_cc(transport: colibri2.IceUdpTransport) -> str:
    """The bridge's offer with transport-wide congestion control, as Jicofo offers it: the
    bridge's feedback lets Chromium's bandwidth estimate grow enough for all three layers."""
    sdp = offer_sdp(transport).replace(
        "a=rtcp-mux\r\n", f"a=rtcp-mux\r\na=extmap:{TRANSPORT_CC_ID} {TRANSPORT_CC_URI}\r\n")
    return sdp.replace("a=rtcp-fb:100 nack pli\r\n",
                       "a=rtcp-fb:100 nack pli\r\na=rtcp-fb:100 transport-cc\r\n")


def munge_simulcast(sdp: str, rng: random.Random) -> str:
    """What lib-jitsi-meet does to Chrome's answer (sdp-simulcast and RtxModifier): two more
    SSRCs in a SIM group, lowest layer first, and an RTX SSRC in an FID group for each."""
    sections = sdp.split("\r\nm=")
    for n, section in enumerate(sections):
        if not section.startswith("video") or "a=ssrc:" not in section:
            continue
        primary, rtx = map(int, re.search(r"a=ssrc-group:FID (\d+) (\d+)", section).groups())
        attributes = re.findall(rf"a=ssrc:{primary} (.+)", section)
        kept = [line for line in section.split("\r\n") if line
                and not line.startswith(("a=ssrc:", "a=ssrc-group:"))]
        layers = [(primary, rtx)] + [(rng.getrandbits(32), rng.getrandbits(32))
                                     for _ in range(2)]
        kept += [f"a=ssrc:{ssrc} {attribute.strip()}" for pair in layers for ssrc in pair
                 for attribute in attributes]
        kept += [f"a=ssrc-group:FID {media} {repair}" for media, repair in layers]
        kept.append("a=ssrc-group:SIM " + " ".join(str(media) for media, _ in layers))
        sections[n] = "\r\n".join(kept) + ("\r\n" if n == len(sections) - 1 else "")
    return "\r\nm=".join(sections)


def constraints(max_height: int) -> str:
    """Jitsi's ReceiverVideoConstraints, one max height for every sender."""
    return json.dumps({"colibriClass": "ReceiverVideoConstraints", "lastN": -1,
                       "defaultConstraints": {"maxHeight": max_height}})


class DecodeErrors(logging.Handler):
    """aiortc logs the frames its decoder fails on (and otherwise carries on)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "decode" in message:
            self.messages.append(message)


class Receiver:
    """An aiortc peer that is sent the camera on SIM[0], and its bridge channel."""

    def __init__(self, name: str, pc: RTCPeerConnection, channel: WebSocketClient) -> None:
        self.name = name
        self.pc = pc
        self.channel = channel
        # The offer's m-lines: audio and video (sendrecv, nothing comes), then the camera.
        self.track = next(t.receiver.track for t in pc.getTransceivers() if t.mid == "2")
        #: (height, RTP timestamp) of every frame decoded.
        self.frames: list[tuple[int, int]] = []

    def constrain(self, max_height: int) -> None:
        self.channel.send(constraints(max_height))

    async def until(self, wanted: Callable[[int], bool], count: int = 30,
                    limit: int = 600) -> None:
        """Decode frames until ``count`` in a row have a height that is ``wanted``."""
        run = 0
        for _ in range(limit):
            frame = await asyncio.wait_for(self.track.recv(), 10)
            self.frames.append((frame.height, frame.pts))
            run = run + 1 if wanted(frame.height) else 0
            if run >= count:
                return
        raise AssertionError(f"{self.name} decoded heights {self.heights()[-100:]}")

    def heights(self) -> list[int]:
        return [height for height, _ in self.frames]

    def timestamp_steps(self) -> list[int]:
        stamps = [pts for _, pts in self.frames]
        return [(b - a) % 2**32 for a, b in zip(stamps, stamps[1:], strict=False)]


async def start_camera(page, meeting: Meeting) -> tuple[list[int], dict[int, int]]:
    """Chromium answers the bridge's offer with a munged simulcast answer and sends; returns
    the SIM group and the FID pairs the bridge was told about."""
    created = await page.evaluate(SENDER_ANSWER,
                                  offer_with_transport_cc(meeting.transport("camera")))
    assert (created["settings"]["width"], created["settings"]["height"]) == (1280, 720)
    munged = munge_simulcast(created["sdp"], random.Random(3))
    local = await page.evaluate(SET_LOCAL, munged)
    assert "a=ssrc-group:SIM" in local  # Chromium took the munged answer
    # The focus passes on the munged answer (with the candidates gathered meanwhile).
    endpoint = answer_to_endpoint("camera", munged + "".join(
        f"{line}\r\n" for line in re.findall(r"a=candidate:[^\r\n]*", local)))
    endpoint.media = [colibri2.Media("video", header_extensions=[
        colibri2.HeaderExtension(TRANSPORT_CC_ID, TRANSPORT_CC_URI)])]
    await meeting.update(endpoint)
    sim = [int(s) for s in re.search(r"a=ssrc-group:SIM ([\d ]+)", munged).group(1).split()]
    fid = {int(a): int(b) for a, b in re.findall(r"a=ssrc-group:FID (\d+) (\d+)", munged)}
    assert len(sim) == 3 and set(sim) <= set(fid)
    return sim, fid


async def sent_layers(page, sim: list[int]) -> list[int | None]:
    """The heights Chromium encodes on each SIM SSRC (lowest first); waits, bounded, for
    its bandwidth estimate to allow all three."""
    heights: list[int | None] = []
    for _ in range(120):
        layers = await page.evaluate(OUTBOUND)
        sent = {layer["ssrc"]: layer["height"] for layer in layers if layer["frames"] > 0}
        heights = [sent.get(ssrc) for ssrc in sim]
        if heights == LAYER_HEIGHTS:
            break
        await asyncio.sleep(0.25)
    return heights


async def join_receiver(meeting: Meeting, name: str, camera: RemoteSource) -> Receiver:
    # MAX_BUNDLE: under the default policy aiortc leaves the second video m-line of a first
    # offer on a transport it then discards, and the camera would never reach its track.
    pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
    await meeting.join(name, pc, offer_sdp(meeting.transport(name), (camera,)))
    channel = await asyncio.to_thread(WebSocketClient, meeting.transport(name).web_socket_url)
    hello = json.loads(await asyncio.to_thread(channel.receive))
    assert hello["colibriClass"] == "ServerHello"
    return Receiver(name, pc, channel)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is missing")
def test_receivers_decode_the_simulcast_layer_their_constraints_allow(stack: Stack) -> None:
    from playwright.async_api import async_playwright

    errors = DecodeErrors()
    logging.getLogger("aiortc").addHandler(errors)

    async def scenario() -> None:
        focus = await connect("focus@auth.localhost/focus-sim", FOCUS_PASSWORD, stack.c2s_port,
                              stack.ca)
        meeting = await Meeting.create(focus, "simulcast", ("camera", "low", "high"))
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = await browser.new_page()
            # A page on localhost is a secure context, where getUserMedia exists.
            await page.goto(f"http://127.0.0.1:{stack.bridge_http_port}/about/health")
            sim, fid = await start_camera(page, meeting)
            assert await sent_layers(page, sim) == LAYER_HEIGHTS, await page.evaluate(OUTBOUND)

            # Receivers are told about SIM[0] and its RTX partner only, as Jitsi clients are.
            camera = RemoteSource("camera", "video", sim[0], fid[sim[0]])
            low = await join_receiver(meeting, "low", camera)
            high = await join_receiver(meeting, "high", camera)
            low.constrain(180)
            high.constrain(720)
            await asyncio.gather(low.until(lambda h: h == 180), high.until(lambda h: h == 720))

            # Mid-stream, swap: each receiver switches layers and keeps decoding.
            low.constrain(720)
            high.constrain(180)
            await asyncio.gather(low.until(lambda h: h == 720), high.until(lambda h: h == 180))
            # And both to the middle layer, one from above and one from below.
            low.constrain(360)
            high.constrain(360)
            await asyncio.gather(low.until(lambda h: h == 360), high.until(lambda h: h == 360))

            for receiver in (low, high):
                heights = receiver.heights()
                # Only whole layers, and the switches happened on the one stream (SIM[0]).
                assert set(heights) <= set(LAYER_HEIGHTS), (receiver.name, set(heights))
                stats = await receiver.pc.getStats()
                assert {s.ssrc for s in stats.values() if s.type == "inbound-rtp"} == {sim[0]}
                # Continuous: in order, no frame repeated, no hole around the switches.
                steps = receiver.timestamp_steps()
                assert all(0 < step <= MAX_TIMESTAMP_STEP for step in steps), (
                    receiver.name, max(steps), min(steps))
            assert not errors.messages, errors.messages
            for receiver in (low, high):
                receiver.channel.close()
                await receiver.pc.close()
            await browser.close()
        await disconnect(focus)

    try:
        asyncio.run(scenario())
    finally:
        logging.getLogger("aiortc").removeHandler(errors)
