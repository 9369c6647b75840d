"""The operations endpoints every service serves: /about/health and /metrics."""

from __future__ import annotations

import json
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request

#: A health check returns None when healthy, else a short reason.
HealthCheck = Callable[[], str | None]


class HealthResource(Resource):
    isLeaf = True

    def __init__(self, checks: list[HealthCheck]) -> None:
        super().__init__()
        self._checks = checks

    def render_GET(self, request: Request) -> bytes:
        reasons = [reason for check in self._checks if (reason := check()) is not None]
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if reasons:
            request.setResponseCode(503)
            return json.dumps({"status": "unhealthy", "reasons": reasons}).encode()
        return json.dumps({"status": "ok"}).encode()


class MetricsResource(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._registry)


class JSONResource(Resource):
    """GET: what ``produce`` returns, as JSON (stats endpoints)."""

    isLeaf = True

    def __init__(self, produce: Callable[[], object]) -> None:
        super().__init__()
        self.produce = produce

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self.produce()).encode()


def add_ops_resources(root: Resource, checks: list[HealthCheck],
                      registry: CollectorRegistry) -> None:
    """Mount /about/health and /metrics under ``root``."""
    about = Resource()
    about.putChild(b"health", HealthResource(checks))
    root.putChild(b"about", about)
    root.putChild(b"metrics", MetricsResource(registry))
