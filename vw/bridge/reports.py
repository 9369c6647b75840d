"""Sender and receiver reports on one leg (sans-IO): what the bridge tells an endpoint about the
media it receives from it, and what the endpoint's reports say about the path to it.

The bridge sends each endpoint a receiver report per second with a block for every SSRC that
endpoint sends (RFC 3550 §6.4.2), so browsers see loss and round trip time on their uplink.
The senders' SRs the bridge passes on to a receiver are remembered by their compact NTP time:
when the receiver's report block quotes one as LSR, the round trip is the time since the
bridge sent it less the receiver's DLSR.
"""

from __future__ import annotations

from collections import OrderedDict

from vw.rtp.rtcp import ReceiverReport, ReceptionStatistics, ReportBlock, compact_ntp

#: Seconds between receiver reports to an endpoint.
REPORT_INTERVAL = 1.0
#: Report blocks in one RR (the RC field is 5 bits).
MAX_BLOCKS = 31
#: Forwarded SRs remembered per leg, to match the LSR of report blocks.
SR_HISTORY = 64


class LegReports:
    """The RTCP reports of one endpoint's leg."""

    def __init__(self, bridge_ssrc: int) -> None:
        self.bridge_ssrc = bridge_ssrc
        self.reception: dict[int, ReceptionStatistics] = {}
        #: Smoothed round trip time in seconds, once a report block allowed measuring it.
        self.rtt: float | None = None
        #: Loss on the way to the endpoint, as its last report blocks said (0..1).
        self.downstream_loss = 0.0
        #: Loss on the way from the endpoint in the last report interval (0..1).
        self.upstream_loss = 0.0
        self._forwarded_srs: OrderedDict[int, float] = OrderedDict()
        self._next_report: float | None = None

    def packet_received(self, ssrc: int, sequence: int, timestamp: int, clock_rate: int,
                        now: float) -> None:
        statistics = self.reception.get(ssrc)
        if statistics is None:
            statistics = self.reception[ssrc] = ReceptionStatistics(ssrc, clock_rate)
        statistics.add(sequence, timestamp, now)

    def sender_report_received(self, ssrc: int, ntp_timestamp: int, now: float) -> None:
        statistics = self.reception.get(ssrc)
        if statistics is not None:
            statistics.sender_report_received(ntp_timestamp, now)

    def sender_report_forwarded(self, ntp_timestamp: int, now: float) -> None:
        self._forwarded_srs[compact_ntp(ntp_timestamp)] = now
        while len(self._forwarded_srs) > SR_HISTORY:
            self._forwarded_srs.popitem(last=False)

    def report_block_received(self, block: ReportBlock, now: float) -> None:
        """A block of the endpoint's RR or SR about media the bridge sent it."""
        self.downstream_loss = block.fraction_lost / 256
        sent = self._forwarded_srs.get(block.lsr) if block.lsr else None
        if sent is None:
            return
        rtt = now - sent - block.dlsr / 65536
        if 0 <= rtt < 60:
            self.rtt = rtt if self.rtt is None else 0.875 * self.rtt + 0.125 * rtt

    def forget(self, ssrc: int) -> None:
        self.reception.pop(ssrc, None)

    def report_due(self, now: float) -> ReceiverReport | None:
        """The receiver report to send now, once per :data:`REPORT_INTERVAL`."""
        if self._next_report is not None and now < self._next_report:
            return None
        self._next_report = now + REPORT_INTERVAL
        started = [s for s in self.reception.values() if s.packets_received]
        if not started:
            return None
        blocks = [s.report_block(now) for s in started[:MAX_BLOCKS]]
        self.upstream_loss = sum(block.fraction_lost for block in blocks) / len(blocks) / 256
        return ReceiverReport(self.bridge_ssrc, blocks)
