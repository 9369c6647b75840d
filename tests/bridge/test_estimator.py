"""The send-side bandwidth estimator, against a simulated link and random input."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from vw.bridge.estimator import BandwidthEstimator
from vw.bridge.feedback import TransportCcReceiver
from vw.rtp.rtcp import TransportFeedback

SIZE = 1200
MIN, MAX = 30_000, 20_000_000


@dataclass
class Link:
    """A bridge → receiver path: bottleneck queue, random loss, transport-cc coming back.

    The bridge sends ``SIZE``-byte packets paced at ``rate`` (the estimate if None); the
    receiver's :class:`TransportCcReceiver` feeds back every 50 ms after ``delay``.
    """

    estimator: BandwidthEstimator
    capacity: float | None = None  # bps
    loss: float = 0.0
    delay: float = 0.03
    jitter: float = 0.0
    rate: float | None = None
    queue_limit: float = 0.5  # seconds of queue before drop-tail
    seed: int = 1
    now: float = 1000.0
    history: list[tuple[float, int, float]] = field(default_factory=list)  # (t, est, queue)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.receiver = TransportCcReceiver(interval=0.05)
        self.seq = 0
        self.credit = 0.0
        self.link_free = 0.0
        self.arrivals: list[tuple[float, int]] = []
        self.feedback: list[tuple[float, bytes]] = []

    def run(self, seconds: float, step: float = 0.001) -> None:
        est = self.estimator
        end = self.now + seconds
        while self.now < end:
            now = self.now = self.now + step
            rate = est.estimate_bps if self.rate is None else self.rate
            self.credit = min(self.credit + rate * step / 8, 4 * SIZE)
            queue = 0.0
            while self.credit >= SIZE:
                self.credit -= SIZE
                est.sent(self.seq & 0xFFFF, SIZE, now)
                self.seq += 1
                queue = max(0.0, self.link_free - now)
                if self.rng.random() < self.loss or queue > self.queue_limit:
                    continue
                depart = now
                if self.capacity is not None:
                    depart = self.link_free = max(now, self.link_free) + SIZE * 8 / self.capacity
                arrival = depart + self.delay + self.jitter * self.rng.random()
                heapq.heappush(self.arrivals, (arrival, (self.seq - 1) & 0xFFFF))
            while self.arrivals and self.arrivals[0][0] <= now:
                arrival, seq = heapq.heappop(self.arrivals)
                self.receiver.packet_received(seq, arrival)
            for data in self.receiver.feedback(now, 1, 2):
                self.feedback.append((now + self.delay, data))
            while self.feedback and self.feedback[0][0] <= now:
                est.feedback_received(TransportFeedback.parse(self.feedback.pop(0)[1]), now)
            self.history.append((now, est.estimate_bps, queue))

    def mean_estimate(self, last: float) -> float:
        values = [e for t, e, _ in self.history if t > self.now - last]
        return sum(values) / len(values)


def test_starts_at_one_megabit() -> None:
    assert BandwidthEstimator().estimate_bps == 1_000_000


def test_converges_up_without_loss_and_steady_delay() -> None:
    link = Link(BandwidthEstimator(), jitter=0.004)
    link.run(10.0)
    estimates = [e for _, e, _ in link.history]
    assert all(b >= a for a, b in zip(estimates, estimates[1:], strict=False))
    # 8 %/s for ~10 s: about 2.1x
    assert 1_800_000 < estimates[-1] < 2_300_000
    assert link.estimator.state == "increase"
    assert link.estimator.loss_fraction == 0.0


def test_reaches_the_ceiling_and_stays_there() -> None:
    est = BandwidthEstimator(start_bps=15_000_000)
    link = Link(est, rate=2_000_000)
    link.run(5.0)
    assert est.estimate_bps == MAX


def test_drops_under_twenty_percent_loss() -> None:
    est = BandwidthEstimator()
    link = Link(est, loss=0.2, rate=1_000_000)
    link.run(1.5)
    assert est.estimate_bps < 850_000
    assert 0.1 < est.loss_fraction < 0.3
    link.run(4.0)
    assert est.estimate_bps < 100_000
    assert est.state == "decrease"


def test_follows_the_estimate_down_under_loss_then_recovers() -> None:
    est = BandwidthEstimator()
    link = Link(est, loss=0.2)
    link.run(3.0)
    low = est.estimate_bps
    assert low < 500_000
    link.loss = 0.0
    link.run(8.0)
    lowest = min(e for _, e, _ in link.history)
    assert lowest > 50_000  # the last loss window still counts, briefly
    assert est.estimate_bps > lowest * 1.08**6  # then 8 %/s again
    assert est.state == "increase"


def test_moderate_loss_holds() -> None:
    est = BandwidthEstimator()
    link = Link(est, loss=0.05, rate=1_000_000, seed=3)
    link.run(5.0)
    assert 850_000 <= est.estimate_bps <= 1_100_000


def test_backs_off_from_a_growing_queue() -> None:
    est = BandwidthEstimator()
    link = Link(est, capacity=1_500_000, delay=0.02, jitter=0.002)
    link.run(30.0)
    assert est.estimate_bps < 1_800_000
    assert 1_000_000 < link.mean_estimate(20.0) < 1_700_000
    queues = [q for t, _, q in link.history if t > link.now - 20.0]
    assert max(queues) < 0.3
    assert sum(queues) / len(queues) < 0.1


def test_remb_is_an_upper_bound() -> None:
    est = BandwidthEstimator(remb_timeout=2.0)
    link = Link(est)
    link.run(1.0)
    est.remb_received(800_000, link.now)
    assert est.estimate_bps == 800_000
    link.run(1.5)
    assert est.estimate_bps == 800_000
    est.remb_received(5_000_000, link.now)  # a high REMB does not raise the estimate
    link.run(0.5)
    assert est.estimate_bps < 900_000
    link.run(3.0)  # the REMB expired a second ago: free to grow
    assert est.estimate_bps > 900_000


def test_remb_alone_is_the_estimate() -> None:
    est = BandwidthEstimator(remb_timeout=None)
    est.remb_received(2_500_000, 1.0)
    assert est.estimate_bps == 2_500_000
    est.remb_received(10, 100.0)
    assert est.estimate_bps == MIN
    est.remb_received(1 << 40, 200.0)
    assert est.estimate_bps == MAX


def test_no_feedback_while_sending_decreases() -> None:
    est = BandwidthEstimator()
    link = Link(est, rate=1_000_000)
    link.run(1.0)
    before = est.estimate_bps
    for i in range(400):  # 4 s of sending into the void
        est.sent((link.seq + i) & 0xFFFF, SIZE, link.now + i * 0.01)
    assert est.estimate_bps < before * 0.7
    # but not when nothing was sent
    est = BandwidthEstimator()
    link = Link(est, rate=1_000_000)
    link.run(1.0)
    before = est.estimate_bps
    est.sent(link.seq & 0xFFFF, SIZE, link.now + 30.0)
    assert est.estimate_bps == before


def test_throughput_cap_limits_growth_when_application_limited() -> None:
    est = BandwidthEstimator(start_bps=200_000, throughput_cap=1.5)
    link = Link(est, rate=300_000)
    link.run(20.0)
    assert 400_000 < est.estimate_bps <= (1.5 * 300_000 + 10_000) * 1.01
    assert est.state == "hold"
    uncapped = BandwidthEstimator(start_bps=200_000)
    Link(uncapped, rate=300_000).run(20.0)
    assert uncapped.estimate_bps > 800_000


def test_ignores_feedback_about_unknown_packets_and_duplicates() -> None:
    est = BandwidthEstimator()
    est.feedback_received(TransportFeedback(1, 2, 0, 0, 0, [(0, 1000)]), 1.0)  # nothing sent
    for seq in range(10):
        est.sent(seq, SIZE, 1.0 + seq * 0.001)
    fb = TransportFeedback(1, 2, 0, 0, 0, [(s, 1000 + s * 1000) for s in range(10)])
    est.feedback_received(fb, 1.05)
    est.feedback_received(fb, 1.06)
    est.feedback_received(TransportFeedback(1, 2, 500, 0, 0, [(500, 0), (501, None)]), 1.07)
    assert est.loss_fraction == 0.0
    assert est.estimate_bps >= 1_000_000


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("sent"), st.integers(0, 0xFFFF), st.integers(0, 1500),
                  st.floats(0, 2.0)),
        st.tuples(
            st.just("feedback"),
            st.lists(st.tuples(st.integers(0, 0xFFFF),
                               st.one_of(st.none(), st.integers(-(1 << 40), 1 << 40))),
                     max_size=30),
            st.floats(0, 2.0),
        ),
        st.tuples(st.just("burst"), st.integers(0, 0xFFFF), st.integers(1, 50),
                  st.floats(0, 0.2)),
        st.tuples(st.just("remb"), st.integers(0, 1 << 50), st.floats(0, 10.0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, start=st.floats(0, 1e9))
def test_random_input_stays_within_the_clamp(ops: list[tuple], start: float) -> None:
    est = BandwidthEstimator(start_bps=1_000_000, min_bps=MIN, max_bps=MAX)
    now = start
    base_seq = 0
    for op in ops:
        kind = op[0]
        now += op[-1]
        if kind == "sent":
            est.sent(op[1], op[2], now)
        elif kind == "burst":  # a run of packets and feedback that is plausible
            base_seq = op[1]
            for i in range(op[2]):
                est.sent((base_seq + i) & 0xFFFF, SIZE, now + i * 0.001)
            packets = [((base_seq + i) & 0xFFFF, None if i % 3 == 0 else 5_000_000 + i * 900)
                       for i in range(op[2])]
            est.feedback_received(TransportFeedback(1, 2, base_seq, 0, 0, packets), now + 0.1)
        elif kind == "feedback":
            est.feedback_received(TransportFeedback(1, 2, 0, 0, 0, op[1]), now)
        else:
            est.remb_received(op[1], now)
        assert MIN <= est.estimate_bps <= MAX
        assert MIN <= est.estimate(now + 100.0) <= MAX
