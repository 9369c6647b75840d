"""Python Jitsi clients (lib-jitsi-meet's protocol, aiortc media; tests/e2e/jitsi) meet through
the real focus and bridge: three decode each other's video and hear each other's audio, telling
senders apart by picture size and tone, and see a leaver's tracks go; a session restarted after
an ICE failure comes back with its media."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import numpy as np
import pytest
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from tests.e2e.conftest import Stack
from tests.e2e.jitsi.client import JitsiClient, RemoteTrack
from tests.e2e.jitsi.sdp import RemoteOffer, UnifiedPlan, session_accept
from tests.xmpp.helpers import xml
from vw.bridge.colibri2 import (
    Candidate,
    Fingerprint,
    IceUdpTransport,
    MediaSource,
    Parameter,
    Source,
    SourceGroup,
)
from vw.focus.jingle import Jingle
from vw.focus.offer import MediaSources, OfferConfig, session_initiate, source_remove

#: Each sender's picture size and tone, so a decoded frame says who sent it.
SENDERS = {"amy": ((320, 240), 440), "bert": ((352, 288), 660), "cleo": ((176, 144), 880)}


def service_url(stack: Stack) -> str:
    return f"ws://127.0.0.1:{stack.http_port}/xmpp-websocket"


def report(stack: Stack, clients: Iterable[JitsiClient]) -> None:
    """On a failure: every client's state and the end of the server's log (pytest shows
    captured output of failed tests only)."""
    for client in clients:
        print(client.describe())
    log = (stack.directory / "twistd.log").read_text(errors="replace").splitlines()
    print("\n".join(log[-40:]))


async def frame_sizes(remote: RemoteTrack, count: int = 5) -> set[tuple[int, int]]:
    """The sizes of ``count`` decoded video frames."""
    sizes = set()
    for _ in range(count):
        frame = await remote.track.recv()
        sizes.add((frame.width, frame.height))
    return sizes


async def tone(remote: RemoteTrack, skip: int = 5, frames: int = 15) -> float:
    """The strongest frequency (Hz) in ``frames`` decoded audio frames, after ``skip``."""
    samples, rate = [], 48000
    for index in range(skip + frames):
        frame = await remote.track.recv()
        if index >= skip:
            rate = frame.sample_rate
            data = frame.to_ndarray()  # s16, packed: (1, samples * channels)
            samples.append(data.reshape(-1, len(frame.layout.channels))[:, 0])
    signal = np.concatenate(samples).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


async def check_media(client: JitsiClient, sender: JitsiClient,
                      tracks: dict[str, RemoteTrack]) -> None:
    """``client`` decodes ``sender``'s picture and hears its tone on the tracks it owns."""
    (size, frequency) = SENDERS[sender.display_name]
    assert await frame_sizes(tracks["video"]) == {size}, (client, sender)
    heard = await tone(tracks["audio"])
    assert abs(heard - frequency) < 20, (client, sender, heard)


