"""/about/health and /metrics as twisted.web resources, rendered in memory."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Counter
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from vw.common.ops import add_ops_resources


def render(root: Resource, path: bytes) -> tuple[int, bytes]:
    request = DummyRequest(path.strip(b"/").split(b"/"))
    resource = getChildForRequest(root, request)
    body = resource.render(request)
    return request.responseCode or 200, body


def test_health_ok_and_unhealthy() -> None:
    reasons: list[str | None] = [None]
    root = Resource()
    add_ops_resources(root, [lambda: reasons[0]], CollectorRegistry())
    status, body = render(root, b"/about/health")
    assert status == 200 and json.loads(body) == {"status": "ok"}
    reasons[0] = "database: OperationalError"
    status, body = render(root, b"/about/health")
    assert status == 503
    assert json.loads(body) == {"status": "unhealthy", "reasons": ["database: OperationalError"]}


def test_metrics_expose_the_registry() -> None:
    registry = CollectorRegistry()
    Counter("vw_test_things", "Things", registry=registry).inc(3)
    root = Resource()
    add_ops_resources(root, [], registry)
    status, body = render(root, b"/metrics")
    assert status == 200 and b"vw_test_things_total 3.0" in body
