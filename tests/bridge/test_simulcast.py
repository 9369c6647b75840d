"""Simulcast through the bridge in memory: one layer per receiver on SIM[0], switched by
constraints at key frames, with key frames asked of the sender."""

from __future__ import annotations

from tests.bridge.harness import FakeClient, Network, make_bridge, vp8
from vw.bridge.channel import parse_message
from vw.rtp.rtcp import Pli, Remb, parse_compound

LAYERS = [101, 102, 103]


def test_receivers_get_one_layer_on_sim0_and_switch_on_constraints() -> None:
    network = Network()
    clock = [1000.0]
    bridge = make_bridge(network, clock)
    alice = FakeClient(bridge, network, "m1", "alice", 5001, LAYERS, [("SIM", LAYERS)])
    bob = FakeClient(bridge, network, "m1", "bob", 5002, [2222])
    alice.connect(1000.0)
    bob.connect(1000.0)
    now = 1000.0
    seq = 0

    def frames(count: int, keyframe_first: bool) -> list[bytes]:
        nonlocal seq, now
        for n in range(count):
            now += 0.033
            seq += 1
            for ssrc in LAYERS:  # every layer sends every frame
                alice.deliver(alice.srtp.protect(vp8(ssrc, seq, keyframe_first and n == 0)), now)
        return bob.received_media()

    projections = bridge.conferences["m1"].simulcast.projections
    got = frames(5, keyframe_first=True)
    assert projections[("bob", 101)].current_layer == 2
    assert len(got) == 5  # no constraints yet: the top layer only
    assert {int.from_bytes(p[8:12], "big") for p in got} == {101}
    bridge.channel_message(bridge.find_endpoint("m1", "bob"), parse_message(
        '{"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":180}}'))
    alice.received_media()
    pli = [p for rtcp in alice.received_rtcp for p in parse_compound(rtcp) if isinstance(p, Pli)]
    assert pli[-1].media_ssrc == 101  # a key frame of layer 0 is wanted
    before_switch = frames(3, keyframe_first=False)  # still the top layer until a key frame
    assert projections[("bob", 101)].current_layer == 2
    after_switch = frames(3, keyframe_first=True)
    assert projections[("bob", 101)].current_layer == 0
    output = before_switch + after_switch
    assert {int.from_bytes(p[8:12], "big") for p in output} == {101}
    sequence = [int.from_bytes(p[2:4], "big") for p in got + output]
    assert sequence == list(range(sequence[0], sequence[0] + len(sequence)))  # gapless
    timestamps = [int.from_bytes(p[4:8], "big") for p in got + output]
    assert timestamps == sorted(timestamps)


def test_a_receivers_bandwidth_estimate_limits_its_layer() -> None:
    network = Network()
    bridge = make_bridge(network, [1000.0])
    alice = FakeClient(bridge, network, "m1", "alice", 5001, LAYERS, [("SIM", LAYERS)])
    bob = FakeClient(bridge, network, "m1", "bob", 5002, [2222])
    alice.connect(1000.0)
    bob.connect(1000.0)
    conference = bridge.conferences["m1"]
    bob_endpoint = bridge.find_endpoint("m1", "bob")
    bridge.channel_message(bob_endpoint, parse_message(
        '{"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":720}}'))
    assert conference.simulcast.targets["bob"][101] == 2
    seq = 0

    def one_second_of_media(at: float) -> None:
        """About 100 kbps, 400 kbps and 1.5 Mbps in 1,000-byte packets."""
        nonlocal seq
        for ssrc, count in zip(LAYERS, (12, 50, 190), strict=True):
            for n in range(count):
                seq += 1
                alice.deliver(alice.srtp.protect(vp8(ssrc, seq, n == 0) + bytes(930)), at)

    one_second_of_media(1000.2)
    bob.deliver(bob.srtp.protect_rtcp(bytes(Remb(2222, 200_000, [101]))), 1000.5)
    conference.reallocate(1001.0)
    rates = conference.simulcast.bitrates
    assert [round(rates[ssrc], -4) for ssrc in LAYERS] == [100_000, 400_000, 1_520_000]
    assert conference.simulcast.targets["bob"][101] == 0  # 200 kbps: the 180p layer only
    one_second_of_media(1001.2)
    bob.deliver(bob.srtp.protect_rtcp(bytes(Remb(2222, 450_000, [101]))), 1001.5)
    conference.reallocate(1002.0)
    # 450 kbps would not fit the 500 kbps assumed of a 360p layer; it fits the measured one.
    assert conference.simulcast.targets["bob"][101] == 1


def test_a_plain_video_source_stays_forwarded_next_to_a_measured_simulcast_one() -> None:
    network = Network()
    clock = [1000.0]
    bridge = make_bridge(network, clock)
    alice = FakeClient(bridge, network, "m1", "alice", 5001, LAYERS, [("SIM", LAYERS)])
    carol = FakeClient(bridge, network, "m1", "carol", 5003, [3333])
    bob = FakeClient(bridge, network, "m1", "bob", 5002, [2222])
    for client in (alice, carol, bob):
        client.connect(1000.0)
    conference = bridge.conferences["m1"]
    conference.reallocate(1000.5)
    for seq in range(1, 4):
        for ssrc in LAYERS:
            alice.deliver(alice.srtp.protect(vp8(ssrc, seq, seq == 1)), 1001.2)
    conference.reallocate(1001.5)  # alice's layers are measured now, carol's plain one is not
    assert conference.simulcast.bitrates
    clock[0] = 1001.6
    bridge.channel_message(bridge.find_endpoint("m1", "bob"), parse_message(
        '{"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":720}}'))
    assert bridge.find_endpoint("m1", "bob").video_from == {"alice", "carol"}
