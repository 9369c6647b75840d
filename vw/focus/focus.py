"""The focus: Jicofo's job. Answers ``conference`` requests, runs one FocusConference per room,
reads the bridges from the brewery, pings them (health checks) and routes every stanza it gets
to the right place.

Every error reply to a client is decided in :meth:`Focus.stanza_received`: a
:class:`~vw.xmpp.errors.StanzaError` (JingleError included) raised while handling a request
becomes its IQ error.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from vw.config import Config
from vw.focus.bridges import BreweryPresence, BridgeRegistry, SelectionConfig
from vw.focus.conference import MUC_NS, FocusConference, iq_stanza
from vw.focus.jingle import JINGLE_NS, Jingle
from vw.focus.link import IQFailed, XMPPLink
from vw.focus.offer import OfferConfig
from vw.xmpp.errors import StanzaError, error_reply
from vw.xmpp.stanzas import parse_jid

log = Logger()

FOCUS_NS = "http://jitsi.org/protocol/focus"
PING_NS = "urn:xmpp:ping"
#: Most conferences one focus runs at once.
MAX_CONFERENCES = 10_000
#: Seconds a bridge has to answer its health-check ping.
HEALTH_TIMEOUT = 3.0


def conference_result(iq: Element, room: str, focus_jid: str) -> Element:
    """The answer lib-jitsi-meet waits for before joining: ``ready`` and the focus's JID."""
    reply = Element((None, "iq"))
    reply["type"] = "result"
    reply["to"] = iq["from"]
    reply["id"] = iq.getAttribute("id", "")
    conference = reply.addElement((FOCUS_NS, "conference"))
    conference["room"] = room
    conference["ready"] = "true"
    conference["focusjid"] = focus_jid
    for name, value in (("authentication", "false"), ("support-terminate-restart", "true")):
        prop = conference.addElement("property")
        prop["name"] = name
        prop["value"] = value
    return reply


