"""Jitsi's lobby, on the two MUC services in memory: knock, admit, deny, turn off, close."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from tests.xmpp.test_muc import (
    DATA_NS,
    DISCO_INFO_NS,
    MUC_ADMIN_NS,
    MUC_NS,
    MUC_OWNER_NS,
    MUC_USER_NS,
    child,
    codes,
    error_of,
    item,
    parse,
    text,
    to,
)
from vw.xmpp.lobby import LOBBY_FIELD, Lobbies, visible
from vw.xmpp.muc import MUCService, RoomHint

DOMAIN = "conference.example.com"
LOBBY = "lobby.example.com"
ROOM = f"room@{DOMAIN}"
LOBBY_ROOM = f"room@{LOBBY}"
FOCUS = "focus@auth.example.com/f"
HOST = "host@example.com/h"
GUEST = "guest@example.com/g"
OTHER = "other@example.com/o"
JITMEET_NS = "http://jitsi.org/jitmeet"


class Services:
    """The conference MUC and its lobby MUC, their stanzas recorded in one list."""

    def __init__(self, hints: dict[str, RoomHint] | None = None) -> None:
        self.sent: list[Element] = []
        lobbies = Lobbies()
        hints = hints or {}
        self.rooms = MUCService(DOMAIN, self._send, clock=lambda: 1000.0, lobby=lobbies,
                                admins=["focus@auth.example.com"],
                                room_hint=lambda jid, node: hints.get(jid.full(), RoomHint()))
        self.lobbies = MUCService(LOBBY, self._send, clock=lambda: 1000.0,
                                  affiliation_hint=lobbies.affiliation, visibility=visible,
                                  creates_rooms=False, info_nodes=["lobbyrooms"],
                                  admins=["focus@auth.example.com"])
        lobbies.rooms, lobbies.lobbies = self.rooms, self.lobbies

    def _send(self, element: Element) -> None:
        self.sent.append(parse(element.toXml()))

    def feed(self, xml: str) -> list[Element]:
        stanza = parse(xml)
        start = len(self.sent)
        service = self.lobbies if JID(stanza["to"]).host == LOBBY else self.rooms
        service.receive(stanza)
        assert service.internal_errors == 0
        return self.sent[start:]

    def join(self, jid: str, nick: str, room: str = ROOM) -> list[Element]:
        return self.feed(f"<presence from='{jid}' to='{room}/{nick}'><x xmlns='{MUC_NS}'/>"
                         f"<nick xmlns='http://jabber.org/protocol/nick'>{nick}</nick>"
                         "</presence>")

    def members_only(self, jid: str, on: bool) -> list[Element]:
        value = "true" if on else "false"
        return self.feed(
            f"<iq from='{jid}' to='{ROOM}' type='set' id='c1'><query xmlns='{MUC_OWNER_NS}'>"
            f"<x xmlns='{DATA_NS}' type='submit'><field var='FORM_TYPE'><value>"
            "http://jabber.org/protocol/muc#roomconfig</value></field>"
            f"<field var='muc#roomconfig_membersonly'><value>{value}</value></field>"
            "</x></query></iq>")

    def kick(self, moderator: str, nick: str, reason: str = "") -> list[Element]:
        """A muc#admin kick (role none) of ``nick`` from the lobby room."""
        return self.feed(f"<iq from='{moderator}' to='{LOBBY_ROOM}' type='set' id='k1'>"
                         f"<query xmlns='{MUC_ADMIN_NS}'><item nick='{nick}' role='none'>"
                         f"<reason>{reason}</reason></item></query></iq>")

    def invite(self, moderator: str, guest: str) -> list[Element]:
        return self.feed(f"<message from='{moderator}' to='{ROOM}' id='i1'>"
                         f"<x xmlns='{MUC_USER_NS}'><invite to='{guest}'/></x></message>")

    def room_info(self, jid: str) -> Element:
        (result,) = self.feed(f"<iq from='{jid}' to='{ROOM}' type='get' id='d1'>"
                              f"<query xmlns='{DISCO_INFO_NS}'/></iq>")
        return result


def lobby_of(refusal: Element) -> tuple[str, str]:
    """The lobby JID inside the error, and beside it."""
    error = child(refusal, "jabber:client", "error")
    assert error is not None
    inside = child(error, JITMEET_NS, "lobbyroom")
    beside = child(refusal, JITMEET_NS, "lobbyroom")
    return text(inside), text(beside)


