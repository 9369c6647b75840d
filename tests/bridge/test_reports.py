"""Receiver reports per leg and the round trip time measured from forwarded sender reports."""

from __future__ import annotations

from tests.bridge.harness import FakeClient, Network, make_bridge, rtp
from vw.bridge.conference import FEEDBACK_SSRC
from vw.bridge.reports import LegReports
from vw.rtp.rtcp import (
    ReceiverReport,
    ReportBlock,
    SenderReport,
    compact_ntp,
    pack_compound,
    parse_compound,
)

NOW = 1000.0
NTP = 0xE000_0000_8000_0000


def test_receiver_reports_count_loss_once_per_interval() -> None:
    reports = LegReports(7)
    for seq in (1, 2, 4, 5):
        reports.packet_received(1111, seq, seq * 3000, 90000, NOW)
    (block,) = reports.report_due(NOW).reports
    assert (block.ssrc, block.cumulative_lost, block.highest_sequence) == (1111, 1, 5)
    assert block.fraction_lost == 256 // 5
    assert reports.upstream_loss == (256 // 5) / 256
    assert reports.report_due(NOW + 0.5) is None
    assert reports.report_due(NOW + 1.0) is not None


def test_round_trip_time_from_a_forwarded_sender_report() -> None:
    reports = LegReports(7)
    reports.sender_report_forwarded(NTP, NOW)
    reports.report_block_received(ReportBlock(1111, fraction_lost=64, lsr=compact_ntp(NTP),
                                              dlsr=65536 // 10), NOW + 0.15)
    assert abs(reports.rtt - 0.05) < 1e-3
    assert reports.downstream_loss == 0.25
    reports.report_block_received(ReportBlock(1111, lsr=12345), NOW + 1)  # unknown LSR
    assert abs(reports.rtt - 0.05) < 1e-3


def test_reports_through_the_bridge() -> None:
    network = Network()
    bridge = make_bridge(network, [NOW])
    alice = FakeClient(bridge, network, "m1", "alice", 5001, [1111])
    bob = FakeClient(bridge, network, "m1", "bob", 5002, [2222])
    alice.connect(NOW)
    bob.connect(NOW)
    for seq in (1, 2, 3, 5):
        alice.deliver(alice.srtp.protect(rtp(1111, seq)), NOW)
    sr = SenderReport(1111, NTP, 3000, 4, 400, [ReportBlock(9999)])
    alice.deliver(alice.srtp.protect_rtcp(pack_compound([sr])), NOW + 0.01)
    bob.received_media()
    forwarded = [p for rtcp in bob.received_rtcp for p in parse_compound(rtcp)]
    assert forwarded == [SenderReport(1111, NTP, 3000, 4, 400, [])]  # alice's blocks stay
    rr = ReceiverReport(2222, [ReportBlock(1111, lsr=compact_ntp(NTP), dlsr=65536 // 50)])
    bob.deliver(bob.srtp.protect_rtcp(pack_compound([rr])), NOW + 0.05)
    assert abs(bridge.find_endpoint("m1", "bob").reports.rtt - 0.02) < 1e-3
    bridge.find_endpoint("m1", "alice").rtcp_due(NOW + 0.1)
    alice.received_media()
    (report,) = [p for rtcp in alice.received_rtcp for p in parse_compound(rtcp)
                 if isinstance(p, ReceiverReport)]
    assert report.ssrc == FEEDBACK_SSRC
    assert [(b.ssrc, b.cumulative_lost, b.lsr) for b in report.reports] == [
        (1111, 1, compact_ntp(NTP))]
    stats = bridge.stats()
    assert stats["rtt_aggregate"] == 20.0 and stats["loss_rate_download"] > 0
