"""Loss repair in memory: NACKs answered from the bridge's cache as RTX, upstream loss asked of
the sender, and the decrypted media a sink receives."""

from __future__ import annotations

from tests.bridge.harness import FakeClient, Network, make_bridge, rtp, vp8
from vw.bridge import colibri2
from vw.bridge.allocation import rtx_payload_types
from vw.bridge.channel import parse_message
from vw.bridge.conference import FEEDBACK_SSRC
from vw.rtp.rtcp import Nack, Pli, pack_compound, parse_compound
from vw.rtp.rtp import unwrap_rtx, wrap_rtx

VIDEO, RTX = 1111, 1112
NOW = 1000.0


def pair(sender_ssrcs: list[int], groups: list[tuple[str, list[int]]]):
    network = Network()
    bridge = make_bridge(network, [NOW])
    alice = FakeClient(bridge, network, "m1", "alice", 5001, sender_ssrcs, groups)
    bob = FakeClient(bridge, network, "m1", "bob", 5002, [2222])
    alice.connect(NOW)
    bob.connect(NOW)
    return bridge, alice, bob


def nack(client: FakeClient, media_ssrc: int, lost: list[int], now: float) -> None:
    packet = pack_compound([Nack(2222, media_ssrc, lost)])
    client.deliver(client.srtp.protect_rtcp(packet), now)


def sent_nacks(client: FakeClient) -> list[Nack]:
    client.received_media()
    return [p for rtcp in client.received_rtcp for p in parse_compound(rtcp)
            if isinstance(p, Nack)]


def test_a_lost_packet_is_resent_from_the_cache_as_rtx() -> None:
    _, alice, bob = pair([VIDEO, RTX], [("FID", [VIDEO, RTX])])
    for seq in range(1, 6):
        alice.deliver(alice.srtp.protect(rtp(VIDEO, seq)), NOW)
    assert len(bob.received_media()) == 5
    nack(bob, VIDEO, [3], NOW + 0.01)
    (resent,) = bob.received_media()
    assert int.from_bytes(resent[8:12], "big") == RTX and resent[1] & 0x7F == 96
    assert unwrap_rtx(resent, 100)[1][12:] == rtp(VIDEO, 3)[12:]
    assert sent_nacks(alice) == []  # answered by the bridge, not passed on


def test_a_receiver_without_rtx_gets_the_packet_itself() -> None:
    bridge, alice, bob = pair([VIDEO, RTX], [("FID", [VIDEO, RTX])])
    bridge.find_endpoint("m1", "bob").rtx_payload_types = {}
    alice.deliver(alice.srtp.protect(rtp(VIDEO, 7)), NOW)
    bob.network.take(bob.address)  # lost on the way
    nack(bob, VIDEO, [7], NOW + 0.01)
    assert bob.received_media() == [rtp(VIDEO, 7)]


def test_what_the_bridge_never_got_is_asked_of_the_sender_and_passed_on() -> None:
    _, alice, bob = pair([VIDEO, RTX], [("FID", [VIDEO, RTX])])
    for seq in (1, 2, 4):
        alice.deliver(alice.srtp.protect(rtp(VIDEO, seq)), NOW)
    bob.received_media()
    nack(bob, VIDEO, [3], NOW + 0.01)
    nack(bob, VIDEO, [3], NOW + 0.02)  # asked again too soon: one NACK upstream
    assert bob.received_media() == []
    asked = sent_nacks(alice)
    assert [(n.sender_ssrc, n.media_ssrc, n.lost) for n in asked] == [(FEEDBACK_SSRC, VIDEO, [3])]
    alice.deliver(alice.srtp.protect(wrap_rtx(rtp(VIDEO, 3), 96, RTX, 500)), NOW + 0.03)
    (resent,) = bob.received_media()
    assert int.from_bytes(resent[8:12], "big") == RTX
    assert unwrap_rtx(resent, 100)[1][12:] == rtp(VIDEO, 3)[12:]
    assert int.from_bytes(resent[2:4], "big") != 500  # the bridge's own RTX numbering
    # A padding-only RTX probe is dropped.
    probe = bytearray(rtp(RTX, 501, b"")[:12]) + bytes(20) + b"\x14"
    probe[0] |= 0x20
    probe[1] = 96
    alice.deliver(alice.srtp.protect(bytes(probe)), NOW + 0.04)
    assert bob.received_media() == []


def test_nacks_about_a_projected_simulcast_source_get_rtx_on_its_fid_partner() -> None:
    layers = [101, 102, 103]
    bridge, alice, bob = pair(layers + [201, 202, 203], [
        ("SIM", layers), ("FID", [101, 201]), ("FID", [102, 202]), ("FID", [103, 203])])
    bridge.channel_message(bridge.find_endpoint("m1", "bob"), parse_message(
        '{"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":720}}'))
    for seq in range(1, 5):
        for ssrc in layers:
            alice.deliver(alice.srtp.protect(vp8(ssrc, seq, keyframe=seq == 1)), NOW)
    got = bob.received_media()
    assert {int.from_bytes(p[8:12], "big") for p in got} == {101}
    lost = int.from_bytes(got[2][2:4], "big")
    nack(bob, 101, [lost], NOW + 0.01)
    (resent,) = bob.received_media()
    assert int.from_bytes(resent[8:12], "big") == 201
    osn, original = unwrap_rtx(resent, 100)
    assert osn == lost and original[12:] == got[2][12:]


def test_a_media_sink_gets_every_decrypted_packet() -> None:
    bridge, alice, _ = pair([VIDEO], [])
    received = []

    class Sink:
        def rtp_received(self, endpoint_id: str, packet: bytes, now: float) -> None:
            received.append((endpoint_id, packet))

    bridge.conferences["m1"].sinks.append(Sink())
    alice.deliver(alice.srtp.protect(rtp(VIDEO, 1)), NOW)
    alice.deliver(alice.srtp.protect(rtp(4242, 2)), NOW)  # unannounced: not passed on
    assert received == [("alice", rtp(VIDEO, 1))]


def test_rtx_payload_types_come_from_apt() -> None:
    rtx = colibri2.PayloadType(id=96, name="rtx", clockrate=90000,
                               parameters=[colibri2.Parameter("apt", "100")])
    vp8_type = colibri2.PayloadType(id=100, name="VP8", clockrate=90000)
    broken = colibri2.PayloadType(id=97, name="RTX", parameters=[colibri2.Parameter("apt", "x")])
    assert rtx_payload_types([vp8_type, rtx, broken]) == {100: 96}


def test_a_receiver_that_connects_makes_the_bridge_ask_for_a_key_frame() -> None:
    _, alice, _ = pair([VIDEO, RTX], [("FID", [VIDEO, RTX])])
    alice.received_media()
    plis = [p for rtcp in alice.received_rtcp for p in parse_compound(rtcp) if isinstance(p, Pli)]
    assert [(p.sender_ssrc, p.media_ssrc) for p in plis] == [(FEEDBACK_SSRC, VIDEO)]