class Focus:
    """Everything one focus process runs."""

    def __init__(self, config: Config, link: XMPPLink, now: Callable[[], float],
                 schedule: Callable[[float, Callable[[], None]], object] | None = None) -> None:
        self.config = config
        self.link = link
        self.now = now
        #: Runs a call later (the reactor's callLater): batches source updates in large rooms.
        self.schedule = schedule
        self.focus_jid = f"focus@{config.auth_domain}"
        self.brewery = config.brewery
        settings = config.focus
        self.registry = BridgeRegistry(SelectionConfig(
            strategy=settings.bridge_selection, presence_timeout=settings.bridge_timeout,
            max_participants_per_bridge=settings.max_participants_per_bridge,
            single_bridge=settings.single_bridge, local_region=settings.region))
        self.offer = OfferConfig()
        self.conferences: dict[str, FocusConference] = {}
        self.requests = 0
        #: Bridges whose health-check ping awaits its answer.
        self._checking: set[str] = set()
        link.received = self.stanza_received

    def connected(self) -> None:
        """Join the brewery to learn the bridges (again, after a reconnection)."""
        presence = Element((None, "presence"))
        presence["to"] = f"{self.brewery}/{self.link.jid.partition('/')[2] or 'focus'}"
        presence.addElement((MUC_NS, "x"))
        self.link.send(presence)
        for conference in list(self.conferences.values()):
            conference.rejoin().addErrback(lambda failure, room=conference.room: log.warn(
                "could not join {room} again: {failure}", room=room, failure=failure.value))

    # -- requests ------------------------------------------------------------------------

    def request_conference(self, room: str, requester: str | None) -> Deferred[None]:
        """Fires once the focus owns ``room`` and the requester may join; StanzaError if not."""
        jid = parse_jid(room)
        if jid.user is None or jid.resource or jid.host != self.config.conference_domain:
            raise StanzaError("bad-request", text=f"not a room of {self.config.conference_domain}")
        room = jid.userhost()
        conference = self.conferences.get(room)
        if conference is None:
            if (self.config.focus.require_authenticated_host and requester is not None
                    and parse_jid(requester).host in self.config.xmpp.anonymous_domains):
                raise StanzaError("not-authorized", text="waiting for the host")
            if len(self.conferences) >= MAX_CONFERENCES:
                raise StanzaError("resource-constraint", text="too many conferences")
            conference = self.conferences[room] = FocusConference(
                room, self.link, self.registry, self.offer, self.now,
                self.config.focus.moderators, ended=self._ended, schedule=self.schedule)
        self.requests += 1
        return conference.join()

    def _ended(self, conference: FocusConference) -> None:
        if self.conferences.get(conference.room) is conference:
            del self.conferences[conference.room]

    # -- stanzas -------------------------------------------------------------------------

    def stanza_received(self, stanza: Element) -> None:
        try:
            if stanza.name == "presence":
                self._presence(stanza)
            elif stanza.name == "iq" and stanza.getAttribute("type") in ("get", "set"):
                self._iq(stanza)
        except StanzaError as error:
            self._answer_error(stanza, error)

    def _answer_error(self, stanza: Element, error: StanzaError) -> None:
        reply = error_reply(stanza, error)
        if reply is not None:
            self.link.send(reply)

    def _iq(self, iq: Element) -> None:
        payload = iq.firstChildElement()
        if payload is None:
            raise StanzaError("bad-request", text="empty IQ")
        if (payload.uri, payload.name) == (FOCUS_NS, "conference") and iq["type"] == "set":
            self._conference_iq(iq, payload)
        elif (payload.uri, payload.name) == (JINGLE_NS, "jingle") and iq["type"] == "set":
            self._jingle_iq(iq, payload)
        else:
            raise StanzaError("service-unavailable")

    def _conference_iq(self, iq: Element, payload: Element) -> None:
        room = payload.getAttribute("room", "")
        joined = self.request_conference(room, iq.getAttribute("from"))

        def answer(_: None) -> None:
            self.link.send(conference_result(iq, parse_jid(room).userhost(), self.focus_jid))

        def failed(failure: object) -> None:
            value = getattr(failure, "value", failure)
            condition = value.condition if isinstance(value, IQFailed) else "internal-server-error"
            self._answer_error(iq, StanzaError(condition, text=str(value)[:200]))

        joined.addCallbacks(answer, failed)

    def _jingle_iq(self, iq: Element, payload: Element) -> None:
        sender = parse_jid(iq.getAttribute("from", ""))
        conference = self.conferences.get(sender.userhost())
        if conference is None or not sender.resource:
            raise StanzaError("item-not-found", text="no conference of the focus")
        try:
            jingle = Jingle.fromElement(payload)
        except ValueError as error:
            raise StanzaError("bad-request", text=str(error)[:200]) from None
        conference.jingle_received(sender.resource, jingle)
        result = Element((None, "iq"))
        result["type"] = "result"
        result["to"] = iq["from"]
        result["id"] = iq.getAttribute("id", "")
        self.link.send(result)

    def _presence(self, presence: Element) -> None:
        sender = parse_jid(presence.getAttribute("from", ""))
        room = sender.userhost()
        if room == self.brewery:
            self._brewery_presence(presence)
            return
        conference = self.conferences.get(room)
        if conference is not None:
            conference.presence_received(presence)

    def _brewery_presence(self, presence: Element) -> None:
        if presence.getAttribute("type") == "error":
            log.warn("could not join the brewery {room}", room=self.brewery)
            return
        try:
            seen = BreweryPresence.fromElement(presence)
        except ValueError as error:
            if parse_jid(presence["from"]).resource != self.link.jid.partition("/")[2]:
                log.info("ignored a brewery presence: {error}", error=error)
            return
        try:
            moved = self.registry.presence_received(seen.nick, seen.jid, seen.stats, self.now())
        except ValueError as error:
            log.info("ignored bridge {nick}: {error}", nick=seen.nick, error=error)
            return
        self._move(moved)
        for conference in list(self.conferences.values()):
            conference.invite_waiting()

    def _move(self, moved: dict[str, list[str]]) -> None:
        """Participants of a lost bridge go to another."""
        for conference in list(self.conferences.values()):
            nicks = moved.get(conference.meeting_id)
            if nicks:
                log.info("{room}: moving {count} participants to another bridge",
                         room=conference.room, count=len(nicks))
                conference.move(nicks)

    def tick(self) -> None:
        """Expire bridges that went quiet; health-check the others."""
        for jid, moved in self.registry.expire(self.now()).items():
            log.warn("bridge {jid} went quiet", jid=jid)
            self._move(moved)
        self.check_bridges()

    def check_bridges(self) -> None:
        """Ping every bridge not being checked already: an error reply, or none within
        HEALTH_TIMEOUT seconds, fails the bridge and moves its participants."""
        if self.link.stream is None:
            return
        for bridge in self.registry.bridges:
            if bridge.jid in self._checking:
                continue
            self._checking.add(bridge.jid)
            ping = iq_stanza(bridge.jid, "get", Element((PING_NS, "ping")))
            self.link.request(ping, HEALTH_TIMEOUT).addCallbacks(
                self._bridge_passed, self._bridge_failed,
                callbackArgs=(bridge.jid,), errbackArgs=(bridge.jid,))

    def _bridge_passed(self, _: Element, jid: str) -> None:
        self._checking.discard(jid)
        self.registry.health_ok(jid)

    def _bridge_failed(self, failure: Failure, jid: str) -> None:
        self._checking.discard(jid)
        failure.trap(IQFailed)
        if self.link.stream is None:
            return  # our own connection went down, not the bridge
        bridge = self.registry.get(jid)
        if bridge is not None and bridge.healthy:
            log.warn("bridge {jid} failed its health check: {error}", jid=jid,
                     error=failure.value)
        self._move(self.registry.health_failed(jid, self.now()))

    def stats(self) -> dict[str, object]:
        return {
            "conferences": len(self.conferences),
            "participants": sum(len(c.participants) for c in self.conferences.values()),
            "bridges": len(self.registry.operational(self.now())),
            "conference_requests": self.requests,
            "xmpp_connected": self.link.stream is not None,
        }
