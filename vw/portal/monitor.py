"""What the admin page of services shows: the live conferences and participants the focus
and each bridge count (``/about/stats``, ``/colibri/stats``), and every service's
``/about/health``, fetched over HTTP with a short timeout."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.web.client import Agent, readBody

from vw.config import Config

#: Fetches a URL: its status and body; raises when there is no answer.
Fetch = Callable[[str], Awaitable[tuple[int, bytes]]]
#: Seconds one service may take to answer before it counts as unreachable.
TIMEOUT = 2.0


class Reactor(IReactorTCP, IReactorTime):
    """What an HTTP fetch needs of a reactor."""


def agent_fetch(reactor: Reactor) -> Fetch:
    """A Fetch over Twisted's HTTP client, giving up after TIMEOUT seconds."""
    agent = Agent(reactor, connectTimeout=TIMEOUT)

    async def fetch(url: str) -> tuple[int, bytes]:
        response = await agent.request(b"GET", url.encode()).addTimeout(TIMEOUT, reactor)
        body: Deferred[bytes] = readBody(response)
        return response.code, await body.addTimeout(TIMEOUT, reactor)

    return fetch


@dataclass(frozen=True)
class Health:
    name: str
    url: str
    healthy: bool
    #: "ok", the service's reasons, or why it did not answer.
    detail: str


@dataclass(frozen=True)
class Counts:
    """What the focus or one bridge counts; None when it did not say."""

    name: str
    url: str
    conferences: int | None
    #: The focus's participants, or a bridge's endpoints.
    participants: int | None
    detail: str


@dataclass(frozen=True)
class Overview:
    focus: Counts
    bridges: list[Counts]
    health: list[Health]


def _local(config: Config, port: int) -> str:
    host = config.general.bind
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"


class Monitor:
    def __init__(self, config: Config, fetch: Fetch) -> None:
        portal = config.portal
        self.focus = portal.focus_url or _local(config, config.focus.http_port)
        self.bridges = portal.bridge_urls or [_local(config, config.bridge.http_port)]
        #: Every service whose health is shown, by name and address.
        self.services = [("xmpp", portal.xmpp_url or _local(config, config.xmpp.http_port)),
                         ("focus", self.focus), *(("bridge", url) for url in self.bridges),
                         ("turn", portal.turn_url or _local(config, config.turn.http_port))]
        self._fetch = fetch

    async def overview(self) -> Overview:
        """Every service asked at once."""
        focus = Deferred.fromCoroutine(self._counts("focus", self.focus, "/about/stats",
                                                    "participants"))
        bridges = gatherResults([Deferred.fromCoroutine(self._counts(
            "bridge", url, "/colibri/stats", "endpoints")) for url in self.bridges])
        health = gatherResults([Deferred.fromCoroutine(self._health(name, url))
                                for name, url in self.services])
        return Overview(await focus, await bridges, await health)

    async def _get(self, url: str) -> tuple[int, Any]:
        """Status and JSON body; raises ValueError for a body that is not JSON."""
        status, body = await self._fetch(url)
        return status, json.loads(body)

    async def _counts(self, name: str, base: str, path: str, participants: str) -> Counts:
        try:
            status, stats = await self._get(base.rstrip("/") + path)
        except Exception as e:  # noqa: BLE001 - whatever went wrong is shown, not raised
            return Counts(name, base, None, None, _failure(e))
        if status != 200 or not isinstance(stats, dict):
            return Counts(name, base, None, None, f"HTTP {status}")
        return Counts(name, base, _count(stats.get("conferences")),
                      _count(stats.get(participants)), "ok")

    async def _health(self, name: str, base: str) -> Health:
        try:
            status, answer = await self._get(base.rstrip("/") + "/about/health")
        except Exception as e:  # noqa: BLE001 - whatever went wrong is shown, not raised
            return Health(name, base, False, _failure(e))
        reasons = answer.get("reasons") if isinstance(answer, dict) else None
        if status == 200:
            return Health(name, base, True, "ok")
        if isinstance(reasons, list):
            return Health(name, base, False, "; ".join(str(reason) for reason in reasons))
        return Health(name, base, False, f"HTTP {status}")


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _failure(error: Exception) -> str:
    if isinstance(error, ValueError):
        return "the answer is not JSON"
    return f"no answer ({error.__class__.__name__})"