def test_three_jitsi_clients_meet_through_focus_and_bridge(stack: Stack) -> None:
    async def scenario() -> None:
        clients = {name: JitsiClient(service_url(stack), "threeway", display_name=name,
                                     video_size=size, audio_frequency=frequency)
                   for name, (size, frequency) in SENDERS.items()}
        everyone = list(clients.values())
        try:
            async with asyncio.timeout(40):
                for client in clients.values():
                    await client.join()
                    await client.wait_connected()
                    await client.wait_for(lambda c=client: c.me.role == "moderator", 5,
                                          "the focus to make us a moderator")
                ids = {name: client.endpoint_id for name, client in clients.items()}
                assert len(set(ids.values())) == 3

                # Everyone receives the other two, each on the tracks its owner's sources got.
                checks = []
                for name, client in clients.items():
                    others = [other for other in clients if other != name]
                    tracks = await client.wait_for_tracks([ids[o] for o in others])
                    assert set(client.participants) == {ids[o] for o in others}
                    for other in others:
                        assert tracks[ids[other]]["video"].owner.endswith("/" + ids[other])
                        checks.append(check_media(client, clients[other], tracks[ids[other]]))
                await asyncio.gather(*checks)

                # The bridge channel: hello, then endpoint messages between participants.
                for client in clients.values():
                    await client.wait_for(lambda c=client: any(
                        m.get("colibriClass") == "ServerHello" for m in c.bridge_messages),
                        5, "ServerHello")
                clients["amy"].send_endpoint_message({"hello": "all"})
                for name in ("bert", "cleo"):
                    client = clients[name]
                    await client.wait_for(lambda c=client: any(
                        m.get("colibriClass") == "EndpointMessage"
                        and m.get("from") == ids["amy"] for m in c.bridge_messages),
                        5, "amy's endpoint message")

                # Cleo leaves: the others are told (source-remove) and drop her tracks.
                cleo = clients.pop("cleo")
                await cleo.leave()
                for client in clients.values():
                    gone = await client.wait_removed(ids["cleo"])
                    assert {r.media for r in gone} == {"audio", "video"}
                    for remote in gone:
                        assert remote.track.readyState == "ended"
                        with pytest.raises(MediaStreamError):
                            await remote.track.recv()
                    assert "source-remove" in client.jingle_actions
                    await client.wait_for(lambda c=client: ids["cleo"] not in c.participants,
                                          5, "cleo's presence to go")

                # After that renegotiation, amy and bert still see and hear each other.
                amy, bert = clients["amy"], clients["bert"]
                await asyncio.gather(check_media(amy, bert, amy.tracks_of(ids["bert"])),
                                     check_media(bert, amy, bert.tracks_of(ids["amy"])))
                for client in (*clients.values(), cleo):
                    assert not client.errors, client.errors
                    assert not client.refused_jingle, client.refused_jingle
                    assert not client.sources_before_presence, client.sources_before_presence
                    assert client.jingle_actions[0] == "session-initiate"
        except BaseException:
            report(stack, everyone)
            raise
        finally:
            await asyncio.gather(*(client.leave() for client in clients.values()))

    asyncio.run(scenario())


def test_a_session_restarted_after_ice_failure_comes_back(stack: Stack) -> None:
    """lib-jitsi-meet's ICE-failure path: session-terminate with ``connectivity-error`` and
    ``<bridge-session restart="true"/>``; the focus invites again, the other participant is
    told the old sources went and the new ones came, and media flows both ways again."""

    async def scenario() -> None:
        amy, bert = (JitsiClient(service_url(stack), "restarted", display_name=name,
                                 video_size=SENDERS[name][0], audio_frequency=SENDERS[name][1])
                     for name in ("amy", "bert"))
        try:
            async with asyncio.timeout(30):
                for client in (amy, bert):
                    await client.join()
                    await client.wait_connected()
                await amy.wait_for_tracks([bert.endpoint_id])
                before = (await bert.wait_for_tracks([amy.endpoint_id]))[amy.endpoint_id]
                old = amy.sid
                await amy.terminate(restart=True)
                await amy.wait_for(lambda: amy.sid not in (None, old) and amy.accepted, 10,
                                   "a new session-initiate")
                await amy.wait_connected()
                await bert.wait_for(lambda: all(r in bert.removed_tracks
                                                for r in before.values()), 10,
                                    "amy's old tracks to go")
                await bert.wait_for(lambda: len(bert.tracks_of(amy.endpoint_id)) == 2, 10,
                                    "amy's new tracks")
                after = bert.tracks_of(amy.endpoint_id)
                assert not {r.ssrcs for r in after.values()} & {r.ssrcs for r in before.values()}
                assert bert.jingle_actions[-2:] == ["source-remove", "source-add"]
                await asyncio.gather(
                    check_media(bert, amy, after),
                    check_media(amy, bert, amy.tracks_of(bert.endpoint_id)))
                assert amy.jingle_actions.count("session-initiate") == 2
                for client in (amy, bert):
                    assert not client.errors and not client.refused_jingle
        except BaseException:
            report(stack, (amy, bert))
            raise
        finally:
            await asyncio.gather(amy.leave(), bert.leave())

    asyncio.run(scenario())