def room_with_lobby() -> Services:
    """The focus and a host in a room whose host turned the lobby on."""
    services = Services()
    services.join(FOCUS, "focus")
    services.feed(f"<iq from='{FOCUS}' to='{ROOM}' type='set' id='a1'>"
                  f"<query xmlns='{MUC_ADMIN_NS}'><item affiliation='owner' jid='{HOST}'/>"
                  "</query></iq>")
    services.join(HOST, "host")
    out = services.members_only(HOST, True)
    assert any("104" in codes(s) for s in to(out, HOST))
    return services


def test_turning_members_only_on_opens_a_lobby_named_in_disco() -> None:
    services = room_with_lobby()
    info = services.room_info(HOST)
    query = child(info, DISCO_INFO_NS, "query")
    assert query is not None
    features = {f["var"] for f in query.elements() if f.name == "feature"}
    assert "muc_membersonly" in features
    fields = {f["var"]: text(child(f, DATA_NS, "value")) for f in
              child(query, DATA_NS, "x").elements() if f.name == "field"}
    assert fields[LOBBY_FIELD] == LOBBY_ROOM
    assert services.lobbies.room("room") is not None


def test_a_guest_knocks_the_moderator_sees_it_and_admits_it() -> None:
    services = room_with_lobby()
    (refusal,) = services.join(GUEST, "guest")
    assert error_of(refusal) == ("auth", "registration-required")
    assert lobby_of(refusal) == (LOBBY_ROOM, LOBBY_ROOM)

    moderator_in_lobby = services.join(HOST, "m0d", LOBBY_ROOM)
    own = to(moderator_in_lobby, HOST)[0]
    assert (item(own)["affiliation"], item(own)["role"]) == ("owner", "moderator")
    knock = services.join(GUEST, "a1b2c3d4", LOBBY_ROOM)
    seen = [s for s in to(knock, HOST) if s.name == "presence"]
    assert [(s["from"], item(s)["jid"]) for s in seen] == [(f"{LOBBY_ROOM}/a1b2c3d4", GUEST)]
    assert [s["from"] for s in to(knock, GUEST) if s.name == "presence"] == [
        f"{LOBBY_ROOM}/a1b2c3d4"]  # only itself: not the moderator

    (invite,) = services.invite(HOST, GUEST)
    assert (invite["to"], invite["from"]) == (GUEST, ROOM)
    invited = child(child(invite, MUC_USER_NS, "x"), MUC_USER_NS, "invite")
    assert invited is not None and invited["from"] == HOST
    assert services.rooms.affiliation("room", "guest@example.com") == "member"
    entered = services.join(GUEST, "guest")
    assert "110" in codes(to(entered, GUEST)[-2])


def test_those_waiting_do_not_see_each_other() -> None:
    services = room_with_lobby()
    services.join(HOST, "m0d", LOBBY_ROOM)
    services.join(GUEST, "g1", LOBBY_ROOM)
    second = services.join(OTHER, "o1", LOBBY_ROOM)
    assert [s["from"] for s in to(second, OTHER) if s.name == "presence"] == [
        f"{LOBBY_ROOM}/o1"]
    assert to(second, GUEST) == []
    assert [s["from"] for s in to(second, HOST)] == [f"{LOBBY_ROOM}/o1"]


def test_those_waiting_reach_only_the_moderators() -> None:
    services = room_with_lobby()
    services.join(HOST, "m0d", LOBBY_ROOM)
    services.join(GUEST, "g1", LOBBY_ROOM)
    services.join(OTHER, "o1", LOBBY_ROOM)
    (refused,) = services.feed(f"<message from='{GUEST}' to='{LOBBY_ROOM}/o1' type='chat'>"
                               "<body>hi</body></message>")
    assert error_of(refused) == ("cancel", "item-not-found")
    (relayed,) = services.feed(f"<message from='{GUEST}' to='{LOBBY_ROOM}/m0d' type='chat'>"
                               "<body>let me in</body></message>")
    assert (relayed["to"], relayed["from"]) == (HOST, f"{LOBBY_ROOM}/g1")
    said = services.feed(f"<message from='{GUEST}' to='{LOBBY_ROOM}' type='groupchat'>"
                         "<body>anyone?</body></message>")
    assert {s["to"] for s in said} == {HOST, GUEST}


