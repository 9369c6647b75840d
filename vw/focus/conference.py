"""One conference as the focus runs it: the room, its participants, their bridge and Jingle.

The focus joins ``ROOM@conference.DOMAIN`` as ``focus`` (an owner, as every room's admin).
Each participant that joins gets an endpoint on a bridge (Colibri2) and a Jingle
``session-initiate`` carrying the bridge's transport and everyone else's sources; its
``session-accept``, ``transport-info``, ``source-add`` and ``source-remove`` go on to the
bridge and, for sources, to the other participants. A participant that leaves is expired on
the bridge and its sources removed from the others; the last one out ends the conference.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger
from twisted.words.xish.domish import Element

from vw.bridge import colibri2
from vw.focus.bridges import BridgeRegistry
from vw.focus.jingle import FOCUS_NS, Jingle, JingleError, Reason
from vw.focus.link import IQFailed, XMPPLink
from vw.focus.offer import (
    ConferenceSources,
    MediaSources,
    OfferConfig,
    SourceMap,
    client_transport,
    session_initiate,
    source_add,
    source_remove,
)

log = Logger()

MUC_NS = "http://jabber.org/protocol/muc"
MUC_USER_NS = "http://jabber.org/protocol/muc#user"
MUC_ADMIN_NS = "http://jabber.org/protocol/muc#admin"
#: The focus's nick in every room.
FOCUS_NICK = "focus"
#: Participants whose occupants are services, not people (never invited).
SERVICE_NICKS = frozenset({FOCUS_NICK})
#: Rooms of this many participants get their source updates batched, every BATCH_DELAY seconds.
BATCH_FROM = 20
BATCH_DELAY = 0.5
#: How each source update is written.
SOURCE_UPDATES: dict[str, Callable[[str, SourceMap], Jingle]] = {
    "source-add": source_add, "source-remove": source_remove}


@dataclass
class Participant:
    """One occupant of the room the focus invites to the conference."""

    nick: str
    occupant: str
    real_jid: str
    joined: float
    region: str | None = None
    stats_id: str | None = None
    moderator: bool = False
    #: "new" (no session yet), "initiating" (session-initiate sent), "active" (acknowledged)
    state: str = "new"
    sid: str | None = None
    bridge: str | None = None
    #: Jingle for this participant held back until its session-initiate is acknowledged.
    queued: list[Jingle] = field(default_factory=list)
    #: Source updates waiting for the next batch: (action, sources), in order.
    batched: list[tuple[str, SourceMap]] = field(default_factory=list)


def merge_sources(into: SourceMap, more: SourceMap) -> None:
    """Add ``more`` to ``into``, owner by owner and media by media."""
    for owner, by_media in more.items():
        mine = into.setdefault(owner, {})
        for media, kept in by_media.items():
            have = mine.setdefault(media, MediaSources())
            have.sources += kept.sources
            have.groups += kept.groups


def iq_stanza(to: str, kind: str, payload: Element) -> Element:
    """An IQ of type ``kind`` to ``to`` carrying ``payload``."""
    iq = Element((None, "iq"))
    iq["to"] = to
    iq["type"] = kind
    iq.addChild(payload)
    return iq


def occupant_info(presence: Element) -> tuple[str | None, str | None, bool]:
    """(real JID, affiliation, own presence) from a MUC presence's muc#user element."""
    x = next((c for c in presence.elements() if (c.uri, c.name) == (MUC_USER_NS, "x")), None)
    if x is None:
        return None, None, False
    item = next((c for c in x.elements() if c.name == "item"), None)
    own = any(c.name == "status" and c.getAttribute("code") == "110" for c in x.elements())
    if item is None:
        return None, None, own
    return item.getAttribute("jid"), item.getAttribute("affiliation"), own


def _child_text(presence: Element, name: str) -> str | None:
    child = next((c for c in presence.elements() if c.name == name), None)
    return str(child).strip() or None if child is not None else None


