"""Weighted rendezvous (highest-random-weight) hashing: every balancer that knows the same
shards picks the same one for a key, and removing a shard moves only that shard's keys."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b
from typing import Protocol, TypeVar


class Candidate(Protocol):
    name: str
    weight: float


T = TypeVar("T", bound=Candidate)

#: Scores remembered: (shard, room, weight) triples, a few per room in use (and the
#: pass-through listeners' (target, client address) pairs).
SCORES_KEPT = 16384


@lru_cache(SCORES_KEPT)
def score(name: str, key: str, weight: float) -> float:
    """``-weight / ln(h)`` with ``h`` uniform in (0, 1) from a hash of the name and the key:
    the highest score wins, each candidate in proportion to its weight."""
    digest = blake2b(f"{name}\0{key}".encode(), digest_size=8).digest()
    h = (int.from_bytes(digest, "big") + 0.5) / 2.0 ** 64
    return -weight / math.log(h)


def choose(key: str, candidates: Sequence[T]) -> T | None:
    """The candidate with the highest score for ``key``; None if there is none."""
    if len(candidates) < 2:
        return candidates[0] if candidates else None
    best, best_score = None, -1.0
    for candidate in candidates:
        value = score(candidate.name, key, candidate.weight)
        if value > best_score or (value == best_score and best is not None
                                  and candidate.name < best.name):
            best, best_score = candidate, value
    return best
