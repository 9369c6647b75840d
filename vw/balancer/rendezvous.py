"""Weighted rendezvous (highest-random-weight) hashing: every balancer that knows the same
shards picks the same one for a key, and removing a shard moves only that shard's keys."""

from __future__ import annotations

import math
from collections.abc import Sequence
from hashlib import blake2b
from typing import Protocol, TypeVar


class Candidate(Protocol):
    name: str
    weight: float


T = TypeVar("T", bound=Candidate)

#: Hash states that have taken each name (and its separator), as every score starts so.
_PRIMED: dict[str, blake2b] = {}


def score(name: str, key: bytes, weight: float) -> float:
    """``-weight / ln(h)`` with ``h`` uniform in (0, 1) from a hash of the name and the key:
    the highest score wins, each candidate in proportion to its weight."""
    primed = _PRIMED.get(name)
    if primed is None:
        primed = _PRIMED[name] = blake2b(name.encode() + b"\0", digest_size=8)
    digest = primed.copy()
    digest.update(key)
    h = (int.from_bytes(digest.digest(), "big") + 0.5) / 2.0 ** 64
    return -weight / math.log(h)


def choose(key: str, candidates: Sequence[T]) -> T | None:
    """The candidate with the highest score for ``key``; None if there is none."""
    if len(candidates) < 2:
        return candidates[0] if candidates else None
    data = key.encode()
    best, best_score = None, -1.0
    for candidate in candidates:
        value = score(candidate.name, data, candidate.weight)
        if value > best_score or (value == best_score and best is not None
                                  and candidate.name < best.name):
            best, best_score = candidate, value
    return best
