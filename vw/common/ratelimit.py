"""Token buckets: a rate with bursts, ``now`` passed in."""

from __future__ import annotations


class TokenBucket:
    """Tokens refilled at ``rate`` per second up to ``capacity``."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"rate {rate} and capacity {capacity} must be positive")
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, amount: float, now: float) -> bool:
        """Take ``amount`` if that many tokens are there; False (nothing taken) if not."""
        self._refill(now)
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True

    def consume(self, amount: float, now: float) -> float:
        """Take ``amount``, into debt if need be; return the seconds until the debt is paid
        (0 if there is none)."""
        self._refill(now)
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (an idle source that can be forgotten)."""
        self._refill(now)
        return self.tokens >= self.capacity
