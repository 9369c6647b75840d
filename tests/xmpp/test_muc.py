"""Tests for vw.xmpp.muc: the XEP-0045 service driven by stanzas in, stanzas out."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from twisted.words.xish.domish import Element

from vw.xmpp.dataforms import DATA_NS, Form
from vw.xmpp.muc import (
    DELAY_NS,
    DISCO_INFO_NS,
    DISCO_ITEMS_NS,
    MUC_ADMIN_NS,
    MUC_NS,
    MUC_OWNER_NS,
    MUC_USER_NS,
    PING_NS,
    MemoryRoomStore,
    MUCService,
    RoomDefaults,
    RoomHint,
)

DOMAIN = "conference.example.com"
ROOM = f"room@{DOMAIN}"
ALICE = "alice@example.com/a1"
BOB = "bob@example.com/b1"
CAROL = "carol@example.com/c1"
DAN = "dan@example.com/d1"
FOCUS = "focus@auth.example.com/focus1"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
JINGLE_NS = "urn:xmpp:jingle:1"


def parse(xml: str) -> Element:
    """One element from XML text, parsed the way a jabber:client stream child is."""
    found: list[Element] = []
    stream = domish.ExpatElementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse("<stream xmlns='jabber:client'>" + xml)
    assert len(found) == 1, xml
    return found[0]


class Harness:
    """A MUCService whose ``send`` serialises (as the router does) and records."""

    def __init__(self, **kwargs: Any) -> None:
        self.now = 1_700_000_000.0
        self.sent: list[Element] = []
        self.on_send: Callable[[Element], None] | None = None
        self.muc = MUCService(DOMAIN, self._send, clock=lambda: self.now, **kwargs)

    def _send(self, element: Element) -> None:
        self.sent.append(parse(element.toXml()))
        if self.on_send is not None:
            self.on_send(element)

    def feed(self, xml: str) -> list[Element]:
        start = len(self.sent)
        self.muc.receive(parse(xml))
        assert self.muc.internal_errors == 0
        return self.sent[start:]

    def join(self, nick: str, jid: str, room: str = "room", inner: str = "",
             extra: str = "") -> list[Element]:
        return self.feed(f"<presence from='{jid}' to='{room}@{DOMAIN}/{nick}'>"
                         f"<x xmlns='{MUC_NS}'>{inner}</x>{extra}</presence>")

    def iq(self, sender: str, iq_type: str, payload: str, to: str = ROOM,
           iq_id: str = "q1") -> list[Element]:
        return self.feed(f"<iq from='{sender}' to='{to}' type='{iq_type}' id='{iq_id}'>"
                         f"{payload}</iq>")

    def admin(self, sender: str, items: str, iq_type: str = "set") -> list[Element]:
        return self.iq(sender, iq_type, f"<query xmlns='{MUC_ADMIN_NS}'>{items}</query>")

    def say(self, sender: str, text: str, msg_id: str = "m1") -> list[Element]:
        return self.feed(f"<message from='{sender}' to='{ROOM}' type='groupchat' id='{msg_id}'>"
                         f"<body>{text}</body></message>")

    def submit(self, sender: str, fields: dict[str, str]) -> list[Element]:
        body = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in fields.items())
        return self.iq(sender, "set", f"<query xmlns='{MUC_OWNER_NS}'><x xmlns='{DATA_NS}' "
                                      f"type='submit'>{body}</x></query>")


# -- inspection helpers ------------------------------------------------------------------


def child(element: Element, uri: str | None, name: str) -> Element | None:
    for candidate in element.elements():
        if candidate.uri == uri and candidate.name == name:
            return candidate
    return None


def user_x(stanza: Element) -> Element | None:
    return child(stanza, MUC_USER_NS, "x")


def item(stanza: Element) -> Element:
    x = user_x(stanza)
    assert x is not None, stanza.toXml()
    found = child(x, MUC_USER_NS, "item")
    assert found is not None
    return found


def codes(stanza: Element) -> set[str]:
    x = user_x(stanza)
    if x is None:
        return set()
    return {s["code"] for s in x.elements() if s.name == "status"}


def error_of(stanza: Element) -> tuple[str, str]:
    assert stanza.getAttribute("type") == "error", stanza.toXml()
    error = child(stanza, "jabber:client", "error")
    assert error is not None
    condition = next(c.name for c in error.elements() if c.uri == STANZAS_NS)
    return error["type"], condition


def only(stanzas: list[Element]) -> Element:
    assert len(stanzas) == 1, [s.toXml() for s in stanzas]
    return stanzas[0]


def to(stanzas: list[Element], jid: str) -> list[Element]:
    return [s for s in stanzas if s.getAttribute("to") == jid]


def text(element: Element | None) -> str:
    assert element is not None
    return "".join(c for c in element.children if isinstance(c, str))


def room_with(*people: tuple[str, str], **kwargs: Any) -> Harness:
    """A harness where (nick, jid) pairs have joined, the first one creating the room."""
    harness = Harness(**kwargs)
    for nick, jid in people:
        harness.join(nick, jid)
    return harness


# -- joining -------------------------------------------------------------------------------


def test_first_join_creates_room_with_201_110_100_then_subject() -> None:
    h = Harness()
    out = h.join("alice", ALICE)
    presence, subject = out
    assert presence["from"] == f"{ROOM}/alice" and presence["to"] == ALICE
    assert codes(presence) == {"100", "110", "201"}
    assert (item(presence)["affiliation"], item(presence)["role"]) == ("owner", "moderator")
    assert item(presence)["jid"] == ALICE
    assert subject.name == "message" and subject["type"] == "groupchat"
    assert child(subject, "jabber:client", "subject") is not None
    assert h.muc.occupant_count() == 1 and list(h.muc.rooms()) == ["room"]


def test_room_node_is_lower_cased() -> None:
    h = Harness()
    out = h.feed(f"<presence from='{ALICE}' to='RoOm@{DOMAIN}/alice'><x xmlns='{MUC_NS}'/>"
                 "</presence>")
    assert out[0]["from"] == f"{ROOM}/alice"


def test_second_join_gets_roster_first_then_own_presence_last() -> None:
    h = room_with(("alice", ALICE))
    out = h.join("bob", BOB)
    assert [(s.name, s["to"]) for s in out] == [
        ("presence", BOB), ("presence", ALICE), ("presence", BOB), ("message", BOB)]
    roster, to_alice, own, _subject = out
    assert roster["from"] == f"{ROOM}/alice" and codes(roster) == set()
    assert item(roster)["jid"] == ALICE
    assert to_alice["from"] == f"{ROOM}/bob" and codes(to_alice) == set()
    assert item(to_alice)["jid"] == BOB
    assert (item(to_alice)["affiliation"], item(to_alice)["role"]) == ("none", "participant")
    assert codes(own) == {"100", "110"}


def test_presence_children_pass_through_untouched() -> None:
    h = room_with(("alice", ALICE))
    extra = ("<stats-id>Rosalind-x7Q</stats-id>"
             "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='v='/>"
             "<jitsi_participant_codecType>vp8</jitsi_participant_codecType>"
             "<nick xmlns='http://jabber.org/protocol/nick'>Bob</nick>"
             "<audiomuted xmlns='http://jitsi.org/jitmeet/audio'>false</audiomuted>"
             "<identity><user><id>1</id></user></identity>"
             f"<x xmlns='{MUC_USER_NS}'><item affiliation='owner' role='moderator'/></x>")
    out = h.join("bob", BOB, inner="<password>leak</password>", extra=extra)
    to_alice = only(to(out, ALICE))
    names = [(c.uri, c.name) for c in to_alice.elements()]
    assert names == [
        ("jabber:client", "stats-id"), ("http://jabber.org/protocol/caps", "c"),
        ("jabber:client", "jitsi_participant_codecType"),
        ("http://jabber.org/protocol/nick", "nick"), ("http://jitsi.org/jitmeet/audio",
                                                      "audiomuted"),
        ("jabber:client", "identity"), (MUC_USER_NS, "x")]
    assert text(child(to_alice, "jabber:client", "stats-id")) == "Rosalind-x7Q"
    assert child(to_alice, "http://jabber.org/protocol/caps", "c")["ver"] == "v="
    assert item(to_alice)["affiliation"] == "none"     # the client's muc#user x is gone
    assert "leak" not in to_alice.toXml()


def test_presence_update_is_rebroadcast_with_self_110() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.feed(f"<presence from='{BOB}' to='{ROOM}/bob'>"
                 "<videomuted xmlns='http://jitsi.org/jitmeet/video'>true</videomuted></presence>")
    assert [s["to"] for s in out] == [ALICE, BOB]
    assert codes(out[0]) == set() and codes(out[1]) == {"110"}
    assert all(child(s, "http://jitsi.org/jitmeet/video", "videomuted") is not None for s in out)


def test_semi_anonymous_room_shows_jids_to_moderators_only() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), defaults=RoomDefaults(whois="moderators"))
    out = h.join("carol", CAROL)
    assert item(only(to(out, ALICE)))["jid"] == CAROL          # moderator
    assert not item(only(to(out, BOB))).hasAttribute("jid")    # participant
    own = out[-2]
    assert own["to"] == CAROL and "100" not in codes(own)
    assert not item(out[1]).hasAttribute("jid")                # roster entry for bob


def test_nick_change_sends_303_then_new_presence() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.feed(f"<presence from='{BOB}' to='{ROOM}/robert'/>")
    assert [(s["from"], s["to"], s.getAttribute("type")) for s in out] == [
        (f"{ROOM}/bob", ALICE, "unavailable"), (f"{ROOM}/bob", BOB, "unavailable"),
        (f"{ROOM}/robert", ALICE, None), (f"{ROOM}/robert", BOB, None)]
    assert item(out[0])["nick"] == "robert" and codes(out[0]) == {"303"}
    assert codes(out[1]) == {"303", "110"} and codes(out[3]) == {"110"}
    assert set(h.muc.room("room").occupants) == {"alice", "robert"}


def test_nick_change_to_taken_nick_is_a_conflict() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    error = only(h.feed(f"<presence from='{BOB}' to='{ROOM}/alice'/>"))
    assert error_of(error) == ("cancel", "conflict")
    assert error["from"] == f"{ROOM}/alice"


def test_leave_sends_110_to_self_and_unavailable_to_others() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.feed(f"<presence from='{BOB}' to='{ROOM}/bob' type='unavailable'>"
                 "<status>bye</status></presence>")
    assert [s["to"] for s in out] == [BOB, ALICE]
    assert codes(out[0]) == {"110"} and codes(out[1]) == set()
    assert all(s["type"] == "unavailable" and item(s)["role"] == "none" for s in out)
    assert text(child(out[1], "jabber:client", "status")) == "bye"
    assert h.muc.occupant_count() == 1


def test_last_leave_destroys_temporary_room() -> None:
    h = room_with(("alice", ALICE))
    h.feed(f"<presence from='{ALICE}' to='{ROOM}/alice' type='unavailable'/>")
    assert h.muc.rooms() == {}


def test_unavailable_from_non_occupant_is_ignored() -> None:
    h = room_with(("alice", ALICE))
    assert h.feed(f"<presence from='{BOB}' to='{ROOM}/bob' type='unavailable'/>") == []
    assert h.feed(f"<presence from='{BOB}' to='nowhere@{DOMAIN}/bob' type='unavailable'/>") == []


def test_error_presence_from_occupant_removes_it_with_333() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.feed(f"<presence from='{BOB}' to='{ROOM}/bob' type='error'>"
                 f"<error type='cancel'><gone xmlns='{STANZAS_NS}'/></error></presence>")
    assert codes(only(to(out, ALICE))) == {"333"}
    assert "bob" not in h.muc.room("room").occupants


def test_error_message_bounce_removes_occupant() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.feed(f"<message from='{BOB}' to='{ROOM}/alice' type='error'>"
                 f"<error type='cancel'><service-unavailable xmlns='{STANZAS_NS}'/></error>"
                 "</message>")
    assert codes(only(to(out, ALICE))) == {"333"}


def test_nick_conflict_on_join() -> None:
    h = room_with(("alice", ALICE))
    error = only(h.join("alice", BOB))
    assert error_of(error) == ("cancel", "conflict")
    assert error["from"] == f"{ROOM}/alice" and error["to"] == BOB
    assert child(error, MUC_NS, "x") is not None


def test_same_full_jid_joining_again_is_resynchronised() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.join("bob", BOB)
    assert [s["to"] for s in out] == [BOB, ALICE, BOB, BOB]
    assert codes(out[2]) == {"110"}
    assert h.muc.occupant_count() == 2


def test_join_without_nick_is_jid_malformed() -> None:
    h = Harness()
    error = only(h.feed(f"<presence from='{ALICE}' to='{ROOM}'><x xmlns='{MUC_NS}'/>"
                        "</presence>"))
    assert error_of(error) == ("modify", "jid-malformed")
    assert error["from"] == ROOM


def test_presence_without_muc_x_from_non_occupant_gets_kick_like_answer() -> None:
    h = room_with(("alice", ALICE))
    answer = only(h.feed(f"<presence from='{BOB}' to='{ROOM}/bob'/>"))
    assert answer["type"] == "unavailable" and codes(answer) == {"110", "307", "333"}
    assert h.muc.occupant_count() == 1


def test_password_protected_room() -> None:
    h = room_with(("alice", ALICE))
    h.submit(ALICE, {"muc#roomconfig_roomsecret": "s3cret"})
    assert error_of(only(h.join("bob", BOB))) == ("auth", "not-authorized")
    assert error_of(only(h.join("bob", BOB, inner="<password>nope</password>"))) == (
        "auth", "not-authorized")
    out = h.join("bob", BOB, inner="<password>s3cret</password>")
    assert codes(out[-2]) >= {"110"}


def test_members_only_room() -> None:
    h = room_with(("alice", ALICE), defaults=RoomDefaults(members_only=True))
    assert error_of(only(h.join("bob", BOB))) == ("auth", "registration-required")
    h.admin(ALICE, "<item affiliation='member' jid='bob@example.com'/>")
    out = h.join("bob", BOB)
    assert item(out[-2])["affiliation"] == "member"


def test_max_occupants_reached_but_owners_may_enter() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), defaults=RoomDefaults(max_occupants=2))
    assert error_of(only(h.join("carol", CAROL))) == ("wait", "service-unavailable")
    h.admin(ALICE, "<item affiliation='admin' jid='carol@example.com'/>")
    assert codes(h.join("carol", CAROL)[-2]) >= {"110"}


def test_limit_hint_sets_the_rooms_limit_and_admins_take_no_seat() -> None:
    focus = "focus@auth.example.com/f"
    h = room_with(("focus", focus), ("alice", ALICE), admins=["focus@auth.example.com"],
                  room_hint=lambda jid, node: RoomHint(
                      max_occupants=2 if jid.userhost() == "bob@example.com" else 0))
    assert h.muc.room("room").config.max_occupants == 0
    assert codes(h.join("bob", BOB)[-2]) >= {"110"}  # the focus is not counted: 2 of 2
    assert h.muc.room("room").config.max_occupants == 2
    assert error_of(only(h.join("carol", CAROL))) == ("wait", "service-unavailable")


def test_affiliation_hint_makes_jwt_moderators_owners() -> None:
    hints = {("bob@example.com", "room"): "owner"}
    h = room_with(("alice", ALICE), affiliation_hint=lambda jid, node: hints.get(
        (jid.userhost(), node)))
    own = h.join("bob", BOB)[-2]
    assert (item(own)["affiliation"], item(own)["role"]) == ("owner", "moderator")
    assert h.muc.room("room").affiliations["bob@example.com"] == "owner"


def test_affiliation_hint_failure_does_not_break_join() -> None:
    def broken(jid: JID, node: str) -> str | None:
        raise RuntimeError("token service down")

    h = room_with(("alice", ALICE), affiliation_hint=broken)
    assert item(h.join("bob", BOB)[-2])["affiliation"] == "none"


def test_service_admin_owns_every_room_and_skips_the_password() -> None:
    h = room_with(("alice", ALICE), admins=["focus@auth.example.com"])
    h.submit(ALICE, {"muc#roomconfig_roomsecret": "s3cret"})
    own = h.join("focus", FOCUS)[-2]
    assert (item(own)["affiliation"], item(own)["role"]) == ("owner", "moderator")


# -- messages ----------------------------------------------------------------------------


def test_groupchat_is_reflected_to_everyone_with_the_same_id() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), ("carol", CAROL))
    out = h.say(BOB, "hello", msg_id="abc")
    assert [s["to"] for s in out] == [ALICE, BOB, CAROL]
    for message in out:
        assert (message["from"], message["type"], message["id"]) == (
            f"{ROOM}/bob", "groupchat", "abc")
        assert text(child(message, "jabber:client", "body")) == "hello"


def test_groupchat_from_non_occupant_is_not_acceptable() -> None:
    h = room_with(("alice", ALICE))
    assert error_of(only(h.say(BOB, "hi"))) == ("modify", "not-acceptable")


def test_message_to_missing_room_is_item_not_found() -> None:
    h = Harness()
    assert error_of(only(h.say(BOB, "hi"))) == ("cancel", "item-not-found")


def test_moderated_room_gives_visitors_no_voice_until_granted() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), defaults=RoomDefaults(moderated=True))
    joined = h.join("carol", CAROL)
    assert item(joined[1])["role"] == "visitor"                 # bob, in carol's roster
    assert item(joined[-2])["role"] == "visitor"                # carol herself
    error = only(h.say(BOB, "can I speak?"))
    assert error_of(error) == ("auth", "forbidden")
    assert text(child(error, "jabber:client", "body")) == "can I speak?"
    out = h.admin(ALICE, "<item nick='bob' role='participant'><reason>go</reason></item>")
    assert out[0]["type"] == "result"
    assert {s["to"] for s in out[1:]} == {ALICE, BOB, CAROL}
    assert all(item(s)["role"] == "participant" for s in out[1:])
    assert len(h.say(BOB, "thanks")) == 3
    h.admin(ALICE, "<item nick='bob' role='visitor'/>")
    assert error_of(only(h.say(BOB, "again"))) == ("auth", "forbidden")


def test_private_message_is_relayed_from_the_occupant_jid() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    message = only(h.feed(f"<message from='{BOB}' to='{ROOM}/alice' type='chat' id='p1'>"
                          "<body>psst</body></message>"))
    assert (message["from"], message["to"], message["type"], message["id"]) == (
        f"{ROOM}/bob", ALICE, "chat", "p1")
    assert user_x(message) is not None
    assert text(child(message, "jabber:client", "body")) == "psst"


def test_private_message_errors() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    assert error_of(only(h.feed(f"<message from='{BOB}' to='{ROOM}/nobody' type='chat'>"
                                "<body>x</body></message>"))) == ("cancel", "item-not-found")
    assert error_of(only(h.feed(f"<message from='{CAROL}' to='{ROOM}/alice' type='chat'>"
                                "<body>x</body></message>"))) == ("modify", "not-acceptable")
    assert error_of(only(h.feed(f"<message from='{BOB}' to='{ROOM}/alice' type='groupchat'>"
                                "<body>x</body></message>"))) == ("modify", "bad-request")


def test_subject_changes_and_is_sent_to_joiners_after_history() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    h.say(ALICE, "before")
    out = h.feed(f"<message from='{ALICE}' to='{ROOM}' type='groupchat'>"
                 "<subject>Agenda</subject></message>")
    assert [s["to"] for s in out] == [ALICE, BOB]
    assert text(child(out[0], "jabber:client", "subject")) == "Agenda"
    forbidden = only(h.feed(f"<message from='{BOB}' to='{ROOM}' type='groupchat'>"
                            "<subject>Mine</subject></message>"))
    assert error_of(forbidden) == ("auth", "forbidden")
    joined = h.join("carol", CAROL)
    history, subject = joined[-2], joined[-1]
    assert text(child(history, "jabber:client", "body")) == "before"
    assert subject["from"] == f"{ROOM}/alice"
    assert text(child(subject, "jabber:client", "subject")) == "Agenda"
    assert child(subject, DELAY_NS, "delay") is not None


def test_changesubject_lets_participants_set_the_subject() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    h.submit(ALICE, {"muc#roomconfig_changesubject": "1"})
    out = h.feed(f"<message from='{BOB}' to='{ROOM}' type='groupchat'><subject>Mine</subject>"
                 "</message>")
    assert len(out) == 2 and h.muc.room("room").subject == "Mine"


def test_history_is_delivered_with_delay_and_limits() -> None:
    h = room_with(("alice", ALICE))
    for n in range(3):
        h.say(ALICE, f"m{n}", msg_id=f"id{n}")
        h.now += 100
    joined = h.join("bob", BOB)
    history = [s for s in joined if child(s, "jabber:client", "body") is not None]
    assert [text(child(s, "jabber:client", "body")) for s in history] == ["m0", "m1", "m2"]
    for message in history:
        delay = child(message, DELAY_NS, "delay")
        assert delay["from"] == ROOM and delay["stamp"].endswith("Z")
        assert message["from"] == f"{ROOM}/alice" and message["type"] == "groupchat"
    assert [s["id"] for s in history] == ["id0", "id1", "id2"]

    def bodies(inner: str, jid: str, nick: str) -> list[str]:
        out = h.join(nick, jid, inner=inner)
        return [text(child(s, "jabber:client", "body")) for s in out
                if child(s, "jabber:client", "body") is not None]

    assert bodies("<history maxstanzas='1'/>", CAROL, "carol") == ["m2"]
    assert bodies("<history maxchars='0'/>", DAN, "dan") == []
    assert bodies("<history seconds='150'/>", "eve@example.com/e", "eve") == ["m2"]
    assert bodies("<history maxchars='1000000'/>", "fay@example.com/f", "fay") == [
        "m0", "m1", "m2"]
    assert bodies("<history maxstanzas='bogus'/>", "gus@example.com/g", "gus") == [
        "m0", "m1", "m2"]


def test_history_size_is_bounded() -> None:
    h = room_with(("alice", ALICE), defaults=RoomDefaults(history_size=2))
    for n in range(5):
        h.say(ALICE, f"m{n}")
    assert [e.children[0].children[0] for e in h.muc.room("room").history] == ["m3", "m4"]


# -- kick, ban, roles, affiliations ------------------------------------------------------


def test_kick_sends_307_with_actor_and_reason() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), ("carol", CAROL))
    out = h.admin(ALICE, "<item nick='bob' role='none'><reason>Bye</reason></item>")
    assert [(s.name, s["to"]) for s in out] == [
        ("presence", BOB), ("iq", ALICE), ("presence", ALICE), ("presence", CAROL)]
    kicked = out[0]
    assert kicked["type"] == "unavailable" and codes(kicked) == {"110", "307"}
    assert child(item(kicked), MUC_USER_NS, "actor")["nick"] == "alice"
    assert text(child(item(kicked), MUC_USER_NS, "reason")) == "Bye"
    assert out[1]["type"] == "result" and out[1]["id"] == "q1"
    assert codes(out[2]) == {"307"} and item(out[2])["role"] == "none"
    assert "bob" not in h.muc.room("room").occupants


def test_kick_permissions() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), ("carol", CAROL))
    assert error_of(only(h.admin(BOB, "<item nick='carol' role='none'/>"))) == (
        "auth", "forbidden")
    h.admin(ALICE, "<item affiliation='admin' jid='bob@example.com'/>")
    assert error_of(only(h.admin(BOB, "<item nick='alice' role='none'/>"))) == (
        "cancel", "not-allowed")
    assert error_of(only(h.admin(ALICE, "<item nick='ghost' role='none'/>"))) == (
        "cancel", "item-not-found")
    assert error_of(only(h.admin(ALICE, "<item nick='bob' role='king'/>"))) == (
        "modify", "bad-request")
    assert error_of(only(h.admin(ALICE, "<item nick='bob' role='none' affiliation='none'/>"))
                    ) == ("modify", "bad-request")
    assert error_of(only(h.admin(ALICE, "<item nick='bob' role='participant'/>"))) == (
        "cancel", "not-allowed")


def test_grant_and_revoke_moderator() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), ("carol", CAROL))
    assert error_of(only(h.admin(BOB, "<item nick='carol' role='moderator'/>"))) == (
        "auth", "forbidden")
    out = h.admin(ALICE, "<item nick='bob' role='moderator'/>")
    assert out[0]["type"] == "result" and item(out[1])["role"] == "moderator"
    assert error_of(only(h.admin(BOB, "<item nick='alice' role='none'/>"))) == (
        "cancel", "not-allowed")
    out = h.admin(ALICE, "<item nick='bob' role='participant'/>")
    assert item(out[1])["role"] == "participant"


def test_ban_removes_with_301_and_keeps_out() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.admin(ALICE, "<item affiliation='outcast' jid='bob@example.com'>"
                         "<reason>spam</reason></item>")
    assert [s["to"] for s in out] == [BOB, ALICE, ALICE]
    assert codes(out[0]) == {"110", "301"} and item(out[0])["affiliation"] == "outcast"
    assert out[1]["type"] == "result" and codes(out[2]) == {"301"}
    assert error_of(only(h.join("bob", BOB))) == ("auth", "forbidden")
    lst = only(h.admin(ALICE, "<item affiliation='outcast'/>", iq_type="get"))
    query = child(lst, MUC_ADMIN_NS, "query")
    assert [(i["jid"], i["affiliation"]) for i in query.elements()] == [
        ("bob@example.com", "outcast")]
    h.admin(ALICE, "<item affiliation='none' jid='bob@example.com'/>")
    assert codes(h.join("bob", BOB)[-2]) >= {"110"}


def test_affiliation_permissions() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB), ("carol", CAROL))
    assert error_of(only(h.admin(BOB, "<item affiliation='outcast' jid='carol@example.com'/>"))
                    ) == ("auth", "forbidden")
    assert error_of(only(h.admin(ALICE, "<item affiliation='outcast' jid='alice@example.com'/>"
                                 ))) == ("cancel", "conflict")
    assert error_of(only(h.admin(ALICE, "<item affiliation='member' jid='alice@example.com'/>"
                                 ))) == ("cancel", "conflict")       # the last owner
    h.admin(ALICE, "<item affiliation='admin' jid='bob@example.com'/>")
    assert error_of(only(h.admin(BOB, "<item affiliation='outcast' jid='alice@example.com'/>"))
                    ) == ("cancel", "not-allowed")
    assert error_of(only(h.admin(BOB, "<item affiliation='owner' jid='carol@example.com'/>"))
                    ) == ("auth", "forbidden")
    assert error_of(only(h.admin(ALICE, "<item affiliation='owner' jid='not a jid@x'/>"))
                    ) == ("modify", "jid-malformed")
    # an admin may ban ordinary users
    out = h.admin(BOB, "<item affiliation='outcast' jid='carol@example.com'/>")
    assert codes(out[0]) == {"110", "301"}


def test_owner_grant_updates_presence_and_owner_may_step_down_when_not_last() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.admin(ALICE, "<item affiliation='owner' jid='bob@example.com'/>")
    assert out[0]["type"] == "result"
    assert [(item(s)["affiliation"], item(s)["role"]) for s in out[1:]] == [
        ("owner", "moderator")] * 2
    out = h.admin(ALICE, "<item affiliation='member' jid='alice@example.com'/>")
    assert out[0]["type"] == "result"
    assert item(only(to(out, BOB)))["affiliation"] == "member"


def test_gaining_an_affiliation_never_lowers_the_role() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    h.admin(ALICE, "<item nick='bob' role='moderator'/>")
    out = h.admin(ALICE, "<item affiliation='member' jid='bob@example.com'/>")
    assert (item(out[1])["affiliation"], item(out[1])["role"]) == ("member", "moderator")
    out = h.admin(ALICE, "<item affiliation='admin' jid='bob@example.com'/>")
    out = h.admin(ALICE, "<item affiliation='none' jid='bob@example.com'/>")
    assert (item(out[1])["affiliation"], item(out[1])["role"]) == ("none", "participant")


def test_lists_by_affiliation_and_role() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    h.admin(ALICE, "<item affiliation='member' jid='bob@example.com'/>")
    members = child(only(h.admin(ALICE, "<item affiliation='member'/>", "get")),
                    MUC_ADMIN_NS, "query")
    assert [(i["jid"], i["nick"]) for i in members.elements()] == [("bob@example.com", "bob")]
    moderators = child(only(h.admin(ALICE, "<item role='moderator'/>", "get")), MUC_ADMIN_NS,
                       "query")
    assert [(i["nick"], i["jid"], i["affiliation"]) for i in moderators.elements()] == [
        ("alice", ALICE, "owner")]
    assert error_of(only(h.admin(BOB, "<item affiliation='owner'/>", "get"))) == (
        "auth", "forbidden")
    assert error_of(only(h.admin(BOB, "<item role='participant'/>", "get"))) == (
        "auth", "forbidden")
    assert error_of(only(h.admin(ALICE, "<item/>", "get"))) == ("modify", "bad-request")


# -- owner: configuration and destruction ------------------------------------------------


def config_form(h: Harness, sender: str = ALICE, payload: str = "") -> Form:
    result = only(h.iq(sender, "get", f"<query xmlns='{MUC_OWNER_NS}'>{payload}</query>"))
    assert result["type"] == "result", result.toXml()
    return Form.fromElement(child(child(result, MUC_OWNER_NS, "query"), DATA_NS, "x"))


def test_config_form_round_trip() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    form = config_form(h)
    assert form.type == "form" and form.form_type == "http://jabber.org/protocol/muc#roomconfig"
    for suffix in ("roomname", "roomdesc", "persistentroom", "publicroom", "moderatedroom",
                   "membersonly", "passwordprotectedroom", "roomsecret", "maxusers", "whois",
                   "changesubject", "historylength"):
        assert form.get(f"muc#roomconfig_{suffix}") is not None, suffix
    assert form.value("muc#roomconfig_whois") == "anyone"
    out = h.submit(ALICE, {"FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig",
                           "muc#roomconfig_roomname": "Team", "muc#roomconfig_roomsecret": "pw",
                           "muc#roomconfig_maxusers": "30",
                           "muc#roomconfig_historylength": "5",
                           "muc#roomconfig_whois": "moderators", "unknown#field": "x"})
    assert out[0]["type"] == "result"
    notices = out[1:]
    assert {s["to"] for s in notices} == {ALICE, BOB}
    assert all(s["from"] == ROOM and codes(s) == {"104", "173"} for s in notices)
    form = config_form(h)
    assert form.value("muc#roomconfig_roomname") == "Team"
    assert form.get("muc#roomconfig_passwordprotectedroom").bool_value() is True
    assert form.value("muc#roomconfig_maxusers") == "30"
    assert form.value("muc#roomconfig_historylength") == "5"
    config = h.muc.room("room").config
    assert (config.password, config.max_occupants, config.whois) == ("pw", 30, "moderators")


def test_jitsi_style_whois_submit_and_unlock() -> None:
    h = room_with(("alice", ALICE))
    form = config_form(h, payload=f"<x xmlns='{DATA_NS}' type='submit'/>")
    assert form.get("muc#roomconfig_whois") is not None
    assert h.submit(ALICE, {"FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig",
                            "muc#roomconfig_whois": "anyone"})[0]["type"] == "result"
    h.submit(ALICE, {"muc#roomconfig_roomsecret": "lock"})
    assert h.muc.room("room").config.password == "lock"
    h.feed(f"<iq from='{ALICE}' to='{ROOM}' type='set' id='u'><query xmlns='{MUC_OWNER_NS}'>"
           f"<x xmlns='{DATA_NS}' type='submit'><field var='muc#roomconfig_roomsecret'>"
           "<value/></field></x></query></iq>")
    assert h.muc.room("room").config.password == ""


def test_instant_room_submit_and_cancel_change_nothing() -> None:
    h = room_with(("alice", ALICE))
    before = h.muc.room("room").config
    out = h.iq(ALICE, "set", f"<query xmlns='{MUC_OWNER_NS}'><x xmlns='{DATA_NS}' "
                             "type='submit'/></query>")
    assert only(out)["type"] == "result"
    out = h.iq(ALICE, "set", f"<query xmlns='{MUC_OWNER_NS}'><x xmlns='{DATA_NS}' "
                             "type='cancel'/></query>")
    assert only(out)["type"] == "result"
    assert h.muc.room("room").config == before


def test_config_errors() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    assert error_of(only(h.iq(BOB, "get", f"<query xmlns='{MUC_OWNER_NS}'/>"))) == (
        "auth", "forbidden")
    assert error_of(only(h.submit(BOB, {"muc#roomconfig_roomname": "x"}))) == (
        "auth", "forbidden")
    assert error_of(only(h.submit(ALICE, {"muc#roomconfig_whois": "nobody"}))) == (
        "modify", "not-acceptable")
    assert error_of(only(h.submit(ALICE, {"muc#roomconfig_moderatedroom": "maybe"}))) == (
        "modify", "bad-request")
    assert error_of(only(h.submit(ALICE, {"muc#roomconfig_passwordprotectedroom": "1"}))) == (
        "modify", "not-acceptable")
    assert error_of(only(h.submit(ALICE, {"muc#roomconfig_maxusers": "-3"}))) == (
        "modify", "not-acceptable")
    assert error_of(only(h.iq(ALICE, "set", f"<query xmlns='{MUC_OWNER_NS}'><x "
                                            f"xmlns='{DATA_NS}'/></query>"))) == (
        "modify", "bad-request")
    assert error_of(only(h.iq(ALICE, "set", f"<query xmlns='{MUC_OWNER_NS}'/>"))) == (
        "modify", "bad-request")


def test_members_only_switch_removes_non_members_with_322() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    out = h.submit(ALICE, {"muc#roomconfig_membersonly": "1"})
    removed = only([s for s in to(out, BOB) if s.name == "presence"])
    assert removed["type"] == "unavailable" and codes(removed) == {"110", "322"}
    assert "bob" not in h.muc.room("room").occupants


def test_destroy_room() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    assert error_of(only(h.iq(BOB, "set", f"<query xmlns='{MUC_OWNER_NS}'><destroy/></query>"))
                    ) == ("auth", "forbidden")
    out = h.iq(ALICE, "set", f"<query xmlns='{MUC_OWNER_NS}'><destroy jid='other@{DOMAIN}'>"
                             "<reason>Done</reason></destroy></query>")
    assert [(s.name, s["to"]) for s in out] == [
        ("presence", ALICE), ("presence", BOB), ("iq", ALICE)]
    for presence in out[:2]:
        assert presence["type"] == "unavailable" and codes(presence) == {"110"}
        destroy = child(user_x(presence), MUC_USER_NS, "destroy")
        assert destroy["jid"] == f"other@{DOMAIN}"
        assert text(child(destroy, MUC_USER_NS, "reason")) == "Done"
    assert out[2]["type"] == "result" and h.muc.rooms() == {}
    assert h.muc.occupant_count() == 0


# -- IQ relay, invitations, disco ----------------------------------------------------------


def test_iq_relay_between_occupants_maps_the_reply_back() -> None:
    h = room_with(("focus", FOCUS), ("alice", ALICE), admins=["focus@auth.example.com"])
    jingle = f"<jingle xmlns='{JINGLE_NS}' action='session-initiate' sid='s1'><content/></jingle>"
    relayed = only(h.iq(FOCUS, "set", jingle, to=f"{ROOM}/alice", iq_id="j1"))
    assert (relayed["from"], relayed["to"], relayed["id"], relayed["type"]) == (
        f"{ROOM}/focus", ALICE, "j1", "set")
    assert child(relayed, JINGLE_NS, "jingle")["sid"] == "s1"
    answer = only(h.feed(f"<iq from='{ALICE}' to='{ROOM}/focus' type='result' id='j1'/>"))
    assert (answer["from"], answer["to"], answer["id"], answer["type"]) == (
        f"{ROOM}/alice", FOCUS, "j1", "result")
    assert h.feed(f"<iq from='{ALICE}' to='{ROOM}/focus' type='result' id='j1'/>") == []
    assert h.feed(f"<iq from='{ALICE}' to='{ROOM}/focus' type='result' id='never'/>") == []
    # the other way round, answered by an error (e.g. a router bounce)
    h.iq(ALICE, "set", jingle, to=f"{ROOM}/focus", iq_id="j2")
    error = only(h.feed(f"<iq from='{FOCUS}' to='{ROOM}/alice' type='error' id='j2'>"
                        f"<error type='cancel'><service-unavailable xmlns='{STANZAS_NS}'/>"
                        "</error></iq>"))
    assert (error["from"], error["to"]) == (f"{ROOM}/focus", ALICE)
    assert error_of(error) == ("cancel", "service-unavailable")


def test_iq_relay_errors_and_self_ping() -> None:
    h = room_with(("alice", ALICE))
    payload = f"<ping xmlns='{PING_NS}'/>"
    assert error_of(only(h.iq(BOB, "get", payload, to=f"{ROOM}/alice"))) == (
        "modify", "not-acceptable")
    assert error_of(only(h.iq(ALICE, "get", payload, to=f"{ROOM}/nobody"))) == (
        "cancel", "item-not-found")
    pong = only(h.iq(ALICE, "get", payload, to=f"{ROOM}/alice"))
    assert pong["type"] == "result" and pong["to"] == ALICE


def test_reentrant_answer_from_inside_send_keeps_order() -> None:
    h = room_with(("focus", FOCUS), ("alice", ALICE))

    def answer_at_once(element: Element) -> None:
        if element.name == "iq" and element["to"] == FOCUS and element["type"] == "get":
            h.muc.receive(parse(f"<iq from='{FOCUS}' to='{ROOM}/alice' type='result' "
                                f"id='{element['id']}'/>"))

    h.on_send = answer_at_once
    out = h.iq(ALICE, "get", "<query xmlns='urn:example'/>", to=f"{ROOM}/focus", iq_id="r1")
    assert [(s["to"], s["type"]) for s in out] == [(FOCUS, "get"), (ALICE, "result")]


def test_mediated_invitation_and_decline() -> None:
    h = room_with(("alice", ALICE))
    h.submit(ALICE, {"muc#roomconfig_roomsecret": "pw"})
    invitation = only(h.feed(
        f"<message from='{ALICE}' to='{ROOM}' id='inv'><x xmlns='{MUC_USER_NS}'>"
        "<invite to='dan@example.com'><reason>Join us</reason></invite></x></message>"))
    assert (invitation["from"], invitation["to"], invitation["id"]) == (
        ROOM, "dan@example.com", "inv")
    invite = child(user_x(invitation), MUC_USER_NS, "invite")
    assert invite["from"] == ALICE and not invite.hasAttribute("to")
    assert text(child(invite, MUC_USER_NS, "reason")) == "Join us"
    assert text(child(user_x(invitation), MUC_USER_NS, "password")) == "pw"
    decline = only(h.feed(
        f"<message from='{DAN}' to='{ROOM}'><x xmlns='{MUC_USER_NS}'>"
        "<decline to='alice@example.com'><reason>Busy</reason></decline></x></message>"))
    assert (decline["from"], decline["to"]) == (ROOM, ALICE)
    assert child(user_x(decline), MUC_USER_NS, "decline")["from"] == "dan@example.com"
    assert error_of(only(h.feed(
        f"<message from='{BOB}' to='{ROOM}'><x xmlns='{MUC_USER_NS}'>"
        "<invite to='dan@example.com'/></x></message>"))) == ("modify", "not-acceptable")


def test_invitation_to_members_only_room_makes_a_member() -> None:
    h = room_with(("alice", ALICE), defaults=RoomDefaults(members_only=True))
    h.feed(f"<message from='{ALICE}' to='{ROOM}'><x xmlns='{MUC_USER_NS}'>"
           "<invite to='dan@example.com'/></x></message>")
    assert h.muc.room("room").affiliations["dan@example.com"] == "member"
    assert codes(h.join("dan", DAN)[-2]) >= {"110"}
    assert error_of(only(h.feed(
        f"<message from='{DAN}' to='{ROOM}'><x xmlns='{MUC_USER_NS}'>"
        "<invite to='eve@example.com'/></x></message>"))) == ("auth", "forbidden")


def test_service_disco() -> None:
    h = room_with(("alice", ALICE))
    h.join("alice", ALICE, room="hidden")
    hidden = h.feed(f"<iq from='{ALICE}' to='hidden@{DOMAIN}' type='set' id='c'>"
                    f"<query xmlns='{MUC_OWNER_NS}'><x xmlns='{DATA_NS}' type='submit'>"
                    "<field var='muc#roomconfig_publicroom'><value>0</value></field></x>"
                    "</query></iq>")
    assert hidden[0]["type"] == "result"
    info = child(only(h.iq(BOB, "get", f"<query xmlns='{DISCO_INFO_NS}'/>", to=DOMAIN)),
                 DISCO_INFO_NS, "query")
    identity = child(info, DISCO_INFO_NS, "identity")
    assert (identity["category"], identity["type"]) == ("conference", "text")
    assert MUC_NS in {f["var"] for f in info.elements() if f.name == "feature"}
    items = child(only(h.iq(BOB, "get", f"<query xmlns='{DISCO_ITEMS_NS}'/>", to=DOMAIN)),
                  DISCO_ITEMS_NS, "query")
    assert [i["jid"] for i in items.elements()] == [ROOM]


def test_room_disco_info_and_items() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    h.submit(ALICE, {"muc#roomconfig_roomsecret": "pw"})
    reply = only(h.iq(CAROL, "get", f"<query xmlns='{DISCO_INFO_NS}'/>"))
    info = child(reply, DISCO_INFO_NS, "query")
    features = {f["var"] for f in info.elements() if f.name == "feature"}
    assert {MUC_NS, "muc_public", "muc_temporary", "muc_open", "muc_passwordprotected",
            "muc_nonanonymous", "muc_unmoderated"} <= features
    form = Form.fromElement(child(info, DATA_NS, "x"))
    assert form.form_type == "http://jabber.org/protocol/muc#roominfo"
    assert form.value("muc#roominfo_occupants") == "2"
    assert uuid.UUID(form.value("muc#roominfo_meetingId"))
    items = child(only(h.iq(ALICE, "get", f"<query xmlns='{DISCO_ITEMS_NS}'/>")),
                  DISCO_ITEMS_NS, "query")
    assert sorted(i["jid"] for i in items.elements()) == [f"{ROOM}/alice", f"{ROOM}/bob"]
    items = child(only(h.iq(BOB, "get", f"<query xmlns='{DISCO_ITEMS_NS}'/>")),
                  DISCO_ITEMS_NS, "query")
    assert list(items.elements()) == []
    missing = only(h.iq(BOB, "get", f"<query xmlns='{DISCO_INFO_NS}'/>", to=f"gone@{DOMAIN}"))
    assert error_of(missing) == ("cancel", "item-not-found")


def test_stanzas_to_the_service_itself() -> None:
    h = Harness()
    assert error_of(only(h.feed(f"<presence from='{ALICE}' to='{DOMAIN}'/>"))) == (
        "modify", "jid-malformed")
    assert error_of(only(h.feed(f"<message from='{ALICE}' to='{DOMAIN}'><body>x</body>"
                                "</message>"))) == ("cancel", "service-unavailable")
    assert error_of(only(h.iq(ALICE, "get", "<query xmlns='jabber:iq:version'/>", to=DOMAIN))
                    ) == ("cancel", "service-unavailable")
    assert error_of(only(h.iq(ALICE, "set", "<a xmlns='urn:x'/><b xmlns='urn:x'/>", to=DOMAIN))
                    ) == ("modify", "bad-request")
    assert only(h.iq(ALICE, "get", f"<ping xmlns='{PING_NS}'/>", to=DOMAIN))["type"] == "result"


def test_errors_and_results_are_never_answered() -> None:
    h = room_with(("alice", ALICE))
    for xml in (
        f"<iq from='{BOB}' to='{DOMAIN}' type='result' id='x'/>",
        f"<iq from='{BOB}' to='{ROOM}' type='error' id='x'><error type='cancel'/></iq>",
        f"<message from='{BOB}' to='{DOMAIN}' type='error'/>",
        f"<message from='{BOB}' to='{ROOM}' type='error'/>",
        f"<presence from='{BOB}' to='{ROOM}/bob' type='error'/>",
        f"<iq from='{BOB}' to='nowhere@{DOMAIN}/x' type='result' id='x'/>",
    ):
        assert h.feed(xml) == [], xml


def test_incoming_stanzas_are_not_modified() -> None:
    h = room_with(("alice", ALICE), ("bob", BOB))
    for xml in (
        f"<message from='{BOB}' to='{ROOM}' type='groupchat'><body>hi</body></message>",
        f"<message from='{BOB}' to='{ROOM}/alice' type='chat'><body>hi</body></message>",
        f"<iq from='{BOB}' to='{ROOM}/alice' type='get' id='z'><query xmlns='urn:x'/></iq>",
        f"<presence from='{BOB}' to='{ROOM}/bob'><status>away</status></presence>",
        f"<presence from='{CAROL}' to='{ROOM}/carol'><x xmlns='{MUC_NS}'/></presence>",
    ):
        stanza = parse(xml)
        before = stanza.toXml()
        h.muc.receive(stanza)
        assert stanza.toXml() == before


# -- persistence and scale ---------------------------------------------------------------


def test_persistent_room_survives_a_restart_through_the_store() -> None:
    store = MemoryRoomStore()
    h = room_with(("alice", ALICE), ("bob", BOB), store=store)
    h.submit(ALICE, {"muc#roomconfig_persistentroom": "1", "muc#roomconfig_roomname": "Kept"})
    h.admin(ALICE, "<item affiliation='member' jid='bob@example.com'/>")
    h.feed(f"<message from='{ALICE}' to='{ROOM}' type='groupchat'><subject>Topic</subject>"
           "</message>")
    meeting_id = h.muc.room("room").meeting_id
    for jid, nick in ((ALICE, "alice"), (BOB, "bob")):
        h.feed(f"<presence from='{jid}' to='{ROOM}/{nick}' type='unavailable'/>")
    assert "room" in h.muc.rooms()         # persistent rooms outlive their occupants

    again = Harness(store=store)
    room = again.muc.room("room")
    assert room is not None and room.config.name == "Kept" and room.config.persistent
    assert room.affiliations == {"alice@example.com": "owner", "bob@example.com": "member"}
    assert room.subject == "Topic" and room.meeting_id == meeting_id
    joined = again.join("bob", BOB)
    assert "201" not in codes(joined[-2]) and item(joined[-2])["affiliation"] == "member"
    assert text(child(joined[-1], "jabber:client", "subject")) == "Topic"

    again.iq(ALICE, "set", f"<query xmlns='{MUC_OWNER_NS}'><destroy/></query>")
    assert store.load_rooms(DOMAIN) == {}


def test_persistent_defaults_save_on_creation_and_bad_store_entries_are_skipped() -> None:
    store = MemoryRoomStore()
    room_with(("alice", ALICE), store=store, defaults=RoomDefaults(persistent=True))
    assert set(store.load_rooms(DOMAIN)) == {"room"}
    store.save_room(DOMAIN, "bad room", {"config": {}})
    store.save_room(DOMAIN, "odd", {"config": {"history_size": "many"}, "affiliations": 7})
    again = Harness(store=store)
    assert set(again.muc.rooms()) == {"room", "odd"}
    assert again.muc.room("odd").config.history_size == 20


def test_twenty_occupant_room_broadcast_counts() -> None:
    people = [(f"user{n}", f"user{n}@example.com/r") for n in range(20)]
    h = room_with(*people)
    out = h.say(people[3][1], "hello all")
    assert len(out) == 20
    assert {s["to"] for s in out} == {jid for _, jid in people}
    assert {s["from"] for s in out} == {f"{ROOM}/user3"}
    out = h.feed(f"<presence from='{people[5][1]}' to='{ROOM}/user5'><show>away</show>"
                 "</presence>")
    assert len(out) == 20 and sum("110" in codes(s) for s in out) == 1
    joined = h.join("late", "late@example.com/r")
    assert len(joined) == 20 + 20 + 1 + 1 + 1   # roster, broadcast, self, history, subject


# -- robustness --------------------------------------------------------------------------

NAMESPACES = [None, "jabber:client", MUC_NS, MUC_USER_NS, MUC_ADMIN_NS, MUC_OWNER_NS, DATA_NS,
              DISCO_INFO_NS, DISCO_ITEMS_NS, PING_NS, DELAY_NS, STANZAS_NS, "urn:example"]
NAMES = ["x", "item", "query", "body", "subject", "thread", "history", "password", "invite",
         "decline", "reason", "destroy", "field", "value", "option", "error", "ping", "status",
         "actor", "jingle", "message", "presence", "iq"]
ADDRESSES = [ALICE, BOB, CAROL, FOCUS, DOMAIN, ROOM, f"{ROOM}/alice", f"{ROOM}/bob",
             f"{ROOM}/new", f"other@{DOMAIN}/x", f"{ROOM}/", "a b@c", "@" + DOMAIN,
             "bob@example.com", ""]
VALUES = st.sampled_from(
    ["get", "set", "result", "error", "unavailable", "groupchat", "chat", "normal", "headline",
     "submit", "form", "cancel", "result", "owner", "admin", "member", "outcast", "none",
     "moderator", "participant", "visitor", "boolean", "text-single", "list-single",
     "muc#roomconfig_roomsecret", "muc#roomconfig_whois", "muc#roomconfig_passwordprotectedroom",
     "muc#roomconfig_maxusers", "muc#roomconfig_persistentroom", "0", "1", "-1", "q1", "j1",
     "alice", "bob"] + ADDRESSES) | st.text(
    st.characters(blacklist_categories=("Cs", "Cc")), max_size=8)
ATTRS = st.dictionaries(
    st.sampled_from(["type", "id", "nick", "role", "affiliation", "jid", "var", "to", "from",
                     "maxstanzas", "maxchars", "seconds", "since", "node", "code"]),
    VALUES, max_size=4)


def build(spec: Any, parent_uri: str) -> Element:
    """An element from a generated spec; a None namespace inherits the parent's."""
    name, uri, attrs, content = spec
    uri = parent_uri if uri is None else uri
    element = Element((uri, name), defaultUri=uri)
    for key, value in attrs.items():
        element[key] = value
    for part in content:
        element.addChild(build(part, uri) if isinstance(part, tuple) else part)
    return element


# Mostly inherit the namespace, as real payloads do, so deep handlers get reached.
CHILD_NS = st.one_of(st.none(), st.none(), st.none(), st.sampled_from(NAMESPACES))
CHILDREN = st.recursive(
    st.tuples(st.sampled_from(NAMES), CHILD_NS, ATTRS, st.just(())),
    lambda inner: st.tuples(st.sampled_from(NAMES), CHILD_NS, ATTRS,
                            st.lists(inner | VALUES, max_size=4)),
    max_leaves=12)
STANZAS = st.tuples(
    st.sampled_from(["message", "presence", "iq", "junk"]),
    st.sampled_from(ADDRESSES), st.sampled_from(ADDRESSES),
    st.one_of(st.none(), VALUES), st.one_of(st.none(), st.sampled_from(["q1", "j1", "m"])),
    st.lists(CHILDREN, max_size=3))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STANZAS, min_size=1, max_size=6))
def test_random_stanzas_never_escape_receive(stanzas: list[Any]) -> None:
    sent: list[Element] = []
    muc = MUCService(DOMAIN, lambda e: sent.append(e.toXml()), clock=lambda: 1000.0,
                     admins=["focus@auth.example.com"])
    for jid, nick in ((ALICE, "alice"), (BOB, "bob"), (FOCUS, "focus")):
        muc.receive(parse(f"<presence from='{jid}' to='{ROOM}/{nick}'><x xmlns='{MUC_NS}'/>"
                          "</presence>"))
    for name, sender, target, stanza_type, stanza_id, children in stanzas:
        stanza = Element(("jabber:client", name), defaultUri="jabber:client")
        if sender:
            stanza["from"] = sender
        if target:
            stanza["to"] = target
        if stanza_type is not None:
            stanza["type"] = stanza_type
        if stanza_id is not None:
            stanza["id"] = stanza_id
        for spec in children:
            stanza.addChild(build(spec, "jabber:client"))
        before = stanza.toXml()
        muc.receive(stanza)
        assert stanza.toXml() == before
    assert muc.internal_errors == 0
    assert muc.occupant_count() == sum(len(r.by_jid) for r in muc.rooms().values())


TEMPLATES = [
    f"<presence from='{CAROL}' to='{ROOM}/carol'><x xmlns='{MUC_NS}'><password>p</password>"
    "<history maxstanzas='2' maxchars='900' seconds='60' since='2020-01-01T00:00:00Z'/>"
    "</x>"
    "<nick xmlns='http://jabber.org/protocol/nick'>C</nick></presence>",
    f"<presence from='{BOB}' to='{ROOM}/bob' type='unavailable'><status>bye</status></presence>",
    f"<presence from='{BOB}' to='{ROOM}/robert'><show>away</show></presence>",
    f"<message from='{BOB}' to='{ROOM}' type='groupchat' id='m'><body>hi</body></message>",
    f"<message from='{ALICE}' to='{ROOM}' type='groupchat'><subject>s</subject></message>",
    f"<message from='{BOB}' to='{ROOM}/alice' type='chat'><body>p</body></message>",
    f"<message from='{ALICE}' to='{ROOM}'><x xmlns='{MUC_USER_NS}'><invite to='dan@example.com'>"
    "<reason>r</reason></invite><decline to='bob@example.com'/></x></message>",
    f"<iq from='{ALICE}' to='{ROOM}' type='set' id='q'><query xmlns='{MUC_ADMIN_NS}'>"
    "<item nick='bob' role='none'><reason>r</reason></item></query></iq>",
    f"<iq from='{ALICE}' to='{ROOM}' type='set' id='q'><query xmlns='{MUC_ADMIN_NS}'>"
    "<item affiliation='member' jid='bob@example.com'/>"
    "<item affiliation='outcast' jid='carol@example.com'/></query></iq>",
    f"<iq from='{ALICE}' to='{ROOM}' type='get' id='q'><query xmlns='{MUC_ADMIN_NS}'>"
    "<item affiliation='owner'/></query></iq>",
    f"<iq from='{ALICE}' to='{ROOM}' type='get' id='q'><query xmlns='{MUC_OWNER_NS}'/></iq>",
    f"<iq from='{ALICE}' to='{ROOM}' type='set' id='q'><query xmlns='{MUC_OWNER_NS}'>"
    f"<x xmlns='{DATA_NS}' type='submit'><field var='muc#roomconfig_roomsecret'><value>pw</value>"
    "</field><field var='muc#roomconfig_membersonly'><value>1</value></field>"
    "<field var='muc#roomconfig_persistentroom'><value>1</value></field></x></query></iq>",
    f"<iq from='{ALICE}' to='{ROOM}' type='set' id='q'><query xmlns='{MUC_OWNER_NS}'>"
    f"<destroy jid='x@{DOMAIN}'><reason>r</reason></destroy></query></iq>",
    f"<iq from='{BOB}' to='{ROOM}' type='get' id='q'><query xmlns='{DISCO_INFO_NS}'/></iq>",
    f"<iq from='{BOB}' to='{DOMAIN}' type='get' id='q'><query xmlns='{DISCO_ITEMS_NS}'/></iq>",
    f"<iq from='{FOCUS}' to='{ROOM}/alice' type='set' id='j1'><jingle xmlns='{JINGLE_NS}'/></iq>",
    f"<iq from='{ALICE}' to='{ROOM}/focus' type='result' id='j1'/>",
]
ATTR_NAMES = ["type", "id", "nick", "role", "affiliation", "jid", "var", "to", "from",
              "maxstanzas", "maxchars", "seconds", "since", "node", "code"]
MUTATIONS = st.lists(st.tuples(
    st.integers(0, 60), st.sampled_from(["set", "del", "add", "drop", "text"]),
    st.sampled_from(ATTR_NAMES), VALUES, CHILDREN), max_size=4)


def mutate(root: Element, mutations: list[Any]) -> None:
    """Change attributes and children of elements anywhere in ``root``'s tree."""
    for index, operation, key, value, spec in mutations:
        nodes = [root]
        for node in nodes:
            nodes.extend(node.elements())
        node = nodes[index % len(nodes)]
        elements = [c for c in node.children if isinstance(c, Element)]
        if operation == "set":
            node[key] = value
        elif operation == "del":
            node.attributes.pop(key, None)
        elif operation == "add":
            node.addChild(build(spec, node.uri))
        elif operation == "drop" and elements:
            node.children.remove(elements[index % len(elements)])
        elif operation == "text":
            node.children = [value]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(TEMPLATES) - 1), MUTATIONS), min_size=1,
                max_size=8))
def test_mutated_real_stanzas_never_escape_receive(steps: list[Any]) -> None:
    sent: list[Element] = []
    muc = MUCService(DOMAIN, lambda e: sent.append(e.toXml()), clock=lambda: 1000.0,
                     admins=["focus@auth.example.com"])
    for jid, nick in ((ALICE, "alice"), (BOB, "bob"), (FOCUS, "focus")):
        muc.receive(parse(f"<presence from='{jid}' to='{ROOM}/{nick}'><x xmlns='{MUC_NS}'/>"
                          "</presence>"))
    for template, mutations in steps:
        stanza = parse(TEMPLATES[template])
        mutate(stanza, mutations)
        before = stanza.toXml()
        muc.receive(stanza)
        assert stanza.toXml() == before
        assert muc.internal_errors == 0
    for room in muc.rooms().values():
        assert set(room.by_jid.values()) == set(room.occupants.values())
        assert all(room.occupants[o.nick] is o for o in room.by_jid.values())