def test_a_moderator_denies_by_kicking_from_the_lobby() -> None:
    services = room_with_lobby()
    services.join(HOST, "m0d", LOBBY_ROOM)
    services.join(GUEST, "g1", LOBBY_ROOM)
    out = services.kick(HOST, "g1", "You have been kicked.")
    (told,) = [s for s in to(out, GUEST) if s.name == "presence"]
    assert told["type"] == "unavailable" and codes(told) >= {"110", "307"}
    left = [s for s in to(out, HOST) if s.name == "presence"]
    assert left and left[0]["type"] == "unavailable" and "110" not in codes(left[0])
    assert services.rooms.affiliation("room", "guest@example.com") == "none"


def test_only_moderators_moderate_the_lobby() -> None:
    services = room_with_lobby()
    services.join(GUEST, "g1", LOBBY_ROOM)
    services.join(OTHER, "o1", LOBBY_ROOM)
    out = services.kick(GUEST, "o1")
    assert error_of(out[0])[1] in ("forbidden", "not-allowed")
    (refused,) = services.invite(GUEST, OTHER)
    assert refused["type"] == "error"


def test_the_lobby_service_answers_disco_about_its_node() -> None:
    services = Services()
    (info,) = services.feed(f"<iq from='{GUEST}' to='{LOBBY}' type='get' id='d1'>"
                            f"<query xmlns='{DISCO_INFO_NS}' node='lobbyrooms'/></iq>")
    assert info["type"] == "result"
    assert child(info, DISCO_INFO_NS, "query")["node"] == "lobbyrooms"
    (other,) = services.feed(f"<iq from='{GUEST}' to='{LOBBY}' type='get' id='d2'>"
                             f"<query xmlns='{DISCO_INFO_NS}' node='other'/></iq>")
    assert error_of(other) == ("cancel", "item-not-found")


def test_no_lobby_room_without_a_members_only_room() -> None:
    services = Services()
    services.join(FOCUS, "focus")
    (refusal,) = services.join(GUEST, "g1", LOBBY_ROOM)
    assert error_of(refusal) == ("cancel", "item-not-found")


def test_turning_the_lobby_off_sends_those_waiting_to_the_room() -> None:
    services = room_with_lobby()
    services.join(GUEST, "g1", LOBBY_ROOM)
    out = services.members_only(HOST, False)
    (destroyed,) = [s for s in to(out, GUEST) if s.name == "presence"]
    destroy = child(child(destroyed, MUC_USER_NS, "x"), MUC_USER_NS, "destroy")
    assert destroy is not None and destroy["jid"] == ROOM
    assert services.lobbies.room("room") is None
    assert LOBBY_FIELD not in services.rooms.room("room").extra_info
    assert "110" in codes(to(services.join(GUEST, "guest"), GUEST)[-2])


def test_the_lobby_closes_with_its_room() -> None:
    services = room_with_lobby()
    services.join(GUEST, "g1", LOBBY_ROOM)
    for jid, nick in ((HOST, "host"), (FOCUS, "focus")):
        services.feed(f"<presence from='{jid}' to='{ROOM}/{nick}' type='unavailable'/>")
    assert services.rooms.room("room") is None and services.lobbies.room("room") is None
    destroyed = [s for s in services.sent if s.getAttribute("to") == GUEST
                 and s.getAttribute("type") == "unavailable"]
    destroy = child(child(destroyed[-1], MUC_USER_NS, "x"), MUC_USER_NS, "destroy")
    assert destroy is not None and not destroy.getAttribute("jid")


def test_a_token_asking_for_a_lobby_turns_it_on_once() -> None:
    services = Services({GUEST: RoomHint(lobby=True), OTHER: RoomHint(lobby=True)})
    services.join(FOCUS, "focus")
    (refusal,) = services.join(GUEST, "guest")
    assert lobby_of(refusal) == (LOBBY_ROOM, LOBBY_ROOM)
    services.feed(f"<iq from='{FOCUS}' to='{ROOM}' type='set' id='c1'>"
                  f"<query xmlns='{MUC_OWNER_NS}'><x xmlns='{DATA_NS}' type='submit'>"
                  "<field var='muc#roomconfig_membersonly'><value>false</value></field>"
                  "</x></query></iq>")
    assert "110" in codes(to(services.join(OTHER, "other"), OTHER)[-2])  # stays off