class FocusConference:
    """The focus's side of one room."""

    def __init__(self, room: str, link: XMPPLink, registry: BridgeRegistry, offer: OfferConfig,
                 now: Callable[[], float], moderators: str = "all",
                 ended: Callable[[FocusConference], None] = lambda conference: None,
                 schedule: Callable[[float, Callable[[], None]], object] | None = None
                 ) -> None:
        self.room = room
        self.link = link
        self.registry = registry
        self.offer = offer
        self.now = now
        self.moderators = moderators
        self.ended = ended
        #: Runs a call later; without it, source updates are never batched.
        self.schedule = schedule
        self.meeting_id = str(uuid.uuid4())
        self.participants: dict[str, Participant] = {}
        self.sources = ConferenceSources()
        #: Bridge JID -> its feedback sources, once the conference exists there.
        self.bridges: dict[str, list[colibri2.MediaSource]] = {}
        self._creating: dict[str, list[Deferred[None]]] = {}
        self.joined = False
        self._join_waiters: list[Deferred[None]] = []
        #: While joining again after a lost connection: the occupants the room reports.
        self._present: set[str] | None = None
        self.finished = False

    # -- the room ----------------------------------------------------------------------

    def join(self) -> Deferred[None]:
        """Fires once the focus is in the room as its owner."""
        waiter: Deferred[None] = Deferred()
        if self.joined:
            waiter.callback(None)
            return waiter
        if not self._join_waiters:
            presence = Element((None, "presence"))
            presence["to"] = f"{self.room}/{FOCUS_NICK}"
            presence.addElement((MUC_NS, "x"))
            # lib-jitsi-meet learns here that it may ask for a new session on ICE failure.
            properties = presence.addElement((FOCUS_NS, "conference-properties"))
            restart = properties.addElement("property")
            restart["key"] = "support-terminate-restart"
            restart["value"] = "true"
            self.link.send(presence)
        self._join_waiters.append(waiter)
        return waiter

    def rejoin(self) -> Deferred[None]:
        """Join again after the focus's connection came back; participants that left in the
        meantime are let go once the room has listed who is still there."""
        self.joined = False
        self._present = set()
        return self.join()

    def presence_received(self, presence: Element) -> None:
        nick = presence.getAttribute("from", "").partition("/")[2]
        real_jid, affiliation, own = occupant_info(presence)
        if presence.getAttribute("type") == "error":
            if nick == FOCUS_NICK or own:
                self._join_failed(presence)
            return
        if own or nick == FOCUS_NICK:
            if presence.getAttribute("type") == "unavailable":
                self.joined = False
            elif affiliation == "owner":
                self._joined()
            return
        if presence.getAttribute("type") == "unavailable":
            self._left(nick)
            return
        if self._present is not None:
            self._present.add(nick)
        if nick and nick not in self.participants and nick not in SERVICE_NICKS:
            self._arrived(nick, presence, real_jid, affiliation)

    def _joined(self) -> None:
        self.joined = True
        present, self._present = self._present, None
        if present is not None:  # the room lists its occupants before our own presence
            for nick in [n for n in self.participants if n not in present]:
                self._left(nick)
        waiters, self._join_waiters = self._join_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _join_failed(self, presence: Element) -> None:
        waiters, self._join_waiters = self._join_waiters, []
        for waiter in waiters:
            waiter.errback(IQFailed("recipient-unavailable", f"could not join {self.room}"))

    def _arrived(self, nick: str, presence: Element, real_jid: str | None,
                 affiliation: str | None) -> None:
        participant = Participant(
            nick=nick, occupant=f"{self.room}/{nick}", real_jid=real_jid or "",
            joined=self.now(), region=_child_text(presence, "jitsi_participant_region"),
            stats_id=_child_text(presence, "stats-id"),
            moderator=affiliation in ("owner", "admin"))
        self.participants[nick] = participant
        log.info("{room}: {nick} joined", room=self.room, nick=nick)
        self._grant_moderator()
        self.invite(participant)

    def _grant_moderator(self) -> None:
        """Make participants moderators (owners) as configured."""
        if self.moderators == "all":
            chosen = [p for p in self.participants.values() if not p.moderator]
        elif self.moderators == "first" and not any(
                p.moderator for p in self.participants.values()):
            oldest = min(self.participants.values(), key=lambda p: p.joined, default=None)
            chosen = [oldest] if oldest is not None else []
        else:
            chosen = []
        for participant in chosen:
            if not participant.real_jid:
                continue
            participant.moderator = True
            query = Element((MUC_ADMIN_NS, "query"))
            item = query.addElement("item")
            item["affiliation"] = "owner"
            item["jid"] = participant.real_jid.partition("/")[0]
            self.link.request(iq_stanza(self.room, "set", query)).addErrback(
                self._logged, f"making {participant.nick} a moderator")

    def _left(self, nick: str) -> None:
        participant = self.participants.pop(nick, None)
        if participant is None:
            return
        log.info("{room}: {nick} left", room=self.room, nick=nick)
        self._tell_others(participant, "source-remove",
                          self.sources.remove_owner(participant.occupant))
        self._expire_endpoint(participant)
        if not self.participants:
            self.end()
        elif participant.moderator:
            self._grant_moderator()

    def end(self) -> None:
        """Expire the conference on its bridges and leave the room."""
        if self.finished:
            return
        self.finished = True
        for bridge in list(self.bridges):
            request = colibri2.ConferenceModify(meeting_id=self.meeting_id, expire=True)
            self._colibri(bridge, request).addErrback(self._logged, "expiring the conference")
        self.bridges.clear()
        presence = Element((None, "presence"))
        presence["to"] = f"{self.room}/{FOCUS_NICK}"
        presence["type"] = "unavailable"
        self.link.send(presence)
        self.ended(self)

    # -- bridges -------------------------------------------------------------------------

    def _colibri(self, bridge: str, request: colibri2.ConferenceModify
                 ) -> Deferred[colibri2.ConferenceModified]:
        deferred = self.link.request(iq_stanza(bridge, "set", request.toElement()))
        deferred.addCallback(
            lambda reply: colibri2.ConferenceModified.fromElement(reply.firstChildElement()))
        return deferred

    @inlineCallbacks
    def _ensure_on_bridge(self, bridge: str):  # type: ignore[no-untyped-def]
        """Create the conference on ``bridge`` once, however many invitations wait for it."""
        if bridge in self.bridges:
            return
        if bridge in self._creating:
            waiter: Deferred[None] = Deferred()
            self._creating[bridge].append(waiter)
            yield waiter
            return
        self._creating[bridge] = []
        try:
            modified = yield self._colibri(bridge, colibri2.ConferenceModify(
                meeting_id=self.meeting_id, name=self.room, create=True))
        except Exception as failure:
            for waiter in self._creating.pop(bridge):
                waiter.errback(failure)
            raise
        self.bridges[bridge] = modified.sources or []
        for waiter in self._creating.pop(bridge):
            waiter.callback(None)

    @inlineCallbacks
    def invite(self, participant: Participant):  # type: ignore[no-untyped-def]
        """Allocate ``participant`` on a bridge and send it the offer."""
        bridge = self.registry.select(self.meeting_id, participant.region, self.now())
        if bridge is None:
            log.warn("{room}: no bridge for {nick}; waiting for one", room=self.room,
                     nick=participant.nick)
            return
        participant.bridge = bridge.jid
        self.registry.place(self.meeting_id, participant.nick, bridge.jid)
        try:
            yield self._ensure_on_bridge(bridge.jid)
            modified = yield self._colibri(bridge.jid, colibri2.ConferenceModify(
                meeting_id=self.meeting_id, endpoints=[colibri2.Endpoint(
                    id=participant.nick, create=True, stats_id=participant.stats_id,
                    media=self.offer.media(),
                    transport=colibri2.Transport(ice_controlling=True))]))
        except Exception as failure:  # noqa: BLE001 - any failure: the bridge is unusable
            log.warn("{room}: allocating {nick} on {bridge} failed: {failure}",
                     room=self.room, nick=participant.nick, bridge=bridge.jid, failure=failure)
            self.registry.health_failed(bridge.jid, self.now())
            self.registry.remove(self.meeting_id, participant.nick)
            participant.bridge = None
            return
        if self.participants.get(participant.nick) is not participant:
            self._expire_endpoint(participant)  # left while we were allocating
            return
        endpoint = modified.endpoint(participant.nick)
        transport = endpoint.transport.ice_udp if endpoint and endpoint.transport else None
        if transport is None:
            log.warn("{room}: {bridge} gave no transport", room=self.room, bridge=bridge.jid)
            return
        participant.sid = secrets.token_hex(8)
        participant.state = "initiating"
        offer = session_initiate(self.offer, participant.sid, self.link.jid, transport,
                                 self.sources.others(participant.occupant),
                                 self.bridges.get(bridge.jid, []), participant.nick)
        try:
            yield self.link.request(iq_stanza(participant.occupant, "set", offer.toElement()))
        except IQFailed as failure:
            log.info("{room}: {nick} refused the offer: {failure}", room=self.room,
                     nick=participant.nick, failure=failure)
            return
        if participant.sid != offer.sid:
            return
        participant.state = "active"
        queued, participant.queued = participant.queued, []
        for jingle in queued:
            self._send_jingle(participant, jingle)

    def _expire_endpoint(self, participant: Participant) -> None:
        bridge = participant.bridge
        self.registry.remove(self.meeting_id, participant.nick)
        participant.bridge = None
        if bridge is None or bridge not in self.bridges:
            return
        request = colibri2.ConferenceModify(meeting_id=self.meeting_id, endpoints=[
            colibri2.Endpoint(id=participant.nick, expire=True)])
        self._colibri(bridge, request).addErrback(self._logged, "expiring an endpoint")

    def move(self, nicks: list[str]) -> None:
        """Their bridge is gone: end their sessions and invite them again elsewhere."""
        for nick in nicks:
            participant = self.participants.get(nick)
            if participant is None:
                continue
            if participant.sid is not None:
                terminate = Jingle("session-terminate", participant.sid,
                                   reason=Reason("success", "moving to another bridge"))
                self._send_jingle(participant, terminate)
            self._tell_others(participant, "source-remove",
                              self.sources.remove_owner(participant.occupant))
            if participant.bridge is not None:
                self.bridges.pop(participant.bridge, None)
            participant.bridge = participant.sid = None
            participant.state = "new"
            participant.queued, participant.batched = [], []
            self.invite(participant)

    def invite_waiting(self) -> None:
        """Invite participants still without a bridge (one may have appeared)."""
        for participant in list(self.participants.values()):
            if participant.bridge is None and participant.state == "new":
                self.invite(participant)

    # -- Jingle from participants ---------------------------------------------------------

    def jingle_received(self, nick: str, jingle: Jingle) -> None:
        """Act on a participant's Jingle; JingleError is answered by the caller."""
        participant = self.participants.get(nick)
        if participant is None:
            raise JingleError("not-acceptable", text="not a participant of this conference")
        if participant.sid is None or jingle.sid != participant.sid:
            raise JingleError("item-not-found", "unknown-session")
        action = jingle.action
        try:
            if action == "session-accept":
                self._accepted(participant, jingle)
            elif action == "transport-info":
                self._update_endpoint(participant, transport=client_transport(jingle))
            elif action == "source-add":
                self._tell_others(participant, "source-add",
                                  self.sources.add(participant.occupant, jingle.contents))
                self._update_endpoint(participant, sources=True)
            elif action == "source-remove":
                self._tell_others(participant, "source-remove",
                                  self.sources.remove(participant.occupant, jingle.contents))
                self._update_endpoint(participant, sources=True)
            elif action == "session-terminate":
                self._terminated(participant, jingle)
            elif action not in ("session-info", "transport-accept", "transport-reject"):
                raise JingleError("bad-request", text=f"unexpected {action}")
        except ValueError as error:
            raise JingleError("bad-request", text=str(error)[:200]) from None

    def _accepted(self, participant: Participant, jingle: Jingle) -> None:
        transport = client_transport(jingle)
        added = self.sources.add(participant.occupant, jingle.contents)
        self._update_endpoint(participant, transport=transport, sources=True)
        self._tell_others(participant, "source-add", added)

    def _terminated(self, participant: Participant, jingle: Jingle) -> None:
        """The client ended its session; with a restart request, it gets a new one."""
        self._tell_others(participant, "source-remove",
                          self.sources.remove_owner(participant.occupant))
        self._expire_endpoint(participant)
        participant.sid = None
        participant.state = "new"
        participant.queued, participant.batched = [], []
        if jingle.bridge_session is not None and jingle.bridge_session.restart:
            self.invite(participant)

    def _update_endpoint(self, participant: Participant,
                         transport: colibri2.IceUdpTransport | None = None,
                         sources: bool = False) -> None:
        if participant.bridge is None:
            return
        endpoint = colibri2.Endpoint(id=participant.nick)
        if transport is not None:
            endpoint.transport = colibri2.Transport(ice_udp=transport)
        if sources:
            endpoint.sources = self.sources.media_sources(participant.occupant, participant.nick)
        request = colibri2.ConferenceModify(meeting_id=self.meeting_id, endpoints=[endpoint])
        self._colibri(participant.bridge, request).addErrback(
            self._logged, f"updating {participant.nick}")

    def _tell_others(self, participant: Participant, action: str, changed: SourceMap) -> None:
        """Send source-add or source-remove about ``changed`` to everyone else in a session;
        in a large room, gathered into one update per participant every BATCH_DELAY."""
        if not changed:
            return
        batch = self.schedule is not None and len(self.participants) >= BATCH_FROM
        for other in self.participants.values():
            if other is participant or other.sid is None:
                continue
            if other.state != "active":
                other.queued.append(SOURCE_UPDATES[action](other.sid, changed))
            elif not batch:
                self._send_jingle(other, SOURCE_UPDATES[action](other.sid, changed))
            else:
                self._batch(other, action, changed)

    def _batch(self, participant: Participant, action: str, changed: SourceMap) -> None:
        if not participant.batched:
            self.schedule(BATCH_DELAY, lambda: self._flush(participant))
        if participant.batched and participant.batched[-1][0] == action:
            merge_sources(participant.batched[-1][1], changed)
        else:
            copy: SourceMap = {}
            merge_sources(copy, changed)
            participant.batched.append((action, copy))

    def _flush(self, participant: Participant) -> None:
        batched, participant.batched = participant.batched, []
        if participant.sid is None or self.participants.get(participant.nick) is not participant:
            return
        for action, changed in batched:
            self._send_jingle(participant, SOURCE_UPDATES[action](participant.sid, changed))

    def _send_jingle(self, participant: Participant, jingle: Jingle) -> None:
        self.link.request(iq_stanza(participant.occupant, "set", jingle.toElement())).addErrback(
            self._logged, f"{jingle.action} to {participant.nick}")

    def _logged(self, failure: object, what: str) -> None:
        log.warn("{room}: {what} failed: {failure}", room=self.room, what=what,
                 failure=getattr(failure, "value", failure))
