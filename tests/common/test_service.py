"""The top service every plugin runs under."""

from __future__ import annotations

import gc

import pytest
from twisted.application.service import Service

from vw.common.service import TopService
from vw.config import Config


class Recorder(Service):
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def startService(self) -> None:
        super().startService()
        self.calls.append("started")


def test_the_heap_is_frozen_once_every_service_has_started(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    top = TopService(Config())
    Recorder(calls).setServiceParent(top)
    monkeypatch.setattr(gc, "collect", lambda: calls.append("collect"))
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    top.startService()
    assert calls == ["started", "collect", "freeze"]
