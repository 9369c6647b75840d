"""FocusConference in memory: a fake XMPP link whose IQ requests the test answers."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.words.xish.domish import Element

from tests.xmpp.helpers import xml
from vw.bridge import colibri2
from vw.focus import conference as conference_module
from vw.focus.bridges import BridgeRegistry
from vw.focus.conference import FocusConference
from vw.focus.jingle import Content, Jingle, JingleError, RtpDescription
from vw.focus.link import IQFailed
from vw.focus.offer import OfferConfig

ROOM = "r@conference.localhost"
BRIDGE = "jvb.localhost"


class FakeLink:
    """Records what the focus sends; IQ requests wait for the test to answer them."""

    jid = "focus@auth.localhost/focus"
    stream = "connected"

    def __init__(self) -> None:
        self.sent: list[Element] = []
        self.requests: list[tuple[Element, Deferred[Element]]] = []

    def send(self, stanza: Element) -> None:
        self.sent.append(stanza)

    def request(self, iq: Element, timeout: float = 15) -> Deferred[Element]:
        deferred: Deferred[Element] = Deferred()
        self.requests.append((iq, deferred))
        return deferred

    def take(self, to: str | None = None, child: str | None = None
             ) -> list[tuple[Element, Deferred[Element]]]:
        taken = [(iq, d) for iq, d in self.requests
                 if (to is None or iq["to"] == to)
                 and (child is None or iq.firstChildElement().name == child)]
        self.requests = [r for r in self.requests if r not in taken]
        return taken


def result(payload: Element | None = None) -> Element:
    iq = Element((None, "iq"))
    iq["type"] = "result"
    if payload is not None:
        iq.addChild(payload)
    return iq


def bridge_answer(request: colibri2.ConferenceModify, port: int = 10000
                  ) -> colibri2.ConferenceModified:
    """What a bridge on ``port`` answers: a transport for each new endpoint, and its own
    feedback source when the conference is created."""
    modified = colibri2.ConferenceModified(endpoints=[
        colibri2.Endpoint(id=e.id, transport=colibri2.Transport(
            ice_udp=colibri2.IceUdpTransport(
                ufrag="bu", pwd="bp" * 11, candidates=[colibri2.Candidate(
                    component=1, foundation="1", ip="127.0.0.1", port=port,
                    priority=1, protocol="udp", type="host")],
                fingerprints=[colibri2.Fingerprint("sha-256", "actpass", "AA:BB")])))
        for e in request.endpoints if e.create])
    if request.create:
        modified.sources = [colibri2.MediaSource("audio", "jvb-a0", [
            colibri2.Source(ssrc=7, parameters=[colibri2.Parameter("msid", "mixedmslabel x")])
        ])]
    return modified


def answer_colibri(link: FakeLink) -> list[colibri2.ConferenceModify]:
    """Answer every pending Colibri2 request as a bridge would."""
    requests = []
    for iq, deferred in link.take(to=BRIDGE, child="conference-modify"):
        request = colibri2.ConferenceModify.fromElement(iq.firstChildElement())
        requests.append(request)
        deferred.callback(result(bridge_answer(request).toElement()))
    return requests


def occupant(nick: str, kind: str | None = None) -> Element:
    extra = f" type='{kind}'" if kind else ""
    return xml(f"<presence from='{ROOM}/{nick}'{extra}><x xmlns='http://jabber.org/protocol/"
               f"muc#user'><item affiliation='none' role='participant' "
               f"jid='{nick}@localhost/res'/></x></presence>")


def own_presence() -> Element:
    return xml(f"<presence from='{ROOM}/focus'><x xmlns='http://jabber.org/protocol/muc#user'>"
               "<item affiliation='owner' role='moderator' jid='focus@auth.localhost/focus'/>"
               "<status code='110'/></x></presence>")


def make_conference(moderators: str = "all") -> tuple[FocusConference, FakeLink, list]:
    link = FakeLink()
    registry = BridgeRegistry()
    stats = xml("<stats xmlns='http://jitsi.org/protocol/colibri'>"
                "<stat name='stress_level' value='0.1'/></stats>")
    registry.presence_received("b1", BRIDGE, stats, 0.0)
    ended: list = []
    conference = FocusConference(ROOM, link, registry, OfferConfig(), Clock().seconds,
                                 moderators, ended=ended.append)
    return conference, link, ended


def offer_to(link: FakeLink, nick: str) -> Jingle:
    ((iq, deferred),) = link.take(to=f"{ROOM}/{nick}", child="jingle")
    deferred.callback(result())
    return Jingle.fromElement(iq.firstChildElement())


def sources(media: str, ssrc: int, owner: str) -> Content:
    source = colibri2.Source(ssrc=ssrc, parameters=[colibri2.Parameter("msid", f"{owner} t")])
    return Content(media, creator="responder", description=RtpDescription(media,
                                                                            sources=[source]))


def accept(sid: str, ssrc: int, owner: str) -> Jingle:
    content = sources("audio", ssrc, owner)
    content.transport = colibri2.IceUdpTransport(ufrag="cu", pwd="cp" * 11, fingerprints=[
        colibri2.Fingerprint("sha-256", "active", "CC:DD")])
    return Jingle("session-accept", sid, contents=[content])


def test_join_waits_for_owner_presence() -> None:
    conference, link, _ = make_conference()
    joined = conference.join()
    (presence,) = link.sent
    assert presence["to"] == f"{ROOM}/focus"
    assert not joined.called
    conference.presence_received(own_presence())
    assert joined.called and conference.join().called


def test_participants_are_allocated_offered_and_told_about_each_other() -> None:
    conference, link, ended = make_conference()
    conference.presence_received(own_presence())
    conference.presence_received(occupant("alice"))
    (grant,) = link.take(to=ROOM)  # made a moderator
    assert grant[0].firstChildElement().firstChildElement()["affiliation"] == "owner"
    (create,) = answer_colibri(link)
    assert create.create and create.name == ROOM
    (allocate,) = answer_colibri(link)
    assert allocate.endpoints[0].id == "alice" and allocate.endpoints[0].create
    offer = offer_to(link, "alice")
    assert offer.action == "session-initiate"
    assert offer.contents[0].transport.ufrag == "bu"
    assert [s.owner for s in offer.contents[0].description.sources] == ["jvb"]
    conference.jingle_received("alice", accept(offer.sid, 1001, "alice"))
    (update,) = answer_colibri(link)
    assert update.endpoints[0].transport.ice_udp.ufrag == "cu"
    assert [s.ssrc for m in update.endpoints[0].sources for s in m.sources] == [1001]

    conference.presence_received(occupant("bob"))
    link.take(to=ROOM)
    (allocate,) = answer_colibri(link)
    assert not allocate.create  # the conference exists on the bridge already
    offer = offer_to(link, "bob")
    audio = offer.contents[0].description.sources
    assert [(s.ssrc, s.owner) for s in audio] == [(7, "jvb"), (1001, f"{ROOM}/alice")]
    conference.jingle_received("bob", accept(offer.sid, 2002, "bob"))
    answer_colibri(link)
    (add,) = link.take(to=f"{ROOM}/alice", child="jingle")
    added = Jingle.fromElement(add[0].firstChildElement())
    assert added.action == "source-add"
    assert [s.ssrc for s in added.contents[0].description.sources] == [2002]

    conference.presence_received(occupant("bob", "unavailable"))
    (remove,) = link.take(to=f"{ROOM}/alice", child="jingle")
    assert Jingle.fromElement(remove[0].firstChildElement()).action == "source-remove"
    (expire,) = answer_colibri(link)
    assert expire.endpoints[0].id == "bob" and expire.endpoints[0].expire
    conference.presence_received(occupant("alice", "unavailable"))
    requests = answer_colibri(link)
    assert requests[-1].expire  # the last one out ends the conference
    assert ended == [conference] and link.sent[-1]["type"] == "unavailable"


def test_hostile_jingle_is_refused() -> None:
    conference, link, _ = make_conference(moderators="token")
    conference.presence_received(own_presence())
    conference.presence_received(occupant("alice"))
    answer_colibri(link)
    answer_colibri(link)
    offer = offer_to(link, "alice")
    assert link.take(to=ROOM) == []  # "token": no grants by the focus
    for nick, jingle, condition in [
        ("mallory", accept(offer.sid, 1, "m"), "not-acceptable"),
        ("alice", accept("wrong-sid", 1, "a"), "item-not-found"),
        ("alice", Jingle("content-add", offer.sid), "bad-request"),
    ]:
        try:
            conference.jingle_received(nick, jingle)
            raise AssertionError(f"{jingle.action} from {nick} was accepted")
        except JingleError as error:
            assert error.condition == condition
    conference.jingle_received("alice", accept(offer.sid, 1001, "alice"))
    try:  # the same SSRC again
        conference.jingle_received("alice", Jingle("source-add", offer.sid,
                                                   contents=[sources("audio", 1001, "alice")]))
        raise AssertionError("a duplicate SSRC was accepted")
    except JingleError as error:
        assert error.condition == "bad-request"


def test_a_failed_bridge_is_not_used_again() -> None:
    conference, link, _ = make_conference()
    conference.presence_received(own_presence())
    conference.presence_received(occupant("alice"))
    ((_, deferred),) = link.take(to=BRIDGE)
    deferred.errback(IQFailed("remote-server-timeout"))
    assert conference.participants["alice"].bridge is None
    assert conference.registry.select(conference.meeting_id, None, 1.0) is None


def test_first_participant_is_the_moderator_then_the_oldest_one_left() -> None:
    conference, link, _ = make_conference(moderators="first")
    conference.presence_received(own_presence())

    def granted() -> list[str]:
        return [iq.firstChildElement().firstChildElement()["jid"]
                for iq, _ in link.take(to=ROOM)]

    conference.presence_received(occupant("alice"))
    conference.presence_received(occupant("bob"))
    assert granted() == ["alice@localhost"]
    conference.presence_received(occupant("alice", "unavailable"))
    assert granted() == ["bob@localhost"]


def test_large_rooms_get_source_updates_in_batches(monkeypatch) -> None:
    monkeypatch.setattr(conference_module, "BATCH_FROM", 3)
    clock = Clock()
    conference, link, _ = make_conference()
    conference.schedule = clock.callLater
    conference.presence_received(own_presence())
    offers = {}
    for nick in ("alice", "bob", "carol"):
        conference.presence_received(occupant(nick))
        answer_colibri(link)
        answer_colibri(link)
        offers[nick] = offer_to(link, nick)
    link.take(to=ROOM)
    conference.jingle_received("bob", accept(offers["bob"].sid, 2002, "bob"))
    conference.jingle_received("carol", accept(offers["carol"].sid, 3003, "carol"))
    answer_colibri(link)
    assert link.take(to=f"{ROOM}/alice", child="jingle") == []  # not yet
    clock.advance(conference_module.BATCH_DELAY)
    (batch,) = link.take(to=f"{ROOM}/alice", child="jingle")
    update = Jingle.fromElement(batch[0].firstChildElement())
    assert update.action == "source-add"
    assert {s.ssrc for s in update.contents[0].description.sources} == {2002, 3003}


def test_after_a_lost_connection_the_focus_joins_again_and_lets_the_absent_go() -> None:
    conference, link, _ = make_conference()
    conference.presence_received(own_presence())
    for nick in ("alice", "bob"):
        conference.presence_received(occupant(nick))
        answer_colibri(link)
        answer_colibri(link)
        offer_to(link, nick)
    link.take(to=ROOM)
    link.sent.clear()
    rejoined = conference.rejoin()
    assert link.sent[-1]["to"] == f"{ROOM}/focus" and not rejoined.called
    conference.presence_received(occupant("alice"))  # still there; bob left meanwhile
    conference.presence_received(own_presence())
    assert rejoined.called and set(conference.participants) == {"alice"}
    (expire,) = answer_colibri(link)
    assert expire.endpoints[0].id == "bob" and expire.endpoints[0].expire
