"""Send-side bandwidth estimation towards one receiving endpoint (sans-IO).

The bridge stamps every packet it sends to a receiver with a transport-wide sequence number,
records it with :meth:`BandwidthEstimator.sent`, and hands the receiver's transport-cc
feedback about those packets to :meth:`BandwidthEstimator.feedback_received`. The result,
:attr:`BandwidthEstimator.estimate_bps`, is what the bridge may send that receiver.

The controller is a simple AIMD on two signals, not Google's GCC:

* **Loss**: the fraction of packets reported lost, over windows of 100 reported packets or
  one second, whichever comes first (fewer packets make a 2 %/10 % decision mostly noise).
* **Delay**: the one-way delay of each acknowledged packet (receiver arrival clock minus our
  send clock; the unknown offset cancels out) less its minimum over the last 10 s is the
  *queuing delay*; the least-squares slope of the per-feedback mean one-way delay against
  send time over the last second is the *delay gradient* (seconds of queue per second;
  sending at rate R through a bottleneck of capacity C < R gives about (R - C) / C).

On each feedback:

* **Decrease** if loss > 10 %, or if the queue is growing (gradient > 0.03 with more than
  10 ms queued): the estimate becomes 0.85 x the lower of itself and the measured receive rate
  (bytes acknowledged over the last 0.5 s of receiver time). At most one decrease per 300 ms;
  increases then wait 500 ms so the queue can drain.
* **Increase** multiplicatively by 8 % per second (pro rata of the time since the previous
  feedback, at most 1 s) while loss < 2 % and the gradient is at most 0.01. With
  ``throughput_cap`` set, only while the estimate is below ``throughput_cap`` x the receive
  rate + 10 kbps (as libwebrtc, so that an application-limited sender does not inflate it;
  the bridge then has to probe to go higher).
* **Hold** otherwise.

If packets keep being sent (no pause of 1.5 s) but no feedback arrives for 1.5 s, the
estimate drops by 20 % (again every 1.5 s without feedback). A REMB from the receiver bounds
the estimate for ``remb_timeout`` seconds; if the receiver never sent transport-cc feedback,
the REMB value is the estimate. Everything is clamped to [``min_bps``, ``max_bps``].
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from vw.rtp.rtcp import TransportFeedback

__all__ = ["BandwidthEstimator"]

_UNKNOWN, _LOST, _RECEIVED = 0, 1, 2

INCREASE_PER_SECOND = 1.08
DECREASE_FACTOR = 0.85
LOSS_DECREASE = 0.10
LOSS_INCREASE = 0.02
GRADIENT_OVERUSE = 0.03
GRADIENT_INCREASE = 0.01
QUEUE_MIN = 0.010
DECREASE_INTERVAL = 0.3
HOLD_AFTER_DECREASE = 0.5
LOSS_WINDOW_PACKETS = 100
LOSS_WINDOW_SECONDS = 1.0
BASE_DELAY_WINDOW = 10.0
TREND_WINDOW = 1.0
TREND_MIN_POINTS = 4
TREND_MAX_POINTS = 60
RATE_WINDOW = 0.5
FEEDBACK_TIMEOUT = 1.5
TIMEOUT_FACTOR = 0.8
DELAY_JUMP = 2.0  # a one-way delay change this large (s) is a clock change: restart
SENT_HISTORY_SECONDS = 2.0
SENT_HISTORY_PACKETS = 8192


@dataclass(slots=True)
class _Sent:
    time: float
    size: int
    state: int = _UNKNOWN


class BandwidthEstimator:
    """Bandwidth estimate for one receiving leg from transport-cc feedback (and REMB)."""

    def __init__(
        self,
        start_bps: float = 1_000_000,
        min_bps: float = 30_000,
        max_bps: float = 20_000_000,
        remb_timeout: float | None = 5.0,
        throughput_cap: float | None = None,
    ) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"bitrate bounds {min_bps}..{max_bps} are not sensible")
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.remb_timeout = remb_timeout
        self.throughput_cap = throughput_cap
        self._rate = self._clamp(start_bps)
        self.state = "hold"
        # sent packets
        self._sent: OrderedDict[int, _Sent] = OrderedDict()
        self._highest: int | None = None
        self._sending_since: float | None = None  # first send since the last feedback
        self._last_sent: float | None = None
        # loss
        self.loss_fraction = 0.0
        self._lost = 0
        self._total = 0
        self._loss_since: float | None = None
        # delay
        self.queue_delay = 0.0
        self.delay_gradient = 0.0
        self._base: deque[tuple[float, float]] = deque()  # (now, owd), owd increasing
        self._points: deque[tuple[float, float]] = deque()  # (send time, mean owd)
        # receive rate
        self.receive_rate_bps: float | None = None
        self._acked: deque[tuple[float, int]] = deque()  # (arrival s, size)
        self._acked_bytes = 0
        self._latest_arrival: float | None = None
        # control
        self._now: float | None = None
        self._last_update: float | None = None
        self._last_decrease: float | None = None
        self._hold_until = float("-inf")
        self._last_feedback: float | None = None
        self._remb: float | None = None
        self._remb_time = 0.0

    # -- results -------------------------------------------------------------------------

    @property
    def informed(self) -> bool:
        """Whether the receiver ever reported (transport-cc feedback or REMB)."""
        return self._last_feedback is not None or self._remb_time > 0

    @property
    def estimate_bps(self) -> int:
        """The current estimate in bits per second (as of the latest event)."""
        return self.estimate(self._now)

    def estimate(self, now: float | None) -> int:
        """The estimate at ``now`` (which only matters for REMB expiry)."""
        rate = self._rate
        remb = self._active_remb(now)
        if remb is not None:
            rate = remb if self._last_feedback is None else min(rate, remb)
        return int(self._clamp(rate))

    # -- inputs --------------------------------------------------------------------------

    def sent(self, transport_seq: int, size: int, now: float) -> None:
        """Record that the packet with ``transport_seq`` (16-bit) and ``size`` bytes was sent."""
        self._tick(now)
        seq = transport_seq & 0xFFFF
        highest = self._highest
        if highest is None:
            ext = seq
        else:
            ext = highest + ((seq - highest + 0x8000) & 0xFFFF) - 0x8000
        if highest is None or ext > highest:
            self._highest = ext
        sent = self._sent
        sent.pop(ext, None)
        sent[ext] = _Sent(now, max(0, size))
        limit = now - SENT_HISTORY_SECONDS
        while sent:
            first = next(iter(sent.values()))
            if len(sent) <= SENT_HISTORY_PACKETS and first.time >= limit:
                break
            sent.popitem(last=False)
        last_sent = self._last_sent
        self._last_sent = now
        if self._sending_since is None or (
            last_sent is not None and not 0 <= now - last_sent <= FEEDBACK_TIMEOUT
        ):
            self._sending_since = now  # (re)started sending: feedback is not overdue yet
        elif self._last_feedback is not None and now - self._sending_since > FEEDBACK_TIMEOUT:
            self._rate = self._clamp(self._rate * TIMEOUT_FACTOR)
            self.state = "decrease"
            self._sending_since = now
            self._last_decrease = now
            self._hold_until = now + HOLD_AFTER_DECREASE

    def remb_received(self, bitrate: float, now: float) -> None:
        """A REMB from the receiver: an upper bound on the estimate while it is fresh."""
        self._tick(now)
        self._remb = max(0.0, float(bitrate))
        self._remb_time = now
        if self._last_feedback is not None:
            self._rate = self._clamp(min(self._rate, self._remb))

    def feedback_received(self, feedback: TransportFeedback, now: float) -> None:
        """Transport-cc feedback from the receiver about packets we sent it."""
        self._tick(now)
        self._last_feedback = now
        self._sending_since = None
        highest = self._highest
        if highest is None:
            return
        acked: list[tuple[float, float, int]] = []  # (send time, arrival, size)
        for seq, arrival in feedback.packets:
            ext = highest + (((seq & 0xFFFF) - highest + 0x8000) & 0xFFFF) - 0x8000
            record = self._sent.get(ext)
            if record is None or record.state == _RECEIVED:
                continue
            if arrival is None:
                if record.state == _UNKNOWN:
                    record.state = _LOST
                    self._lost += 1
                    self._total += 1
                continue
            if record.state == _LOST:
                self._lost = max(0, self._lost - 1)  # reported lost, then received after all
            else:
                self._total += 1
            record.state = _RECEIVED
            acked.append((record.time, arrival / 1_000_000, record.size))
        self._update_loss(now)
        if acked:
            self._update_delay(acked, now)
            self._update_receive_rate(acked)
        self._control(now)

    # -- signals -------------------------------------------------------------------------

    def _update_loss(self, now: float) -> None:
        if self._loss_since is None:
            self._loss_since = now
        if self._total >= LOSS_WINDOW_PACKETS or (
            self._total > 0 and not 0 <= now - self._loss_since < LOSS_WINDOW_SECONDS
        ):
            self.loss_fraction = self._lost / self._total
            self._lost = self._total = 0
            self._loss_since = now

    def _update_delay(self, acked: list[tuple[float, float, int]], now: float) -> None:
        owds = [arrival - send for send, arrival, _ in acked]
        mean_owd = sum(owds) / len(owds)
        mean_send = sum(send for send, _, _ in acked) / len(acked)
        points = self._points
        if points and abs(mean_owd - points[-1][1]) > DELAY_JUMP:
            self._reset_delay()  # the receiver's clock (or ours) jumped
        base = self._base
        lowest = min(owds)
        while base and base[-1][1] >= lowest:
            base.pop()
        base.append((now, lowest))
        while not 0 <= now - base[0][0] <= BASE_DELAY_WINDOW:
            base.popleft()
        self.queue_delay = max(0.0, mean_owd - base[0][1])
        points.append((mean_send, mean_owd))
        latest = max(p[0] for p in points)
        while len(points) > TREND_MAX_POINTS or not 0 <= latest - points[0][0] <= TREND_WINDOW:
            points.popleft()
        self.delay_gradient = _slope(points)

    def _reset_delay(self) -> None:
        self._base.clear()
        self._points.clear()
        self._acked.clear()
        self._acked_bytes = 0
        self._latest_arrival = None
        self.queue_delay = self.delay_gradient = 0.0

    def _update_receive_rate(self, acked: list[tuple[float, float, int]]) -> None:
        window = self._acked
        for _, arrival, size in acked:
            window.append((arrival, size))
            self._acked_bytes += size
            if self._latest_arrival is None or arrival > self._latest_arrival:
                self._latest_arrival = arrival
        latest = self._latest_arrival
        assert latest is not None
        while window and not 0 <= latest - window[0][0] <= RATE_WINDOW:
            self._acked_bytes -= window.popleft()[1]
        if len(window) < 2:
            return
        span = latest - window[0][0]
        if span >= 0.05:
            # The first packet's bytes arrived before the span began.
            self.receive_rate_bps = 8 * (self._acked_bytes - window[0][1]) / span

    # -- control -------------------------------------------------------------------------

    def _control(self, now: float) -> None:
        last = self._last_update
        dt = 0.0 if last is None else min(1.0, max(0.0, now - last))
        self._last_update = now
        overuse = self.delay_gradient > GRADIENT_OVERUSE and self.queue_delay > QUEUE_MIN
        rate = self._rate
        if self.loss_fraction > LOSS_DECREASE or overuse:
            self.state = "decrease"
            if self._last_decrease is None or not 0 <= now - self._last_decrease < (
                DECREASE_INTERVAL
            ):
                measured = self.receive_rate_bps
                if measured is not None:
                    rate = min(rate, measured)
                rate *= DECREASE_FACTOR
                self._last_decrease = now
                self._hold_until = now + HOLD_AFTER_DECREASE
        elif (
            self.loss_fraction < LOSS_INCREASE
            and self.delay_gradient <= GRADIENT_INCREASE
            and now >= self._hold_until
            and not self._throughput_limited(rate)
        ):
            self.state = "increase"
            rate *= INCREASE_PER_SECOND**dt
        else:
            self.state = "hold"
        remb = self._active_remb(now)
        if remb is not None:
            rate = min(rate, remb)
        self._rate = self._clamp(rate)

    def _throughput_limited(self, rate: float) -> bool:
        cap = self.throughput_cap
        measured = self.receive_rate_bps
        return cap is not None and measured is not None and rate >= cap * measured + 10_000

    def _active_remb(self, now: float | None) -> float | None:
        if self._remb is None:
            return None
        timeout = self.remb_timeout
        if timeout is not None and now is not None and not 0 <= now - self._remb_time <= timeout:
            return None
        return self._remb

    def _tick(self, now: float) -> None:
        if self._now is None or now > self._now:
            self._now = now

    def _clamp(self, rate: float) -> float:
        if rate != rate:  # NaN
            return self.min_bps
        return min(self.max_bps, max(self.min_bps, rate))


def _slope(points: deque[tuple[float, float]]) -> float:
    """Least-squares slope of y over x, 0 with too few or too clustered points."""
    n = len(points)
    if n < TREND_MIN_POINTS:
        return 0.0
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx < 1e-6:
        return 0.0
    return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx
