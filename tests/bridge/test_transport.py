"""The bridge's shared port in memory: forwarding, and hostile datagrams dropped and counted."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.bridge.harness import FakeClient, Network, make_bridge, rtp
from vw.bridge import colibri2
from vw.bridge.allocation import Allocations
from vw.bridge.channel import parse_message
from vw.bridge.ice import IceAgent
from vw.rtp.certificate import DtlsCertificate
from vw.rtp.dtls import DtlsSession
from vw.rtp.extensions import AUDIO_LEVEL_URI, TRANSPORT_CC_URI, get_transport_cc
from vw.rtp.rtcp import TransportFeedback, parse_compound
from vw.stun import (
    Message,
    MessageClass,
    Method,
    Username,
    XorMappedAddress,
    short_term_key,
)


@pytest.fixture
def world():
    network = Network()
    clock = [1000.0]
    bridge = make_bridge(network, clock)
    alice = FakeClient(bridge, network, "m1", "alice", 5001, [1111])
    bob = FakeClient(bridge, network, "m1", "bob", 5002, [2222])
    alice.connect(clock[0])
    bob.connect(clock[0])
    return bridge, network, alice, bob


def test_media_goes_to_the_other_endpoint(world) -> None:
    bridge, network, alice, bob = world
    packet = rtp(1111, 1)
    alice.deliver(alice.srtp.protect(packet), 1000.0)
    assert bob.received_media() == [packet]
    assert alice.received_media() == []
    assert bridge.stats()["packets_sent"] == 1


def test_unannounced_ssrc_is_dropped(world) -> None:
    bridge, network, alice, bob = world
    alice.deliver(alice.srtp.protect(rtp(2222, 1)), 1000.0)  # bob's SSRC, from alice
    alice.deliver(alice.srtp.protect(rtp(9999, 2)), 1000.0)
    assert bob.received_media() == []
    assert bridge.stats()["dropped_unannounced"] == 2


def test_bad_tag_and_replay_are_dropped(world) -> None:
    bridge, network, alice, bob = world
    protected = alice.srtp.protect(rtp(1111, 5))
    tampered = protected[:-1] + bytes([protected[-1] ^ 1])
    alice.deliver(tampered, 1000.0)
    alice.deliver(protected, 1000.0)
    alice.deliver(protected, 1000.0)  # replayed
    assert len(bob.received_media()) == 1
    assert bridge.stats()["dropped_srtp"] == 2


def test_stun_with_wrong_username_or_integrity(world) -> None:
    bridge, network, alice, bob = world
    before = bridge.stats()["dropped_stun"]
    network.take(alice.address)  # the key frame request bob's arrival caused
    wrong_user = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
        Username(f"nobody:{alice.ufrag}")])
    alice.deliver(wrong_user.bytes(short_term_key(alice.remote_pwd), fingerprint=True), 1000.0)
    wrong_key = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
        Username(f"{alice.remote_ufrag}:{alice.ufrag}")])
    alice.deliver(wrong_key.bytes(b"not the password", fingerprint=True), 1000.0)
    assert network.take(alice.address) == []
    assert bridge.stats()["dropped_stun"] == before + 2


def test_an_ipv4_client_of_a_dual_stack_socket_is_answered_with_its_ipv4_address() -> None:
    agent = IceAgent()
    agent.set_remote("remote", "remote-password-remote")
    request = Message(Method.BINDING, MessageClass.REQUEST, attributes=[
        Username(f"{agent.local_ufrag}:remote")])
    raw = request.bytes(short_term_key(agent.local_pwd), fingerprint=True)
    source = ("::ffff:198.51.100.7", 5000, 0, 0)
    [(answer, target), *checks] = agent.request_received(Message.parse(raw), raw, source, 1.0)
    assert target == source
    assert Message.parse(answer).get(XorMappedAddress) == XorMappedAddress("198.51.100.7", 5000)


def test_dtls_and_srtp_from_unknown_addresses(world) -> None:
    bridge, network, alice, bob = world
    transport = bridge.transport
    transport.datagram_received(bytes([22, 254, 253]) + os.urandom(60), ("127.0.0.1", 6666),
                                1000.0)
    transport.datagram_received(alice.srtp.protect(rtp(1111, 9)), ("127.0.0.1", 6667), 1000.0)
    transport.datagram_received(os.urandom(2000), alice.address, 1000.0)
    assert bob.received_media() == []
    stats = transport.stats
    assert stats.dropped_unknown == 2 and stats.dropped_oversized == 1


def test_consent_expiry_removes_the_endpoint(world) -> None:
    bridge, network, alice, bob = world
    bridge.transport.tick(1010.0)
    assert bridge.find_endpoint("m1", "alice") is not None
    assert network.paths == {alice.address, bob.address}
    for endpoint in bridge.transport.tick(1031.0):
        bridge.transport.remove_endpoint(endpoint, 1031.0)
    assert bridge.find_endpoint("m1", "alice") is None
    assert network.paths == set()


def test_an_address_change_moves_the_path(world) -> None:
    bridge, network, alice, bob = world
    endpoint = bridge.find_endpoint("m1", "alice")
    assert endpoint is not None
    endpoint.ice.on_selected(alice.address, ("127.0.0.1", 5099))
    assert network.paths == {("127.0.0.1", 5099), bob.address}


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(5000, 5003))
def test_random_datagrams_never_raise(data: bytes, port: int) -> None:
    network = Network()
    clock = [1.0]
    bridge = make_bridge(network, clock)
    bridge.transport.datagram_received(data, ("127.0.0.1", port), 1.0)


def audio_with_level(ssrc: int, seq: int, level: int) -> bytes:
    header = bytes([0x90, 111]) + seq.to_bytes(2, "big") + (seq * 960).to_bytes(4, "big")
    extension = b"\xbe\xde\x00\x01" + bytes([0x10, 0x80 | level, 0, 0])
    return header + ssrc.to_bytes(4, "big") + extension + bytes(40)


def test_dominant_speaker_is_announced_on_the_bridge_channel(world) -> None:
    bridge, network, alice, bob = world
    conference = bridge.conferences["m1"]
    Allocations(bridge).modify(colibri2.ConferenceModify(meeting_id="m1", endpoints=[
        colibri2.Endpoint(id="alice", media=[colibri2.Media(type="audio", header_extensions=[
            colibri2.HeaderExtension(id=1, uri=AUDIO_LEVEL_URI)])],
            sources=[colibri2.MediaSource(type="audio", id="alice-a0",
                                          sources=[colibri2.Source(ssrc=3333)])])]))
    frames: list[str] = []
    bob_endpoint = bridge.find_endpoint("m1", "bob")
    bob_endpoint.channel_send = frames.append
    now = 1000.0
    for seq in range(150):  # three seconds of speech (loud, with pauses), a packet every 20 ms
        now += 0.02
        level = 10 if seq % 5 < 3 else 90
        alice.deliver(alice.srtp.protect(audio_with_level(3333, seq, level)), now)
        if seq % 5 == 0:
            conference.dominant_speaker_changed(now)
    events = [json.loads(f) for f in frames]
    assert events and events[0]["colibriClass"] == "DominantSpeakerEndpointChangeEvent"
    assert events[0]["dominantSpeakerEndpoint"] == "alice"
    assert len(bob.received_media()) == 150  # audio is forwarded as it is


def with_transport_cc(ssrc: int, seq: int, transport_seq: int) -> bytes:
    header = bytes([0x90, 100]) + seq.to_bytes(2, "big") + (seq * 3000).to_bytes(4, "big")
    extension = b"\xbe\xde\x00\x01" + bytes([0x51]) + transport_seq.to_bytes(2, "big") + b"\0"
    return header + ssrc.to_bytes(4, "big") + extension + bytes(100)


def test_transport_cc_is_terminated_per_leg(world) -> None:
    bridge, network, alice, bob = world
    hdrext = [colibri2.HeaderExtension(id=5, uri=TRANSPORT_CC_URI)]
    for name in ("alice", "bob"):
        Allocations(bridge).modify(colibri2.ConferenceModify(meeting_id="m1", endpoints=[
            colibri2.Endpoint(id=name, media=[colibri2.Media(type="video",
                                                             header_extensions=hdrext)])]))
    now = 1000.0
    for n in range(10):
        now += 0.01
        alice.deliver(alice.srtp.protect(with_transport_cc(1111, n, 700 + n)), now)
    forwarded = bob.received_media()
    assert [get_transport_cc(p, 5) for p in forwarded] == list(range(10))  # bob's own numbers
    for endpoint in bridge.conferences["m1"].endpoints.values():
        endpoint.rtcp_due(now + 0.1)
    alice.received_media()
    feedback = [p for rtcp in alice.received_rtcp for p in parse_compound(rtcp)
                if isinstance(p, TransportFeedback)]
    assert feedback and feedback[0].base_sequence == 700
    before = len(alice.received_rtcp)
    # Bob's feedback about his leg feeds his estimator and never reaches Alice.
    report = bytes(TransportFeedback.build(sender_ssrc=2222, media_ssrc=1111, feedback_count=0,
                                           packets=[(s, 1_000_000 + s * 10_000)
                                                    for s in range(10)]))
    bob.deliver(bob.srtp.protect_rtcp(report), now + 0.2)
    alice.received_media()
    assert len(alice.received_rtcp) == before


def test_endpoints_that_never_connect_expire() -> None:
    network = Network()
    clock = [1000.0]
    bridge = make_bridge(network, clock)
    FakeClient(bridge, network, "m2", "ghost", 5009, [4444])
    assert bridge.transport.tick(1059.0) == []
    (expired,) = bridge.transport.tick(1061.0)
    assert expired.id == "ghost"


def test_last_n_limits_the_video_a_receiver_gets() -> None:
    network = Network()
    bridge = make_bridge(network, [1000.0])
    alice = FakeClient(bridge, network, "m3", "alice", 5011, [1111])
    bob = FakeClient(bridge, network, "m3", "bob", 5012, [2222])
    carol = FakeClient(bridge, network, "m3", "carol", 5013, [3333])
    for client in (alice, bob, carol):
        client.connect(1000.0)
    frames: list[str] = []
    carol_endpoint = bridge.find_endpoint("m3", "carol")
    carol_endpoint.channel_send = frames.append
    bridge.channel_message(carol_endpoint, parse_message(
        '{"colibriClass":"ReceiverVideoConstraints","lastN":1,"onStageEndpoints":["bob"],'
        '"defaultConstraints":{"maxHeight":720}}'))
    assert [json.loads(frame) for frame in frames[-2:]] == [
        {"colibriClass": "LastNEndpointsChangeEvent", "lastNEndpoints": ["bob"]},
        {"colibriClass": "ForwardedSources", "forwardedSources": ["bob-v0"]}]
    alice.deliver(alice.srtp.protect(rtp(1111, 1)), 1000.1)
    bob.deliver(bob.srtp.protect(rtp(2222, 1)), 1000.1)
    assert [int.from_bytes(p[8:12], "big") for p in carol.received_media()] == [2222]
    assert len(alice.received_media()) == 1  # alice has no constraints: she gets everything


def test_client_hello_flood_changes_nothing(world) -> None:
    bridge, network, alice, bob = world
    hello = DtlsSession(DtlsCertificate.generate(), "client", [("sha-256", "00")]).start(1000.0)
    for n in range(500):
        bridge.transport.datagram_received(hello[0], ("127.0.0.1", 20000 + n), 1000.0)
        alice.deliver(hello[0], 1000.0)  # a new handshake on a connected association
    packet = rtp(1111, 9)
    alice.deliver(alice.srtp.protect(packet), 1000.1)
    assert bob.received_media() == [packet]
    assert bridge.transport.stats.dropped_unknown >= 500
