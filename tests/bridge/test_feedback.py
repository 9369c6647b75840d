"""Transport-cc feedback generation and keyframe request rate limiting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vw.bridge.feedback import KeyframeRequester, TransportCcReceiver
from vw.rtp.rtcp import Fir, Pli, TransportFeedback

SENDER = 0xB0B0B0B0
MEDIA = 0x12345678


def parse_all(packets: list[bytes]) -> list[TransportFeedback]:
    parsed = [TransportFeedback.parse(p) for p in packets]
    for fb in parsed:
        assert (fb.sender_ssrc, fb.media_ssrc) == (SENDER, MEDIA)
    return parsed


def statuses(packets: list[bytes]) -> tuple[dict[int, int], set[int]]:
    """(received sequence -> arrival µs, lost sequences) over some feedback packets."""
    received: dict[int, int] = {}
    lost: set[int] = set()
    for fb in parse_all(packets):
        for seq, t in fb.packets:
            if t is None:
                lost.add(seq)
            else:
                received[seq] = t
    return received, lost


def test_round_trip_received_lost_and_arrival_times() -> None:
    rx = TransportCcReceiver()
    arrivals = {}
    t = 100.0
    for seq in range(1000, 1040):
        t += 0.0013 * (seq % 7) + 0.00041
        if seq % 5 == 3:
            continue
        rx.packet_received(seq, t)
        arrivals[seq] = t
    out = rx.feedback(t, SENDER, MEDIA)
    assert len(out) == 1
    received, lost = statuses(out)
    assert set(received) == set(arrivals)
    assert lost == {s for s in range(1000, 1040) if s % 5 == 3}
    fb = TransportFeedback.parse(out[0])
    assert fb.base_sequence == 1000
    assert fb.feedback_count == 0
    for seq, when in arrivals.items():
        assert abs(received[seq] - when * 1e6) <= 125
    seqs = sorted(arrivals)
    for a, b in zip(seqs, seqs[1:], strict=False):
        assert abs((received[b] - received[a]) - (arrivals[b] - arrivals[a]) * 1e6) <= 250


def test_feedback_covers_only_what_is_new() -> None:
    rx = TransportCcReceiver()
    for seq in range(10):
        rx.packet_received(seq, 1.0 + seq / 1000)
    assert rx.feedback(1.01, SENDER, MEDIA)
    assert rx.feedback(1.2, SENDER, MEDIA) == []  # nothing new
    rx.packet_received(12, 1.3)
    out = rx.feedback(1.3, SENDER, MEDIA)
    received, lost = statuses(out)
    assert set(received) == {12}
    assert lost == {10, 11}
    assert TransportFeedback.parse(out[0]).feedback_count == 1


def test_feedback_interval() -> None:
    rx = TransportCcReceiver(interval=0.05)
    assert rx.next_feedback_time is None
    rx.packet_received(1, 1.0)
    assert rx.next_feedback_time == float("-inf")
    assert rx.feedback(1.0, SENDER, MEDIA)
    rx.packet_received(2, 1.01)
    assert rx.next_feedback_time == 1.05
    assert rx.feedback(1.02, SENDER, MEDIA) == []
    assert rx.feedback(1.02, SENDER, MEDIA, force=True)
    rx.packet_received(3, 1.03)
    assert rx.feedback(1.06, SENDER, MEDIA) == []
    assert rx.feedback(1.07, SENDER, MEDIA)


def test_transport_sequence_wraparound() -> None:
    rx = TransportCcReceiver()
    seqs = [65530, 65531, 65533, 65534, 65535, 0, 1, 3, 4]
    for i, seq in enumerate(seqs):
        rx.packet_received(seq, 5.0 + i * 0.002)
    out = rx.feedback(5.1, SENDER, MEDIA)
    received, lost = statuses(out)
    assert set(received) == set(seqs)
    assert lost == {65532, 2}
    assert TransportFeedback.parse(out[0]).base_sequence == 65530
    # and again across many wraps; a round ends with the last packet received
    rx = TransportCcReceiver()
    now = 0.0
    covered = 1  # sequence 0 is never received: the first feedback starts at 1
    for n in range(3 * 65536 // 500):
        last = 0
        for seq in range(n * 500, n * 500 + 500):
            if seq % 97:
                rx.packet_received(seq & 0xFFFF, now)
                last = seq
            now += 0.0001
        received, lost = statuses(rx.feedback(now, SENDER, MEDIA, force=True))
        span = range(covered, last + 1)
        assert lost == {s & 0xFFFF for s in span if s % 97 == 0}
        assert set(received) == {s & 0xFFFF for s in span if s % 97}
        covered = last + 1


def test_feedback_count_wraps() -> None:
    rx = TransportCcReceiver()
    counts = []
    for i in range(300):
        rx.packet_received(i, i * 0.1)
        for fb in parse_all(rx.feedback(i * 0.1, SENDER, MEDIA)):
            counts.append(fb.feedback_count)
    assert counts == [i % 256 for i in range(300)]
    assert rx.feedback_count == 300 % 256


def test_straggler_reported_lost_is_reported_again_when_it_arrives() -> None:
    rx = TransportCcReceiver()
    for seq in (0, 1, 3):
        rx.packet_received(seq, 1.0 + seq * 0.001)
    _, lost = statuses(rx.feedback(1.01, SENDER, MEDIA))
    assert lost == {2}
    rx.packet_received(2, 1.02)
    rx.packet_received(4, 1.021)
    received, lost = statuses(rx.feedback(1.1, SENDER, MEDIA))
    assert set(received) == {2, 3, 4}
    assert lost == set()
    # duplicates and very old packets are ignored
    rx.packet_received(4, 1.2)
    rx.packet_received(60000, 1.2)
    assert rx.feedback(1.3, SENDER, MEDIA) == []


def test_split_when_a_delta_does_not_fit() -> None:
    rx = TransportCcReceiver()
    rx.packet_received(1, 10.0)
    rx.packet_received(2, 10.001)
    rx.packet_received(4, 20.0)  # 10 s later: more than 16 bits of 250 µs
    rx.packet_received(5, 20.002)
    out = rx.feedback(20.01, SENDER, MEDIA)
    assert len(out) == 2
    first, second = parse_all(out)
    assert [s for s, _ in first.packets] == [1, 2]
    assert second.packets[0] == (3, None)
    assert (second.feedback_count, first.feedback_count) == (1, 0)
    received, lost = statuses(out)
    assert abs(received[5] - received[4] - 2000) <= 250
    assert abs(received[4] - 20_000_000) <= 125
    assert lost == {3}


def test_split_by_received_count_and_large_gaps() -> None:
    rx = TransportCcReceiver(max_received=100)
    for seq in range(250):
        rx.packet_received(seq, seq * 0.0005)
    out = rx.feedback(1.0, SENDER, MEDIA)
    assert len(out) == 3
    assert all(len(p) < 1200 for p in out)
    received, lost = statuses(out)
    assert set(received) == set(range(250)) and not lost
    rx.packet_received(250 + 30000, 1.1)  # a jump: 30000 lost in one run
    out = rx.feedback(1.2, SENDER, MEDIA)
    received, lost = statuses(out)
    assert set(received) == {30250} and lost == set(range(250, 30250))
    assert len(out) == 1 and len(out[0]) < 100


def test_memory_is_bounded_without_feedback() -> None:
    rx = TransportCcReceiver()
    for seq in range(0x20000 + 10):
        rx.packet_received(seq & 0xFFFF, seq * 1e-5)
    received, lost = statuses(rx.feedback(10.0, SENDER, MEDIA))
    assert len(received) <= 0x10000 and not lost


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 0xFFFF),
    steps=st.lists(
        st.tuples(st.integers(1, 40), st.floats(0, 0.2), st.booleans()), min_size=1, max_size=80
    ),
)
def test_round_trip_property(start: int, steps: list[tuple[int, float, bool]]) -> None:
    """Whatever arrives, every sequence number is reported once, received or lost, correctly."""
    rx = TransportCcReceiver(max_received=16)
    seq = start
    now = 50.0
    expected: dict[int, float] = {}
    lost_expected: set[int] = set()
    reported_received: dict[int, int] = {}
    reported_lost: set[int] = set()
    first = True
    for gap, delay, flush in steps:
        if not first:
            lost_expected.update((seq + k) & 0xFFFF for k in range(1, gap))
            seq = (seq + gap) & 0xFFFF
        first = False
        now += delay
        rx.packet_received(seq, now)
        expected[seq] = now
        if flush:
            received, lost = statuses(rx.feedback(now, SENDER, MEDIA, force=True))
            assert not set(received) & set(reported_received)
            reported_received.update(received)
            reported_lost |= lost
    received, lost = statuses(rx.feedback(now, SENDER, MEDIA, force=True))
    reported_received.update(received)
    reported_lost |= lost
    assert set(reported_received) == set(expected)
    assert reported_lost == lost_expected
    for s, t in reported_received.items():
        assert abs(t - expected[s] * 1e6) <= 126  # 125 µs quantization, 1 µs rounding


# -- keyframe requests -----------------------------------------------------------------------


def test_pli_rate_limited_per_ssrc() -> None:
    kf = KeyframeRequester(sender_ssrc=SENDER)
    data = kf.request(MEDIA, 1.0)
    assert data is not None
    assert Pli.parse(data) == Pli(SENDER, MEDIA)
    assert kf.request(MEDIA, 1.1) is None
    assert kf.request(MEDIA, 1.299) is None
    assert kf.request(7, 1.1) is not None  # another SSRC has its own limit
    assert kf.request(MEDIA, 1.3) is not None
    assert (kf.sent, kf.suppressed) == (3, 2)
    kf.forget(MEDIA)
    assert kf.request(MEDIA, 1.31) is not None


def test_fir_sequence_numbers_increment_and_wrap() -> None:
    kf = KeyframeRequester(sender_ssrc=SENDER, use_fir=True)
    seqs = []
    for i in range(260):
        data = kf.request(MEDIA, i * 0.31)
        assert data is not None
        fir = Fir.parse(data)
        assert fir.sender_ssrc == SENDER and fir.entries[0][0] == MEDIA
        seqs.append(fir.entries[0][1])
    assert seqs == [i % 256 for i in range(260)]
    assert Pli.parse(kf.request(MEDIA, 1000.0, use_fir=False)) == Pli(SENDER, MEDIA)
    assert Fir.parse(kf.request(7, 1000.0)).entries == [(7, 0)]
