"""Password hashing with argon2id at (at least) OWASP's minimum cost."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

#: 19 MiB of memory and two passes over it, one lane (OWASP's first argon2id setting).
MEMORY_COST = 19456
TIME_COST = 2


def default_hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_COST, parallelism=1,
                          type=Type.ID)


class Passwords:
    """Hashes and checks passwords; both are slow on purpose, so run them off the reactor."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or default_hasher()
        # Unknown accounts are checked against this, so they take as long as known ones.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, hashed: str | None, password: str) -> bool:
        """True when ``password`` matches ``hashed``; None (no account) never matches."""
        try:
            return self._hasher.verify(hashed or self._decoy, password) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, hashed: str) -> bool:
        """True when ``hashed`` was made with other parameters than the current ones."""
        return self._hasher.check_needs_rehash(hashed)
