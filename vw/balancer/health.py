"""A backend's health: checked every ``interval`` seconds; up after ``rise`` good checks in a
row, down after ``fall`` bad ones (failed proxied connections count as bad checks), as
HAProxy counts (sans-IO)."""

from __future__ import annotations


class Health:
    __slots__ = ("interval", "rise", "fall", "up", "streak", "next_check", "checking")

    def __init__(self, interval: float, rise: int, fall: int, up: bool = True) -> None:
        self.interval = interval
        self.rise = rise
        self.fall = fall
        self.up = up
        #: Results in a row that disagree with the current state.
        self.streak = 0
        self.next_check = 0.0
        self.checking = False

    def due(self, now: float) -> bool:
        """Whether a check should start now."""
        return not self.checking and now >= self.next_check

    def begin(self, now: float) -> None:
        self.checking = True
        self.next_check = now + self.interval

    def finish(self, ok: bool) -> bool:
        """A check's result; True if the state changed."""
        self.checking = False
        return self.record(ok)

    def record(self, ok: bool) -> bool:
        """Count a result (a check's or a proxied connection's); True if the state changed."""
        if ok == self.up:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak < (self.rise if ok else self.fall):
            return False
        self.up = ok
        self.streak = 0
        return True
