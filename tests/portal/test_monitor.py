"""The admin page of services: live conferences from the focus and the bridges, and every
service's health, asked over HTTP."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred

from tests.portal.helpers import Portal, Services, resolved
from vw.config import Config, GeneralConfig, PortalConfig
from vw.portal.monitor import Counts, Health, Monitor

FOCUS = "http://focus.test:8888"
BRIDGES = ["http://bridge1.test:9090", "http://bridge2.test:9090"]


def answer(document: object, status: int = 200) -> tuple[int, bytes]:
    return status, json.dumps(document).encode()


def configured() -> Config:
    return Config(portal=PortalConfig(xmpp_url="http://xmpp.test:5280", focus_url=FOCUS,
                                      bridge_urls=BRIDGES, turn_url="http://turn.test:8478/"))


def test_the_overview_counts_and_says_what_went_wrong() -> None:
    services = Services({
        f"{FOCUS}/about/stats": answer({"conferences": 2, "participants": 5, "bridges": 2}),
        f"{BRIDGES[0]}/colibri/stats": answer({"conferences": 2, "endpoints": 3}),
        f"{BRIDGES[1]}/colibri/stats": (200, b"<html>not json</html>"),
        "http://xmpp.test:5280/about/health": answer({"status": "ok"}),
        f"{FOCUS}/about/health": answer({"status": "unhealthy",
                                         "reasons": ["not connected to XMPP"]}, 503),
        f"{BRIDGES[0]}/about/health": answer({"status": "ok"}),
        f"{BRIDGES[1]}/about/health": (502, b"bad gateway"),
    })
    overview = resolved(Deferred.fromCoroutine(Monitor(configured(), services.fetch)
                                               .overview()))
    assert overview.focus == Counts("focus", FOCUS, 2, 5, "ok")
    assert overview.bridges == [Counts("bridge", BRIDGES[0], 2, 3, "ok"),
                                Counts("bridge", BRIDGES[1], None, None,
                                       "the answer is not JSON")]
    assert overview.health == [
        Health("xmpp", "http://xmpp.test:5280", True, "ok"),
        Health("focus", FOCUS, False, "not connected to XMPP"),
        Health("bridge", BRIDGES[0], True, "ok"),
        Health("bridge", BRIDGES[1], False, "the answer is not JSON"),
        Health("turn", "http://turn.test:8478/", False,
               "no answer (ConnectionRefusedError)")]


@pytest.mark.parametrize("bind, host", [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                        ("::", "127.0.0.1"), ("::1", "[::1]"),
                                        ("10.0.0.5", "10.0.0.5")])
def test_without_addresses_the_services_are_on_this_configurations_ports(
        bind: str, host: str) -> None:
    monitor = Monitor(Config(general=GeneralConfig(bind=bind)), Services().fetch)
    assert monitor.services == [("xmpp", f"http://{host}:5280"),
                                ("focus", f"http://{host}:8888"),
                                ("bridge", f"http://{host}:9090"),
                                ("turn", f"http://{host}:8478")]


def test_admins_see_the_services_page(portal: Portal) -> None:
    services = portal.services.answers
    services["http://127.0.0.1:8888/about/stats"] = answer({"conferences": 3,
                                                            "participants": 7})
    services["http://127.0.0.1:9090/colibri/stats"] = answer({"conferences": 3,
                                                              "endpoints": 7})
    services["http://127.0.0.1:5280/about/health"] = answer(
        {"status": "unhealthy", "reasons": ["<b>database</b>"]}, 503)
    admin = portal.signed_in(portal.user("root@example.org", role="admin"))
    page = admin.get("/admin/services")
    assert page.code == 200
    assert "<td>3</td>" in page.text and "<td>7</td>" in page.text
    assert "unhealthy: &lt;b&gt;database&lt;/b&gt;" in page.text
    assert "unhealthy: no answer (ConnectionRefusedError)" in page.text  # the turn server
    assert 'href="/admin/services"' in page.text
    host = portal.signed_in(portal.user("ann@example.org"))
    assert host.get("/admin/services").code == 403
    assert portal.client().get("/admin/services").code == 303
