"""The focus loses a bridge: it left the brewery, or failed a health-check ping (an error or no
answer in time); either way its participants are moved to another bridge at once."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.task import Clock
from twisted.words.xish.domish import Element

from tests.focus.test_conference import bridge_answer, occupant, own_presence, result
from tests.xmpp.helpers import xml
from vw.bridge import colibri2
from vw.config import Config
from vw.focus.focus import HEALTH_TIMEOUT, PING_NS, Focus
from vw.focus.link import XMPPLink

ROOM = "r@conference.localhost"
BREWERY = "jvbbrewery@internal.auth.localhost"


class FakeStream:
    """What the link sends; ``deliver`` hands it a stanza as if from the server."""

    def __init__(self) -> None:
        self.sent: list[Element] = []
        self._observers: list[Callable[[Element], None]] = []

    def addObserver(self, event: str, observer: Callable[[Element], None]) -> None:
        self._observers.append(observer)

    def send(self, stanza: Element) -> None:
        self.sent.append(stanza)

    def deliver(self, stanza: Element) -> None:
        for observer in self._observers:
            observer(stanza)

    def take(self, to: str | None = None, child: str | None = None) -> list[Element]:
        def wanted(s: Element) -> bool:
            first = s.firstChildElement()
            return ((to is None or s.getAttribute("to") == to)
                    and (child is None or (first is not None and first.name == child)))
        taken = [s for s in self.sent if wanted(s)]
        self.sent = [s for s in self.sent if not wanted(s)]
        return taken

    def answer(self, iq: Element, payload: Element | None = None,
               error: str | None = None) -> None:
        reply = result(payload)
        reply["id"], reply["from"] = iq["id"], iq["to"]
        if error is not None:
            reply["type"] = "error"
            reply.addChild(xml(f"<error type='cancel'><{error} xmlns="
                               "'urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"))
        self.deliver(reply)


def brewery_presence(nick: str, jid: str, stress: float = 0.0,
                     kind: str | None = None) -> Element:
    extra = f" type='{kind}'" if kind else ""
    stats = ("" if kind else "<stats xmlns='http://jitsi.org/protocol/colibri'>"
             f"<stat name='stress_level' value='{stress}'/></stats>")
    return xml(f"<presence from='{BREWERY}/{nick}'{extra}><x xmlns='http://jabber.org/protocol/"
               f"muc#user'><item affiliation='none' role='participant' jid='{jid}'/></x>"
               f"{stats}</presence>")


def answer_colibri(stream: FakeStream, bridge: str) -> list[colibri2.ConferenceModify]:
    """Answer the Colibri2 requests pending for ``bridge`` as it would."""
    requests = []
    for iq in stream.take(to=bridge, child="conference-modify"):
        request = colibri2.ConferenceModify.fromElement(iq.firstChildElement())
        requests.append(request)
        stream.answer(iq, bridge_answer(request).toElement())
    return requests


def jingle_actions(stream: FakeStream, nick: str) -> list[str]:
    """Jingle sent to ``nick`` (offers acknowledged), by action."""
    actions = []
    for iq in stream.take(to=f"{ROOM}/{nick}", child="jingle"):
        actions.append(iq.firstChildElement()["action"])
        assert iq.getAttribute("id"), "a Jingle IQ without an id is refused by the MUC"
        stream.answer(iq)
    return actions


class Setup:
    """A focus on two bridges, jvb1 (preferred) and jvb2, with alice on jvb1."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.stream = FakeStream()
        self.link = XMPPLink(self.clock)
        self.link.connected(self.stream, "focus@auth.localhost/focus")  # type: ignore[arg-type]
        self.focus = Focus(Config(), self.link, self.clock.seconds)
        self.focus.connected()
        self.stream.deliver(brewery_presence("b1", "jvb1.localhost", 0.1))
        self.stream.deliver(brewery_presence("b2", "jvb2.localhost", 0.5))
        self.focus.request_conference(ROOM, None)
        self.stream.deliver(own_presence())
        self.stream.deliver(occupant("alice"))
        self.stream.take(to=ROOM)  # made a moderator
        assert [r.create for r in answer_colibri(self.stream, "jvb1.localhost")] == [True]
        assert len(answer_colibri(self.stream, "jvb1.localhost")) == 1
        assert jingle_actions(self.stream, "alice") == ["session-initiate"]
        self.stream.sent.clear()

    def pings(self) -> dict[str, Element]:
        return {iq["to"]: iq for iq in self.stream.take(child="ping")}

    def assert_moved_to_jvb2(self) -> None:
        assert jingle_actions(self.stream, "alice") == ["session-terminate"]
        created, allocated = (answer_colibri(self.stream, "jvb2.localhost")
                              + answer_colibri(self.stream, "jvb2.localhost"))
        assert created.create and allocated.endpoints[0].id == "alice"
        assert jingle_actions(self.stream, "alice") == ["session-initiate"]
        assert self.focus.registry.bridge_of(
            self.focus.conferences[ROOM].meeting_id, "alice") == "jvb2.localhost"


def test_a_bridge_leaving_the_brewery_moves_its_participants_at_once() -> None:
    setup = Setup()
    setup.stream.deliver(brewery_presence("b1", "jvb1.localhost", kind="unavailable"))
    setup.assert_moved_to_jvb2()
    assert setup.focus.registry.get("jvb1.localhost") is None


def test_bridges_are_pinged_every_tick_and_an_error_fails_one() -> None:
    setup = Setup()
    setup.focus.tick()
    pings = setup.pings()
    assert set(pings) == {"jvb1.localhost", "jvb2.localhost"}
    ping = pings["jvb1.localhost"]
    assert ping["type"] == "get" and ping.firstChildElement().uri == PING_NS
    setup.focus.tick()
    assert setup.pings() == {}      # one ping at a time per bridge
    setup.stream.answer(pings["jvb2.localhost"])
    setup.stream.answer(ping, error="remote-server-not-found")
    setup.assert_moved_to_jvb2()
    assert not setup.focus.registry.get("jvb1.localhost").healthy
    assert setup.focus.registry.get("jvb2.localhost").healthy
    setup.focus.tick()
    assert set(setup.pings()) == {"jvb1.localhost", "jvb2.localhost"}


def test_a_bridge_that_does_not_answer_in_time_fails() -> None:
    setup = Setup()
    setup.focus.tick()
    pings = setup.pings()
    setup.stream.answer(pings["jvb2.localhost"])
    setup.clock.advance(HEALTH_TIMEOUT - 0.1)
    assert setup.stream.take(child="jingle") == []
    setup.clock.advance(0.1)
    setup.assert_moved_to_jvb2()


def test_pings_lost_with_the_focus_connection_fail_no_bridge() -> None:
    setup = Setup()
    setup.focus.tick()
    setup.link.disconnected()
    setup.focus.tick()
    assert setup.stream.take(child="jingle") == []
    assert setup.focus.registry.get("jvb1.localhost").healthy
    assert setup.pings().keys() == {"jvb1.localhost", "jvb2.localhost"}  # the first round only


def test_the_own_brewery_presence_and_junk_are_ignored() -> None:
    setup = Setup()
    setup.stream.deliver(xml(f"<presence from='{BREWERY}/focus' type='unavailable'/>"))
    setup.stream.deliver(xml(f"<presence from='{BREWERY}/b9'/>"))
    assert setup.stream.take(child="jingle") == []
    assert [b.jid for b in setup.focus.registry.bridges] == ["jvb1.localhost", "jvb2.localhost"]
