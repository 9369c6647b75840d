"""vw-portal's access log: Twisted's lines, gathered for a second into one log event."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import Logger, formatEvent
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from vw.portal.service import ACCESS_LOG_EVENT, ACCESS_LOG_INTERVAL, PortalHTTP


def test_the_access_log_gathers_a_seconds_lines_into_one_event() -> None:
    clock = Clock()
    site = PortalHTTP(Resource(), clock)
    events: list[dict[str, Any]] = []
    site.access = Logger(observer=events.append)
    site.startFactory()
    for path in (b"/api/v1/me", b"/meetings"):
        request = DummyRequest([path])
        request.uri, request.code, request.sentLength = path, 200, 2
        site.log(request)
    assert events == []
    clock.advance(ACCESS_LOG_INTERVAL)
    assert len(events) == 1
    lines = formatEvent(events[0]).splitlines()
    assert len(lines) == 2 and "/api/v1/me" in lines[0] and "/meetings" in lines[1]
    site.log(request)
    site.stopFactory()
    assert len(events) == 2 and not clock.getDelayedCalls()


def test_a_busy_seconds_lines_are_logged_a_few_kilobytes_to_an_event() -> None:
    clock = Clock()
    site = PortalHTTP(Resource(), clock)
    events: list[dict[str, Any]] = []
    site.access = Logger(observer=events.append)
    site.startFactory()
    for number in range(500):
        path = f"/api/v1/meetings/{number}".encode()
        request = DummyRequest([path])
        request.uri, request.code, request.sentLength = path, 200, 2
        site.log(request)
    clock.advance(ACCESS_LOG_INTERVAL)
    texts = [formatEvent(event) for event in events]
    assert len(texts) > 1 and all(len(text) <= ACCESS_LOG_EVENT for text in texts)
    lines = "\n".join(texts).splitlines()
    assert [line.split('"')[3] for line in lines] == [
        f"GET /api/v1/meetings/{number} HTTP/1.0" for number in range(500)]
    site.stopFactory()