def test_the_focus_presence_advertises_terminate_restart(stack: Stack) -> None:
    """lib-jitsi-meet reads ``support-terminate-restart`` from the focus's presence
    (``<conference-properties xmlns="http://jitsi.org/protocol/focus">``), not from the
    conference IQ answer; without it an ICE failure ends the conference instead of restarting
    the session (PROTOCOL.md §3, §4)."""

    async def scenario() -> dict[str, str]:
        client = JitsiClient(service_url(stack), "properties", display_name="amy")
        try:
            await client.join()
            return client.focus_properties
        finally:
            await client.leave()

    assert asyncio.run(scenario()).get("support-terminate-restart") == "true"


def test_jingle_to_unified_plan_and_back() -> None:
    """The translation alone, on the focus's own offer builder: a Chromium-like simulcast
    sender (SIM of 3, an FID per layer), an audio sender and the bridge's sources become one
    m-line per remote stream that aiortc accepts; a source-remove leaves an inactive m-line;
    aiortc's answer becomes a session-accept lib-jitsi-meet's shape."""
    owner = "r@conference.localhost/c0ffee00"
    msid = "stream-1 video-1"
    layers, rtx = [11, 12, 13], [21, 22, 23]
    video = MediaSources(
        [Source(s, parameters=[Parameter("msid", msid)]) for s in layers + rtx],
        [SourceGroup("SIM", layers)] + [SourceGroup("FID", [p, r]) for p, r in zip(
            layers, rtx, strict=True)])
    audio = MediaSources([Source(31, parameters=[Parameter("msid", "stream-1 audio-1")])])
    bridge = [MediaSource("audio", "jvb-a0", [Source(1)]), MediaSource("video", "jvb-v0",
                                                                       [Source(2)])]
    transport = IceUdpTransport(
        ufrag="bu", pwd="p" * 22, rtcp_mux=True,
        fingerprints=[Fingerprint("sha-256", "actpass", ":".join(["AB"] * 32))],
        candidates=[Candidate(1, "1", "127.0.0.1", 10000, 2130706431, "udp", "host")])
    offer = session_initiate(OfferConfig(), "s1", "focus@auth.localhost/focus", transport,
                             {owner: {"audio": audio, "video": video}}, bridge)
    remote = RemoteOffer(Jingle.fromElement(xml(offer.toElement().toXml())))
    plan = UnifiedPlan()
    added, retired = plan.update(remote)
    assert [(m.media, m.stream.ssrcs, m.stream.endpoint) for m in added] == [
        ("audio", (31,), "c0ffee00"), ("video", (11, 21), "c0ffee00")]  # SIM[0] + its RTX
    sdp = plan.offer(remote)
    assert sdp.count("m=") == 4 and "a=ssrc:1 " not in sdp and "a=ssrc:12 " not in sdp
    assert "a=ssrc-group:FID 11 21" in sdp and "SIM" not in sdp and "a=ice-lite" not in sdp

    async def answer(text: str) -> str:
        pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        try:
            await pc.setRemoteDescription(RTCSessionDescription(text, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            receivers = {t.mid: t.receiver.track for t in pc.getTransceivers()}
            assert receivers["3"] is not None and receivers["3"].kind == "video"
            return pc.localDescription.sdp
        finally:
            await pc.close()

    accept = session_accept(asyncio.run(answer(sdp)), remote, "s1", "r@c/focus", "me@x/y")
    assert [c.name for c in accept.contents] == ["audio", "video"]
    assert all(c.creator == "responder" and c.transport.fingerprint.setup == "active"
               and not c.transport.candidates and c.description.rtcp_mux
               and not c.description.sources for c in accept.contents)  # nothing to send
    assert accept.bundle.contents == ["audio", "video"]

    removed = source_remove("s1", {owner: {"video": video}})
    remote.remove_sources(Jingle.fromElement(xml(removed.toElement().toXml())).contents)
    added, retired = plan.update(remote)
    assert not added and [m.mid for m in retired] == ["3"]
    sdp = plan.offer(remote)
    assert sdp.split("m=")[4].count("a=inactive") == 1 and "a=ssrc:11 " not in sdp
    assert "o=- " in sdp and " 2 IN IP4" in sdp  # a new session version
