"""The bridge on XMPP: brewery presence, XEP-0199 pings, leaving the brewery on a clean stop."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.words.xish.domish import Element

from tests.bridge.harness import Network, make_bridge
from tests.xmpp.helpers import xml
from vw.bridge import colibri2, signaling
from vw.bridge.signaling import COLIBRI_NS, BridgeComponent

BREWERY = "jvbbrewery@internal.auth.localhost"


class FakeStream:
    """Records what the component sends, in order with ``log`` entries of its own."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.sent: list[Element] = []
        self.log = log if log is not None else []

    def addObserver(self, event: str, observer: object) -> None:
        pass

    def send(self, element: Element) -> None:
        self.sent.append(element)
        self.log.append(f"send {element.name} {element.getAttribute('type', 'available')}")


def component(clock: Clock) -> BridgeComponent:
    bridge = make_bridge(Network(), [0.0])
    return BridgeComponent(bridge, "jvb.localhost", BREWERY, "", clock.callLater)


def test_brewery_presence_every_interval_and_once_per_connection() -> None:
    clock = Clock()
    bridge = component(clock)
    stream = FakeStream()
    bridge.componentConnected(stream)
    (presence,) = stream.sent
    assert (presence["from"], presence["to"]) == ("jvb.localhost", f"{BREWERY}/b1")
    assert next(presence.elements(COLIBRI_NS, "stats"), None) is not None
    bridge.componentDisconnected()
    bridge.componentConnected(stream)   # reconnected before the next announcement was due
    clock.advance(signaling.PRESENCE_INTERVAL)
    assert len(stream.sent) == 3


def test_answers_pings_and_passes_other_iqs_on() -> None:
    bridge = component(Clock())
    stream = FakeStream()
    bridge.componentConnected(stream)
    stream.sent.clear()
    bridge._iq(xml("<iq xmlns='jabber:component:accept' type='get' id='p1' "
                   "from='focus@auth.localhost/focus' to='jvb.localhost'>"
                   "<ping xmlns='urn:xmpp:ping'/></iq>"))
    (pong,) = stream.sent
    assert (pong.uri, pong["type"], pong["id"]) == ("jabber:component:accept", "result", "p1")
    assert (pong["from"], pong["to"]) == ("jvb.localhost", "focus@auth.localhost/focus")
    assert pong.firstChildElement() is None
    bridge._iq(xml("<iq xmlns='jabber:component:accept' type='set' id='p2' "
                   "from='focus@auth.localhost/focus' to='jvb.localhost'>"
                   "<ping xmlns='urn:xmpp:ping'/></iq>"))
    error = stream.sent[-1]
    assert error["type"] == "error" and error["id"] == "p2"
    modify = colibri2.ConferenceModify(meeting_id="m1", name="r@conference.localhost",
                                       create=True).toElement()
    iq = xml("<iq xmlns='jabber:component:accept' type='set' id='c1' "
             "from='focus@auth.localhost/focus' to='jvb.localhost'/>")
    iq.addChild(modify)
    bridge._iq(iq)
    assert stream.sent[-1]["type"] == "result" and "m1" in bridge.bridge.conferences


def test_a_clean_stop_leaves_the_brewery_before_disconnecting() -> None:
    clock = Clock()
    manager = signaling.build(make_bridge(Network(), [0.0]), "jvb.localhost", "secret",
                              "127.0.0.1", 1, BREWERY, "", clock.callLater, frozenset())
    connection, bridge = list(manager)
    log: list[str] = []
    connection.stopService = lambda: log.append("disconnect")  # type: ignore[method-assign]
    bridge.componentConnected(FakeStream(log))
    manager.stopService()
    assert log == ["send presence available", "send presence unavailable", "disconnect"]
    clock.advance(signaling.PRESENCE_INTERVAL * 3)
    assert log[-1] == "disconnect"  # no announcement after leaving
