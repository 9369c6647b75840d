"""XEP-0045 Multi-User Chat as an in-process component: stanzas in, stanzas out (sans-IO).

The router hands every stanza addressed to ``MUCService.domain`` to :meth:`MUCService.receive`
(with ``from`` set to the sender's validated full JID); the service answers through ``send``.

Contract of ``send(element)``:

* it must consume ``element`` before returning: serialise it, or copy it if it keeps it;
* the service reuses one element for every recipient of a broadcast, changing only its ``to``
  between calls, and shares payload children between the stanzas it sends, so elements given
  to ``send`` are read-only;
* ``send`` may call ``receive`` again (an in-process component answering at once). Output is
  queued while a stanza is handled and sent in order afterwards, so a nested ``receive`` only
  appends to that queue and the room state is never changed under an unfinished handler.

Incoming elements are never modified: whatever is relayed or kept is copied first.
"""

from __future__ import annotations

import copy
import dataclasses
import hmac
import json
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, Protocol

from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from vw.xmpp.dataforms import DATA_NS, Field, Form, Option, parse_bool
from vw.xmpp.errors import LobbyRequired, StanzaError

log = Logger()

CLIENT_NS = "jabber:client"
MUC_NS = "http://jabber.org/protocol/muc"
MUC_USER_NS = MUC_NS + "#user"
MUC_ADMIN_NS = MUC_NS + "#admin"
MUC_OWNER_NS = MUC_NS + "#owner"
MUC_ROOMCONFIG = MUC_NS + "#roomconfig"
MUC_ROOMINFO = MUC_NS + "#roominfo"
MUC_STABLE_ID = MUC_NS + "#stable_id"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"
DELAY_NS = "urn:xmpp:delay"
PING_NS = "urn:xmpp:ping"

AFFILIATION_RANK = {"outcast": -1, "none": 0, "member": 1, "admin": 2, "owner": 3}
ROLE_RANK = {"none": 0, "visitor": 1, "participant": 2, "moderator": 3}
ROLES = frozenset({"moderator", "participant", "visitor", "none"})
PRIVILEGED = frozenset({"owner", "admin"})
#: Relayed IQs whose answer has not come after this many seconds are forgotten.
IQ_RELAY_TIMEOUT = 120.0
IQ_RELAY_MAX = 65536
MAX_HISTORY = 200
JID_CACHE_SIZE = 16384


# -- configuration and persistence --------------------------------------------------------


@dataclass
class RoomDefaults:
    """Configuration of new rooms."""

    whois: str = "anyone"          # "anyone" (non-anonymous, Jitsi needs real JIDs) or "moderators"
    persistent: bool = False
    members_only: bool = False
    moderated: bool = False
    max_occupants: int = 0         # 0 = unlimited
    history_size: int = 20
    public: bool = True


class RoomStore(Protocol):
    """Persistence of persistent rooms."""

    def load_rooms(self, service_domain: str) -> dict[str, dict[str, Any]]: ...

    def save_room(self, service_domain: str, node: str, state: dict[str, Any]) -> None: ...

    def delete_room(self, service_domain: str, node: str) -> None: ...


@dataclass(frozen=True)
class RoomHint:
    """Room settings a joining user brings (its token's ``context.room``)."""

    #: The room's participant limit; 0: none given.
    max_occupants: int = 0
    #: Whether the room has a lobby (members only, with a lobby room to knock in).
    lobby: bool = False


class LobbyPolicy(Protocol):
    """What a MUC service asks of Jitsi's lobby (:mod:`vw.xmpp.lobby`)."""

    def lobby_jid(self, room: Room) -> str | None:
        """The lobby room where non-members of ``room`` knock, if it has one."""

    def room_changed(self, room: Room) -> None:
        """``room``'s configuration changed (members only on or off)."""

    def room_closed(self, room: Room) -> None:
        """``room`` is gone."""


#: Whether ``viewer`` sees the presence and messages of ``subject`` in ``room``.
Visibility = Callable[["Room", "Occupant", "Occupant"], bool]


class MemoryRoomStore:
    """A RoomStore in a dict (tests, and the default). States go through JSON, like SQL would."""

    def __init__(self) -> None:
        self.rooms: dict[tuple[str, str], str] = {}

    def load_rooms(self, service_domain: str) -> dict[str, dict[str, Any]]:
        return {node: json.loads(state) for (domain, node), state in self.rooms.items()
                if domain == service_domain}

    def save_room(self, service_domain: str, node: str, state: dict[str, Any]) -> None:
        self.rooms[(service_domain, node)] = json.dumps(state)

    def delete_room(self, service_domain: str, node: str) -> None:
        self.rooms.pop((service_domain, node), None)


@dataclass
class RoomConfig:
    """The owner-settable configuration of one room (muc#roomconfig)."""

    name: str = ""
    description: str = ""
    persistent: bool = False
    public: bool = True
    members_only: bool = False
    moderated: bool = False
    password: str = ""
    whois: str = "anyone"
    max_occupants: int = 0
    history_size: int = 20
    change_subject: bool = False
    allow_invites: bool = False

    @classmethod
    def from_defaults(cls, defaults: RoomDefaults) -> RoomConfig:
        return cls(persistent=defaults.persistent, public=defaults.public,
                   members_only=defaults.members_only, moderated=defaults.moderated,
                   whois=defaults.whois, max_occupants=max(0, defaults.max_occupants),
                   history_size=min(MAX_HISTORY, max(0, defaults.history_size)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, data: Any) -> RoomConfig:
        """A copy with the well-typed entries of ``data`` (a stored dict) applied."""
        new = dataclasses.replace(self)
        if not isinstance(data, dict):
            return new
        for item in dataclasses.fields(self):
            value = data.get(item.name)
            if value is not None and type(value) is type(getattr(self, item.name)):
                setattr(new, item.name, value)
        if new.whois not in ("anyone", "moderators"):
            new.whois = self.whois
        new.max_occupants = max(0, new.max_occupants)
        new.history_size = min(MAX_HISTORY, max(0, new.history_size))
        return new


# -- small helpers ----------------------------------------------------------------------


@lru_cache(maxsize=JID_CACHE_SIZE)
def _jid_parts(text: str) -> tuple[str | None, str, str | None]:
    """(node, domain, resource) of a JID string, normalised; StanzaError if malformed."""
    try:
        jid = JID(text)
    except Exception:  # InvalidFormat, UnicodeError, ...: all mean "malformed"
        raise StanzaError("jid-malformed", text="malformed address") from None
    return jid.user, jid.host, jid.resource


def _bare(text: str) -> str:
    """The normalised bare JID of ``text``; StanzaError if malformed."""
    node, host, _ = _jid_parts(text)
    return f"{node}@{host}" if node else host


def copy_element(element: Element) -> Element:
    """A deep copy of a domish element."""
    clone = Element((element.uri, element.name), defaultUri=element.defaultUri,
                    attribs=dict(element.attributes),
                    localPrefixes=dict(element.localPrefixes) if element.localPrefixes else None)
    for child in element.children:
        clone.addChild(copy_element(child) if isinstance(child, Element) else child)
    return clone


def _text(element: Element) -> str:
    return "".join(child for child in element.children if isinstance(child, str))


def _child(element: Element, uri: str | None, name: str) -> Element | None:
    """The first child element named ``name`` in namespace ``uri``."""
    for child in element.elements():
        if child.name == name and child.uri == uri:
            return child
    return None


def _new(name: str, sender: str, stanza_type: str | None = None,
         stanza_id: str | None = None) -> Element:
    """A jabber:client stanza from ``sender`` (``to`` is set when it is sent)."""
    element = Element((CLIENT_NS, name), defaultUri=CLIENT_NS)
    element["from"] = sender
    if stanza_type is not None:
        element["type"] = stanza_type
    if stanza_id is not None:
        element["id"] = stanza_id
    return element


def _relay_copy(stanza: Element, sender: str, stanza_type: str | None) -> Element:
    """A copy of ``stanza`` (children deep-copied) that comes from ``sender``."""
    element = _new(stanza.name, sender, stanza_type, stanza.getAttribute("id"))
    for child in stanza.elements():
        element.addChild(copy_element(child))
    return element


def _stamp(seconds: float) -> str:
    """An XEP-0082 DateTime in UTC."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _parse_stamp(text: str) -> float | None:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _count(element: Element, name: str) -> int | None:
    """A non-negative integer attribute, or None when absent or malformed."""
    value = element.getAttribute(name)
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


# -- rooms and occupants ------------------------------------------------------------------


class Occupant:
    """One user in one room."""

    __slots__ = ("nick", "address", "jid", "bare", "role", "payload", "presence_id")

    def __init__(self, room_jid: str, nick: str, jid: str, bare: str, role: str) -> None:
        self.nick = nick
        self.address = f"{room_jid}/{nick}"   # the occupant JID
        self.jid = jid                        # the real full JID
        self.bare = bare
        self.role = role
        #: The children of the occupant's last presence (copies, minus the MUC <x/>s).
        self.payload: list[Element] = []
        self.presence_id: str | None = None


@dataclass(slots=True)
class HistoryEntry:
    """A groupchat message kept for discussion history."""

    sender: str                   # occupant JID at the time
    stanza_id: str
    children: list[Element]
    stamp: float


@dataclass
class _Notice:
    """What an occupant presence sent by the room says (beyond the occupant's own payload)."""

    presence_type: str | None = None
    affiliation: str | None = None      # None: the current one
    role: str | None = None             # None: the current one
    payload: list[Element] | None = None    # None: the occupant's last presence
    codes: tuple[str, ...] = ()
    new_nick: str | None = None
    actor: Occupant | str | None = None
    reason: str | None = None
    destroy: Element | None = None
    stanza_id: str | None = None


@dataclass
class _Actor:
    """Who asks for an admin or owner operation."""

    bare: str
    occupant: Occupant | None
    affiliation: str
    role: str


@dataclass(slots=True)
class _Relay:
    requester: str      # real full JID of who sent the IQ
    target_nick: str
    deadline: float


class Room:
    """The state of one room."""

    def __init__(self, node: str, domain: str, config: RoomConfig, now: float) -> None:
        self.node = node
        self.jid = f"{node}@{domain}"
        self.config = config
        self.affiliations: dict[str, str] = {}      # bare JID -> owner/admin/member/outcast
        self.occupants: dict[str, Occupant] = {}    # nick -> occupant
        self.by_jid: dict[str, Occupant] = {}       # real full JID -> occupant
        self.history: deque[HistoryEntry] = deque()
        self.subject: str | None = None
        self.subject_from = self.jid
        self.subject_time: float | None = None
        self.meeting_id = str(uuid.uuid4())
        #: Extra muc#roominfo fields for room disco (e.g. Jitsi's lobbyroom, isbreakout).
        self.extra_info: dict[str, str] = {}
        self.created_at = now
        #: Kept open while empty without being stored (a lobby room while its lobby is on).
        self.kept = False
        #: Whether a token's room settings have turned the lobby on once already.
        self.lobby_hinted = False

    def occupant_count(self) -> int:
        return len(self.occupants)

    def state(self) -> dict[str, Any]:
        """What a RoomStore keeps (JSON-able)."""
        return {"config": self.config.to_dict(), "affiliations": dict(self.affiliations),
                "subject": self.subject, "subject_from": self.subject_from,
                "subject_time": self.subject_time, "meeting_id": self.meeting_id}

    def restore(self, state: dict[str, Any]) -> None:
        """Apply a stored state (bad entries are skipped)."""
        self.config = self.config.updated(state.get("config"))
        affiliations = state.get("affiliations")
        if isinstance(affiliations, dict):
            for bare, affiliation in affiliations.items():
                if isinstance(bare, str) and affiliation in ("owner", "admin", "member",
                                                             "outcast"):
                    try:
                        self.affiliations[_bare(bare)] = affiliation
                    except StanzaError:
                        log.warn("MUC: skipped a malformed stored JID {jid!r}", jid=bare)
        if isinstance(state.get("subject"), str):
            self.subject = state["subject"]
        if isinstance(state.get("subject_from"), str):
            self.subject_from = state["subject_from"]
        if isinstance(state.get("subject_time"), int | float):
            self.subject_time = float(state["subject_time"])
        if isinstance(state.get("meeting_id"), str):
            self.meeting_id = state["meeting_id"]

    def trim_history(self) -> None:
        while len(self.history) > self.config.history_size:
            self.history.popleft()


# -- the service --------------------------------------------------------------------------


class MUCService:
    """A multi-user chat service for one domain (e.g. ``conference.example.com``)."""

    def __init__(self, domain: str, send: Callable[[Element], None], *,
                 clock: Callable[[], float], defaults: RoomDefaults | None = None,
                 store: RoomStore | None = None,
                 affiliation_hint: Callable[[JID, str], str | None] | None = None,
                 room_hint: Callable[[JID, str], RoomHint] | None = None,
                 lobby: LobbyPolicy | None = None, visibility: Visibility | None = None,
                 creates_rooms: bool = True, info_nodes: Collection[str] = (),
                 admins: Collection[str] = ()) -> None:
        self.domain = _jid_parts(domain)[1]
        self._send = send
        self._clock = clock
        self.defaults = defaults or RoomDefaults()
        self.store: RoomStore = store if store is not None else MemoryRoomStore()
        self._hint = affiliation_hint
        self._room_hint = room_hint
        self.lobby = lobby
        self._visible = visibility
        #: Whether a join creates a missing room (else rooms come from create_room).
        self.creates_rooms = creates_rooms
        #: Disco#info nodes the service answers about as about itself (Jitsi's lobbyrooms).
        self.info_nodes = frozenset(info_nodes)
        self.admins = frozenset(_bare(admin) for admin in admins)
        self._rooms: dict[str, Room] = {}
        self._queue: deque[tuple[Element, str]] = deque()
        self._depth = 0
        self._relays: OrderedDict[tuple[str, str, str, str], _Relay] = OrderedDict()
        #: Stanzas that hit a bug (answered with internal-server-error); should stay 0.
        self.internal_errors = 0
        self._load()

    # -- public API ------------------------------------------------------------------------

    def receive(self, stanza: Element) -> None:
        """Handle one stanza addressed to this service. Never raises."""
        self._depth += 1
        try:
            self._handle(stanza)
        finally:
            self._depth -= 1
        if self._depth == 0:
            self._flush()

    def rooms(self) -> dict[str, Room]:
        """The rooms now open, by node (a snapshot of the mapping)."""
        return dict(self._rooms)

    def room(self, node: str) -> Room | None:
        return self._rooms.get(node)

    def occupant_count(self) -> int:
        return sum(len(room.occupants) for room in self._rooms.values())

    def affiliation(self, node: str, bare: str) -> str:
        """``bare``'s affiliation with room ``node`` ("none" if there is no such room)."""
        room = self._rooms.get(node)
        return "none" if room is None else self._affiliation(room, bare)

    def open_kept_room(self, node: str) -> Room:
        """Open room ``node`` (if it is not open) and keep it open while empty."""
        room = self._rooms.get(node)
        if room is None:
            room = self._rooms[node] = Room(node, self.domain,
                                            RoomConfig.from_defaults(self.defaults), self._clock())
        room.kept = True
        return room

    def destroy_room(self, node: str, reason: str | None = None, alternate: str | None = None,
                     password: str | None = None) -> bool:
        """Destroy a room, telling its occupants; False if there is no such room."""
        room = self._rooms.get(node)
        if room is None:
            return False
        self._destroy(room, reason, alternate, password)
        if self._depth == 0:
            self._flush()
        return True

    def shutdown(self) -> None:
        """Tell every occupant the service is going away (status 332) and empty the rooms."""
        for room in list(self._rooms.values()):
            for occupant in list(room.occupants.values()):
                notice = _Notice("unavailable", role="none", payload=[], codes=("332",))
                self._emit(self._presence(room, occupant, True, notice, ("332", "110")),
                           occupant.jid)
            room.occupants.clear()
            room.by_jid.clear()
        self._rooms = {node: room for node, room in self._rooms.items()
                       if room.config.persistent}
        if self._depth == 0:
            self._flush()

    # -- plumbing --------------------------------------------------------------------------

    def _handle(self, stanza: Element) -> None:
        try:
            self._dispatch(stanza)
        except StanzaError as error:
            self._reply_error(stanza, error)
        except Exception:
            self.internal_errors += 1
            log.failure("MUC {domain}: failed on a stanza", domain=self.domain)
            self._reply_error(stanza, StanzaError("internal-server-error"))

    def _emit(self, element: Element, to: str) -> None:
        self._queue.append((element, to))

    def _flush(self) -> None:
        self._depth += 1
        try:
            while self._queue:
                element, to = self._queue.popleft()
                element["to"] = to
                try:
                    self._send(element)
                except Exception:
                    log.failure("MUC {domain}: send failed", domain=self.domain)
        finally:
            self._depth -= 1

    def _reply_error(self, stanza: Element, error: StanzaError) -> None:
        """Answer ``stanza`` with ``error`` (never errors and results, never without a sender)."""
        sender = stanza.getAttribute("from")
        if (stanza.getAttribute("type") in ("error", "result") or not sender
                or stanza.name not in ("message", "presence", "iq")):
            return
        to = stanza.getAttribute("to") or self.domain
        reply = _new(stanza.name, to, "error", stanza.getAttribute("id"))
        for child in self._error_payload(stanza):
            reply.addChild(child)
        element = error.to_element()
        element.uri = element.defaultUri = CLIENT_NS
        try:
            element["by"] = _bare(to)
        except StanzaError:
            element["by"] = self.domain
        reply.addChild(element)
        for child in error.payload():
            reply.addChild(child)
        self._emit(reply, sender)

    @staticmethod
    def _error_payload(stanza: Element) -> list[Element]:
        """Copies of what of the original stanza goes back with an error about it."""
        if stanza.name == "iq":
            return [copy_element(c) for c in stanza.elements()][:1]
        if stanza.name == "message":
            return [copy_element(c) for c in stanza.elements() if c.name != "error"]
        muc = _child(stanza, MUC_NS, "x")
        if muc is None:
            return []
        clean = Element((MUC_NS, "x"), defaultUri=MUC_NS)   # without the password
        return [clean]

    def _dispatch(self, stanza: Element) -> None:
        sender, to = stanza.getAttribute("from"), stanza.getAttribute("to")
        if stanza.name not in ("message", "presence", "iq") or not sender or not to:
            return
        try:
            _jid_parts(sender)
        except StanzaError:
            return
        node, host, resource = _jid_parts(to)
        if host != self.domain:
            log.debug("MUC {domain}: not ours: {to}", domain=self.domain, to=to)
            return
        if node is None:
            self._to_service(stanza)
        elif stanza.name == "presence":
            self._on_presence(node, resource, stanza)
        elif stanza.name == "message":
            self._on_message(node, resource, stanza)
        else:
            self._on_iq(node, resource, stanza)

    # -- the service itself ----------------------------------------------------------------

    def _to_service(self, stanza: Element) -> None:
        stanza_type = stanza.getAttribute("type")
        if stanza.name == "presence":
            if stanza_type is None:
                raise StanzaError("jid-malformed", text="no room given")
            return
        if stanza.name == "message":
            if stanza_type not in ("error", "headline"):
                raise StanzaError("service-unavailable")
            return
        query = self._iq_payload(stanza)
        if query is None:
            return
        key = (stanza_type, query.uri, query.name)
        if key == ("get", DISCO_INFO_NS, "query"):
            self._result(stanza, self._service_info(query))
        elif key == ("get", DISCO_ITEMS_NS, "query"):
            self._result(stanza, self._service_items(query))
        elif key == ("get", PING_NS, "ping"):
            self._result(stanza, None)
        else:
            raise StanzaError("service-unavailable")

    def _service_info(self, query: Element) -> Element:
        node = query.getAttribute("node")
        if node and node not in self.info_nodes:
            raise StanzaError("item-not-found")
        result = Element((DISCO_INFO_NS, "query"), defaultUri=DISCO_INFO_NS)
        if node:
            result["node"] = node
        identity = result.addElement("identity")
        identity["category"], identity["type"], identity["name"] = "conference", "text", "Chatrooms"
        for feature in (DISCO_INFO_NS, DISCO_ITEMS_NS, MUC_NS, MUC_STABLE_ID):
            result.addElement("feature")["var"] = feature
        return result

    def _service_items(self, query: Element) -> Element:
        if query.getAttribute("node"):
            raise StanzaError("item-not-found")
        result = Element((DISCO_ITEMS_NS, "query"), defaultUri=DISCO_ITEMS_NS)
        for node in sorted(self._rooms):
            room = self._rooms[node]
            if room.config.public:
                item = result.addElement("item")
                item["jid"], item["name"] = room.jid, room.config.name or node
        return result

    def _iq_payload(self, stanza: Element) -> Element | None:
        """The one payload of an IQ get/set; None for results and errors (dropped)."""
        stanza_type = stanza.getAttribute("type")
        if stanza_type in ("result", "error"):
            return None
        if stanza_type not in ("get", "set") or stanza.getAttribute("id") is None:
            raise StanzaError("bad-request", text="not a valid IQ")
        children = list(stanza.elements())
        if len(children) != 1:
            raise StanzaError("bad-request", text="an IQ get/set carries exactly one payload")
        return children[0]

    def _result(self, iq: Element, payload: Element | None) -> None:
        reply = _new("iq", iq["to"], "result", iq.getAttribute("id"))
        if payload is not None:
            reply.addChild(payload)
        self._emit(reply, iq["from"])

    # -- presence ----------------------------------------------------------------------------

    def _on_presence(self, node: str, nick: str | None, stanza: Element) -> None:
        stanza_type = stanza.getAttribute("type")
        room = self._rooms.get(node)
        occupant = room.by_jid.get(stanza["from"]) if room is not None else None
        if stanza_type == "unavailable":
            if occupant is not None:
                notice = _Notice("unavailable", role="none", payload=self._payload(stanza),
                                 stanza_id=stanza.getAttribute("id"))
                self._remove(room, occupant, notice)
            return
        if stanza_type == "error":
            if occupant is not None:    # XEP-0045 §13.1: the occupant's client is gone
                self._remove(room, occupant, _Notice("unavailable", role="none", payload=[],
                                                     codes=("333",)))
            return
        if stanza_type is not None:     # probes, subscriptions: not for rooms
            return
        if not nick or not nick.strip():
            raise StanzaError("jid-malformed", text="a room nickname is required")
        muc = _child(stanza, MUC_NS, "x")
        if occupant is None:
            if muc is None:
                self._not_in_room(node, nick, stanza["from"])
            else:
                self._join(node, room, nick, stanza, muc)
        elif occupant.nick != nick:
            self._change_nick(room, occupant, nick, stanza)
        else:
            self._update_presence(room, occupant, stanza, muc)

    @staticmethod
    def _payload(stanza: Element) -> list[Element]:
        """Copies of a presence's children, minus MUC <x/>s (the service writes muc#user)."""
        return [copy_element(c) for c in stanza.elements()
                if not (c.name == "x" and c.uri in (MUC_NS, MUC_USER_NS))]

    def _not_in_room(self, node: str, nick: str, sender: str) -> None:
        """Answer presence from a non-occupant without <x/> (XEP-0045 §7.2.24)."""
        presence = _new("presence", f"{node}@{self.domain}/{nick}", "unavailable")
        x = presence.addElement((MUC_USER_NS, "x"), defaultUri=MUC_USER_NS)
        item = x.addElement("item")
        item["affiliation"], item["role"] = "none", "none"
        item.addElement("reason", content="You are not in the room.")
        for code in ("110", "307", "333"):
            x.addElement("status")["code"] = code
        self._emit(presence, sender)

    def _join(self, node: str, room: Room | None, nick: str, stanza: Element,
              muc: Element) -> None:
        sender = stanza["from"]
        bare = _bare(sender)
        created = room is None
        if room is None:
            if not self.creates_rooms:
                raise StanzaError("item-not-found", text="No such room")
            room = Room(node, self.domain, RoomConfig.from_defaults(self.defaults), self._clock())
            room.affiliations[bare] = "owner"
        affiliation = self._join_affiliation(room, sender, bare)
        self._join_settings(room, sender, created)
        self._check_entry(room, nick, bare, affiliation, muc)
        if created:
            self._rooms[node] = room
            self._save(room)
        occupant = Occupant(room.jid, nick, sender, bare, self._default_role(room, affiliation))
        occupant.payload = self._payload(stanza)
        occupant.presence_id = stanza.getAttribute("id")
        room.occupants[nick] = occupant
        room.by_jid[sender] = occupant
        codes = ("100",) if room.config.whois == "anyone" else ()
        self._send_initial(room, occupant, muc, codes + (("201",) if created else ()))

    def _join_settings(self, room: Room, sender: str, created: bool) -> None:
        """Take the room's settings from ``room_hint`` (the joining user's token carries its
        meeting's): the occupant limit, and the lobby the first time one is asked for (a
        moderator may turn it off later)."""
        if self._room_hint is None:
            return
        hint = self._room_hint(JID(sender), room.node)
        changed = False
        if hint.max_occupants and hint.max_occupants != room.config.max_occupants:
            room.config = dataclasses.replace(room.config, max_occupants=hint.max_occupants)
            changed = True
        # A new room's creator owns it: the lobby waits for the room to exist.
        if hint.lobby and not created and not room.lobby_hinted and self.lobby is not None:
            room.lobby_hinted = True
            if not room.config.members_only:
                room.config = dataclasses.replace(room.config, members_only=True)
                changed = True
                self.lobby.room_changed(room)
        if changed and not created:
            self._save(room)

    def _join_affiliation(self, room: Room, sender: str, bare: str) -> str:
        """The joining user's affiliation, raised by ``affiliation_hint`` if it says so."""
        current = self._affiliation(room, bare)
        if self._hint is None or current == "outcast":
            return current
        try:
            hinted = self._hint(JID(sender), room.node)
        except Exception:
            log.failure("MUC {domain}: affiliation_hint failed", domain=self.domain)
            return current
        if hinted in ("owner", "admin", "member") and (
                AFFILIATION_RANK[hinted] > AFFILIATION_RANK[current]):
            room.affiliations[bare] = hinted
            self._save(room)
            return hinted
        return current

    def _check_entry(self, room: Room, nick: str, bare: str, affiliation: str,
                     muc: Element) -> None:
        """Raise the XEP-0045 §7.2 error that keeps this user out, if any."""
        if affiliation == "outcast":
            raise StanzaError("forbidden", "auth", "You are banned from this room")
        if room.config.members_only and AFFILIATION_RANK[affiliation] < 1:
            lobby = self.lobby.lobby_jid(room) if self.lobby is not None else None
            if lobby is not None:
                raise LobbyRequired(lobby)
            raise StanzaError("registration-required", "auth", "This room is members-only")
        if nick in room.occupants:
            raise StanzaError("conflict", "cancel", "That nickname is already in use")
        if room.config.password and bare not in self.admins:
            given = _child(muc, MUC_NS, "password")
            text = _text(given) if given is not None else ""
            if not hmac.compare_digest(text.encode(), room.config.password.encode()):
                raise StanzaError("not-authorized", "auth", "A password is required")
        limit = room.config.max_occupants
        if limit and affiliation not in PRIVILEGED and sum(
                occupant.bare not in self.admins for occupant in room.occupants.values()
        ) >= limit:  # the service's admins (the focus) take no seat
            raise StanzaError("service-unavailable", "wait", "This room is full")

    def _send_initial(self, room: Room, occupant: Occupant, muc: Element | None,
                      codes: tuple[str, ...]) -> None:
        """Roster, own presence to all, history and subject, in XEP-0045 §7.2 order."""
        sees_jids = room.config.whois == "anyone" or occupant.role == "moderator"
        for other in list(room.occupants.values()):
            if other is not occupant and self._sees(room, occupant, other):
                self._emit(self._presence(room, other, sees_jids, _Notice()), occupant.jid)
        self._broadcast(room, occupant, _Notice(stanza_id=occupant.presence_id), codes)
        for message in self._history_for(room, muc):
            self._emit(message, occupant.jid)
        self._emit(self._subject_message(room), occupant.jid)

    def _update_presence(self, room: Room, occupant: Occupant, stanza: Element,
                         muc: Element | None) -> None:
        occupant.payload = self._payload(stanza)
        occupant.presence_id = stanza.getAttribute("id")
        if muc is not None:     # a join from an occupant: resynchronise it (§7.2.1)
            self._send_initial(room, occupant, muc, ())
        else:
            self._broadcast(room, occupant, _Notice(stanza_id=occupant.presence_id))

    def _change_nick(self, room: Room, occupant: Occupant, nick: str, stanza: Element) -> None:
        if nick in room.occupants:
            raise StanzaError("conflict", "cancel", "That nickname is already in use")
        self._broadcast(room, occupant, _Notice("unavailable", payload=[], codes=("303",),
                                                new_nick=nick))
        del room.occupants[occupant.nick]
        occupant.nick = nick
        occupant.address = f"{room.jid}/{nick}"
        room.occupants[nick] = occupant
        occupant.payload = self._payload(stanza)
        occupant.presence_id = stanza.getAttribute("id")
        self._broadcast(room, occupant, _Notice(stanza_id=occupant.presence_id))

    def _remove(self, room: Room, occupant: Occupant, notice: _Notice,
                later: list[Callable[[], None]] | None = None) -> None:
        """Take ``occupant`` out: tell it first, then (now or via ``later``) the others."""
        room.occupants.pop(occupant.nick, None)
        room.by_jid.pop(occupant.jid, None)
        self._emit(self._presence(room, occupant, True, notice, notice.codes + ("110",)),
                   occupant.jid)
        tell_others = partial(self._tell_others_removed, room, occupant, notice)
        if later is None:
            tell_others()
        else:
            later.append(tell_others)

    def _tell_others_removed(self, room: Room, occupant: Occupant, notice: _Notice) -> None:
        self._broadcast(room, occupant, notice, include_self=False)
        self._close_if_empty(room)

    def _close_if_empty(self, room: Room) -> None:
        if (not room.occupants and not room.config.persistent and not room.kept
                and self._rooms.get(room.node) is room):
            del self._rooms[room.node]
            self._closed(room)

    def _closed(self, room: Room) -> None:
        if self.lobby is not None:
            self.lobby.room_closed(room)

    def _presence(self, room: Room, occupant: Occupant, with_jid: bool, notice: _Notice,
                  codes: tuple[str, ...] = ()) -> Element:
        """The presence of ``occupant`` as the room sends it."""
        presence = _new("presence", occupant.address, notice.presence_type, notice.stanza_id)
        payload = occupant.payload if notice.payload is None else notice.payload
        presence.children.extend(payload)   # shared, read-only: not re-parented
        x = presence.addElement((MUC_USER_NS, "x"), defaultUri=MUC_USER_NS)
        item = x.addElement("item")
        item["affiliation"] = notice.affiliation or self._affiliation(room, occupant.bare)
        item["role"] = notice.role or occupant.role
        if with_jid:
            item["jid"] = occupant.jid
        if notice.new_nick is not None:
            item["nick"] = notice.new_nick
        if isinstance(notice.actor, Occupant):
            item.addElement("actor")["nick"] = notice.actor.nick
        elif notice.actor is not None:
            item.addElement("actor")["jid"] = notice.actor
        if notice.reason is not None:
            item.addElement("reason", content=notice.reason)
        if notice.destroy is not None:
            x.children.append(notice.destroy)
        for code in codes:
            x.addElement("status")["code"] = code
        return presence

    def _broadcast(self, room: Room, occupant: Occupant, notice: _Notice,
                   self_codes: tuple[str, ...] = (), include_self: bool = True) -> None:
        """Send ``occupant``'s presence to every occupant: one element per variant."""
        public = room.config.whois == "anyone"
        variants: dict[bool, Element] = {}
        visible = self._visible
        for other in list(room.occupants.values()):
            if other is occupant or (visible is not None and not visible(room, other, occupant)):
                continue
            with_jid = public or other.role == "moderator"
            element = variants.get(with_jid)
            if element is None:
                element = variants[with_jid] = self._presence(room, occupant, with_jid, notice,
                                                              notice.codes)
            self._emit(element, other.jid)
        if include_self:
            codes = notice.codes + self_codes + ("110",)
            self._emit(self._presence(room, occupant, True, notice, codes), occupant.jid)

    # -- history and subject -------------------------------------------------------------

    def _history_for(self, room: Room, muc: Element | None) -> list[Element]:
        """History messages for a joining occupant, limited as its <history/> asks."""
        entries = list(room.history)
        spec = _child(muc, MUC_NS, "history") if muc is not None else None
        if spec is None or not entries:
            return [self._history_message(room, entry) for entry in entries]
        most = _count(spec, "maxstanzas")
        if most is not None:
            entries = entries[-most:] if most else []
        seconds = _count(spec, "seconds")
        if seconds is not None:
            cutoff = self._clock() - seconds
            entries = [entry for entry in entries if entry.stamp >= cutoff]
        since = spec.getAttribute("since")
        cutoff_since = _parse_stamp(since) if since else None
        if cutoff_since is not None:
            entries = [entry for entry in entries if entry.stamp >= cutoff_since]
        messages = [self._history_message(room, entry) for entry in entries]
        budget = _count(spec, "maxchars")
        if budget is None:
            return messages
        kept: list[Element] = []
        for message in reversed(messages):
            budget -= len(message.toXml())
            if budget < 0:
                break
            kept.append(message)
        return kept[::-1]

    def _history_message(self, room: Room, entry: HistoryEntry) -> Element:
        message = _new("message", entry.sender, "groupchat", entry.stanza_id)
        message.children.extend(entry.children)
        delay = message.addElement((DELAY_NS, "delay"), defaultUri=DELAY_NS)
        delay["from"], delay["stamp"] = room.jid, _stamp(entry.stamp)
        return message

    def _subject_message(self, room: Room) -> Element:
        message = _new("message", room.subject_from, "groupchat")
        message.addElement("subject", content=room.subject or None)
        if room.subject_time is not None:
            delay = message.addElement((DELAY_NS, "delay"), defaultUri=DELAY_NS)
            delay["from"], delay["stamp"] = room.jid, _stamp(room.subject_time)
        return message

    # -- messages ----------------------------------------------------------------------------

    def _on_message(self, node: str, nick: str | None, stanza: Element) -> None:
        stanza_type = stanza.getAttribute("type") or "normal"
        room = self._rooms.get(node)
        if stanza_type == "error":
            occupant = room.by_jid.get(stanza["from"]) if room is not None else None
            if occupant is not None:    # a bounce: the occupant is gone (§13.1)
                self._remove(room, occupant, _Notice("unavailable", role="none", payload=[],
                                                     codes=("333",)))
            return
        if room is None:
            if stanza_type == "headline":
                return
            raise StanzaError("item-not-found", text="No such room")
        if nick is not None:
            self._private_message(room, nick, stanza, stanza_type)
        elif stanza_type == "groupchat":
            self._groupchat(room, room.by_jid.get(stanza["from"]), stanza)
        else:
            x = _child(stanza, MUC_USER_NS, "x")
            if x is not None and (_child(x, MUC_USER_NS, "invite") is not None
                                  or _child(x, MUC_USER_NS, "decline") is not None):
                self._invitations(room, stanza, x)
            elif stanza_type != "headline":
                raise StanzaError("bad-request", text="Send groupchat messages to the room")

    def _groupchat(self, room: Room, occupant: Occupant | None, stanza: Element) -> None:
        if occupant is None:
            raise StanzaError("not-acceptable", text="You are not in this room")
        if occupant.role not in ("participant", "moderator"):
            raise StanzaError("forbidden", text="You have no voice in this room")
        body = _child(stanza, stanza.uri, "body")
        subject = _child(stanza, stanza.uri, "subject")
        if subject is not None and body is None and _child(stanza, stanza.uri, "thread") is None:
            self._set_subject(room, occupant, _text(subject))
        message = _relay_copy(stanza, occupant.address, "groupchat")
        if not message.hasAttribute("id"):
            message["id"] = str(uuid.uuid4())
        if body is not None and room.config.history_size:
            room.history.append(HistoryEntry(occupant.address, message["id"],
                                             list(message.children), self._clock()))
            room.trim_history()
        visible = self._visible
        for other in list(room.occupants.values()):
            if visible is None or other is occupant or visible(room, other, occupant):
                self._emit(message, other.jid)

    def _sees(self, room: Room, viewer: Occupant, subject: Occupant) -> bool:
        return self._visible is None or self._visible(room, viewer, subject)

    def _set_subject(self, room: Room, occupant: Occupant, subject: str) -> None:
        allowed = occupant.role == "moderator" or (
            room.config.change_subject and occupant.role == "participant")
        if not allowed:
            raise StanzaError("forbidden", text="You may not change the subject")
        room.subject = subject
        room.subject_from = occupant.address
        room.subject_time = self._clock()
        self._save(room)

    def _private_message(self, room: Room, nick: str, stanza: Element, stanza_type: str) -> None:
        if stanza_type == "groupchat":
            raise StanzaError("bad-request", text="Private messages are not groupchat")
        sender, target = self._correspondents(room, nick, stanza)
        message = _relay_copy(stanza, sender.address, stanza.getAttribute("type"))
        if _child(message, MUC_USER_NS, "x") is None:
            message.addElement((MUC_USER_NS, "x"), defaultUri=MUC_USER_NS)
        self._emit(message, target.jid)

    def _correspondents(self, room: Room, nick: str, stanza: Element) -> tuple[Occupant, Occupant]:
        """The occupant sending ``stanza`` and the one at ``nick``, if either sees the other
        (in a lobby room, those waiting reach only the moderators)."""
        sender = room.by_jid.get(stanza["from"])
        if sender is None:
            raise StanzaError("not-acceptable", text="You are not in this room")
        target = room.occupants.get(nick)
        if target is None or not (target is sender or self._sees(room, sender, target)
                                  or self._sees(room, target, sender)):
            raise StanzaError("item-not-found", text="No such occupant")
        return sender, target

    def _invitations(self, room: Room, stanza: Element, x: Element) -> None:
        """Mediated invitations and declines (XEP-0045 §7.8.2)."""
        sender = stanza["from"]
        invites = [c for c in x.elements() if c.uri == MUC_USER_NS and c.name == "invite"]
        declines = [c for c in x.elements() if c.uri == MUC_USER_NS and c.name == "decline"]
        if invites:
            occupant = room.by_jid.get(sender)
            if occupant is None:
                raise StanzaError("not-acceptable", text="You are not in this room")
            affiliation = self._affiliation(room, occupant.bare)
            if (room.config.members_only and affiliation not in PRIVILEGED
                    and not room.config.allow_invites):
                raise StanzaError("forbidden", text="Only admins may invite to this room")
            targets = [self._address_of(invite) for invite in invites]
            for invite, target in zip(invites, targets, strict=True):
                self._send_invite(room, stanza, sender, invite, target)
            if room.config.members_only:
                self._add_members(room, targets)
        for decline in declines:
            self._send_decline(room, stanza, decline)

    @staticmethod
    def _address_of(element: Element) -> str:
        to = element.getAttribute("to")
        if not to:
            raise StanzaError("bad-request", text=f"<{element.name}/> needs 'to'")
        _jid_parts(to)
        return to

    def _send_invite(self, room: Room, stanza: Element, sender: str, invite: Element,
                     target: str) -> None:
        message = _new("message", room.jid, None, stanza.getAttribute("id"))
        x = message.addElement((MUC_USER_NS, "x"), defaultUri=MUC_USER_NS)
        forwarded = x.addElement("invite")
        forwarded["from"] = sender
        reason = _child(invite, MUC_USER_NS, "reason")
        if reason is not None:
            forwarded.addElement("reason", content=_text(reason) or None)
        if room.config.password:
            x.addElement("password", content=room.config.password)
        self._emit(message, target)

    def _add_members(self, room: Room, targets: Iterable[str]) -> None:
        changed = False
        for target in targets:
            bare = _bare(target)
            if self._affiliation(room, bare) == "none":
                room.affiliations[bare] = "member"
                changed = True
        if changed:
            self._save(room)

    def _send_decline(self, room: Room, stanza: Element, decline: Element) -> None:
        target = self._address_of(decline)
        message = _new("message", room.jid, None, stanza.getAttribute("id"))
        x = message.addElement((MUC_USER_NS, "x"), defaultUri=MUC_USER_NS)
        forwarded = x.addElement("decline")
        forwarded["from"] = _bare(stanza["from"])
        reason = _child(decline, MUC_USER_NS, "reason")
        if reason is not None:
            forwarded.addElement("reason", content=_text(reason) or None)
        node, host, resource = _jid_parts(target)
        bare = f"{node}@{host}" if node else host
        recipients = [o.jid for o in room.occupants.values() if o.bare == bare]
        for recipient in ([target] if resource or not recipients else recipients):
            self._emit(message, recipient)

    # -- IQs -----------------------------------------------------------------------------

    def _on_iq(self, node: str, nick: str | None, stanza: Element) -> None:
        room = self._rooms.get(node)
        if stanza.getAttribute("type") in ("result", "error"):
            if room is not None and nick is not None:
                self._relay_reply(room, nick, stanza)
            return
        query = self._iq_payload(stanza)
        if query is None:
            return
        if room is None:
            raise StanzaError("item-not-found", text="No such room")
        if nick is not None:
            self._iq_to_occupant(room, nick, stanza, query)
            return
        handler = {
            (DISCO_INFO_NS, "query"): self._disco_info,
            (DISCO_ITEMS_NS, "query"): self._disco_items,
            (MUC_ADMIN_NS, "query"): self._admin,
            (MUC_OWNER_NS, "query"): self._owner,
            (PING_NS, "ping"): self._ping,
        }.get((query.uri, query.name))
        if handler is None:
            raise StanzaError("service-unavailable")
        handler(room, stanza, query)

    def _iq_to_occupant(self, room: Room, nick: str, stanza: Element, query: Element) -> None:
        """Relay an IQ between occupants, remembering where its answer goes."""
        sender, target = self._correspondents(room, nick, stanza)
        if target is sender and (query.uri, query.name) == (PING_NS, "ping"):
            self._result(stanza, None)      # XEP-0410 self-ping
            return
        now = self._clock()
        self._forget_relays(now)
        key = (room.node, sender.nick, target.jid, stanza["id"])
        self._relays[key] = _Relay(sender.jid, target.nick, now + IQ_RELAY_TIMEOUT)
        self._relays.move_to_end(key)
        self._emit(_relay_copy(stanza, sender.address, stanza["type"]), target.jid)

    def _forget_relays(self, now: float) -> None:
        while self._relays:
            relay = next(iter(self._relays.values()))
            if relay.deadline > now and len(self._relays) < IQ_RELAY_MAX:
                break
            self._relays.popitem(last=False)

    def _relay_reply(self, room: Room, nick: str, stanza: Element) -> None:
        """Route the answer to a relayed IQ back to who asked; drop anything unexpected."""
        stanza_id = stanza.getAttribute("id")
        if stanza_id is None:
            return
        relay = self._relays.pop((room.node, nick, stanza["from"], stanza_id), None)
        if relay is None:
            return
        responder = room.by_jid.get(stanza["from"])
        address = responder.address if responder else f"{room.jid}/{relay.target_nick}"
        self._emit(_relay_copy(stanza, address, stanza["type"]), relay.requester)

    def _ping(self, room: Room, stanza: Element, query: Element) -> None:
        self._result(stanza, None)

    def _disco_info(self, room: Room, stanza: Element, query: Element) -> None:
        if stanza["type"] != "get":
            raise StanzaError("bad-request")
        if query.getAttribute("node"):
            raise StanzaError("item-not-found")
        result = Element((DISCO_INFO_NS, "query"), defaultUri=DISCO_INFO_NS)
        identity = result.addElement("identity")
        identity["category"], identity["type"] = "conference", "text"
        identity["name"] = room.config.name or room.node
        for feature in (DISCO_INFO_NS, MUC_NS, MUC_STABLE_ID) + self._room_features(room):
            result.addElement("feature")["var"] = feature
        result.addChild(self._room_info_form(room).toElement())
        self._result(stanza, result)

    @staticmethod
    def _room_features(room: Room) -> tuple[str, ...]:
        config = room.config
        return ("muc_public" if config.public else "muc_hidden",
                "muc_persistent" if config.persistent else "muc_temporary",
                "muc_membersonly" if config.members_only else "muc_open",
                "muc_passwordprotected" if config.password else "muc_unsecured",
                "muc_nonanonymous" if config.whois == "anyone" else "muc_semianonymous",
                "muc_moderated" if config.moderated else "muc_unmoderated")

    def _room_info_form(self, room: Room) -> Form:
        form = Form("result", [
            Field("FORM_TYPE", "hidden", [MUC_ROOMINFO]),
            Field("muc#roominfo_description", None, [room.config.description],
                  label="Description"),
            Field("muc#roominfo_subject", None, [room.subject or ""], label="Subject"),
            Field("muc#roominfo_occupants", None, [str(len(room.occupants))],
                  label="Number of occupants"),
            Field("muc#roomconfig_changesubject", None,
                  ["1" if room.config.change_subject else "0"], label="Subject can be modified"),
            Field("muc#roominfo_meetingId", None, [room.meeting_id], label="The meeting unique id"),
        ])
        for var, value in sorted(room.extra_info.items()):
            form.fields.append(Field(var, None, [value]))
        return form

    def _disco_items(self, room: Room, stanza: Element, query: Element) -> None:
        if stanza["type"] != "get":
            raise StanzaError("bad-request")
        result = Element((DISCO_ITEMS_NS, "query"), defaultUri=DISCO_ITEMS_NS)
        if self._actor(room, stanza).role == "moderator":
            for occupant in room.occupants.values():
                result.addElement("item")["jid"] = occupant.address
        self._result(stanza, result)

    # -- muc#admin -------------------------------------------------------------------------

    def _actor(self, room: Room, stanza: Element) -> _Actor:
        sender = stanza["from"]
        bare = _bare(sender)
        occupant = room.by_jid.get(sender)
        affiliation = self._affiliation(room, bare)
        if occupant is not None:
            role = occupant.role
        else:
            role = "moderator" if affiliation in PRIVILEGED else "none"
        return _Actor(bare, occupant, affiliation, role)

    def _admin(self, room: Room, stanza: Element, query: Element) -> None:
        actor = self._actor(room, stanza)
        items = [c for c in query.elements() if c.uri == MUC_ADMIN_NS and c.name == "item"]
        if not items:
            raise StanzaError("bad-request", text="No item")
        if stanza["type"] == "get":
            self._result(stanza, self._admin_list(room, actor, items[0]))
        else:
            self._admin_set(room, actor, items, stanza)

    def _admin_list(self, room: Room, actor: _Actor, item: Element) -> Element:
        affiliation, role = item.getAttribute("affiliation"), item.getAttribute("role")
        result = Element((MUC_ADMIN_NS, "query"), defaultUri=MUC_ADMIN_NS)
        if affiliation is not None:
            if affiliation not in ("owner", "admin", "member", "outcast"):
                raise StanzaError("bad-request", text="Unknown affiliation")
            if actor.affiliation not in PRIVILEGED:
                raise StanzaError("forbidden")
            nicks = {o.bare: o.nick for o in room.occupants.values()}
            for bare, value in sorted(room.affiliations.items()):
                if value == affiliation:
                    entry = result.addElement("item")
                    entry["affiliation"], entry["jid"] = value, bare
                    if bare in nicks and value != "outcast":
                        entry["nick"] = nicks[bare]
        elif role is not None:
            if role not in ("moderator", "participant", "visitor"):
                raise StanzaError("bad-request", text="Unknown role")
            if actor.role != "moderator":
                raise StanzaError("forbidden")
            for occupant in room.occupants.values():
                if occupant.role == role:
                    entry = result.addElement("item")
                    entry["nick"], entry["role"], entry["jid"] = occupant.nick, role, occupant.jid
                    entry["affiliation"] = self._affiliation(room, occupant.bare)
        else:
            raise StanzaError("bad-request", text="Ask for an affiliation or a role")
        return result

    def _admin_set(self, room: Room, actor: _Actor, items: list[Element],
                   stanza: Element) -> None:
        """Check every item first (all or nothing), then apply them in order."""
        planned: list[Callable[[list[Callable[[], None]]], None]] = []
        simulated = dict(room.affiliations)
        for item in items:
            role, affiliation = item.getAttribute("role"), item.getAttribute("affiliation")
            if (role is None) == (affiliation is None):
                raise StanzaError("bad-request", text="Give a role or an affiliation")
            reason_element = _child(item, MUC_ADMIN_NS, "reason")
            reason = _text(reason_element) if reason_element is not None else None
            if role is not None:
                target = self._check_role(room, actor, item, role)
                planned.append(partial(self._apply_role, room, actor, target, role, reason))
            else:
                bare = self._check_affiliation(room, actor, item, affiliation, simulated)
                planned.append(partial(self._apply_affiliation, room, actor, bare, affiliation,
                                       reason))
        later: list[Callable[[], None]] = []
        for apply in planned:
            apply(later)
        self._result(stanza, None)
        for step in later:
            step()

    def _check_role(self, room: Room, actor: _Actor, item: Element, role: str) -> Occupant:
        if role not in ROLES:
            raise StanzaError("bad-request", text="Unknown role")
        nick = item.getAttribute("nick")
        if not nick:
            raise StanzaError("bad-request", text="Roles are set by nick")
        if actor.role != "moderator":
            raise StanzaError("forbidden")
        target = room.occupants.get(nick)
        if target is None:
            raise StanzaError("item-not-found", text="No such occupant")
        target_affiliation = self._affiliation(room, target.bare)
        if target.bare in self.admins and target.bare != actor.bare and role != "moderator":
            raise StanzaError("not-allowed", text="That occupant is a service admin")
        if role == "moderator" and actor.affiliation not in PRIVILEGED:
            raise StanzaError("forbidden", text="Only admins grant moderator status")
        if target.role == "moderator" and actor.affiliation not in PRIVILEGED:
            raise StanzaError("not-allowed", text="Only admins change a moderator's role")
        if target_affiliation in PRIVILEGED and role in ("participant", "visitor"):
            raise StanzaError("not-allowed", text="Owners and admins keep moderator status")
        if role in ("none", "visitor") and (
                AFFILIATION_RANK[target_affiliation] > AFFILIATION_RANK[actor.affiliation]):
            raise StanzaError("not-allowed", text="That occupant has a higher affiliation")
        return target

    def _apply_role(self, room: Room, actor: _Actor, target: Occupant, role: str,
                    reason: str | None, later: list[Callable[[], None]]) -> None:
        if room.occupants.get(target.nick) is not target:
            return      # removed by an earlier item of the same request
        if role == "none":
            notice = _Notice("unavailable", role="none", payload=[], codes=("307",),
                             actor=actor.occupant or actor.bare, reason=reason)
            self._remove(room, target, notice, later)
        elif role != target.role:
            target.role = role
            later.append(partial(self._broadcast, room, target, _Notice(reason=reason)))

    def _check_affiliation(self, room: Room, actor: _Actor, item: Element, affiliation: str,
                           simulated: dict[str, str]) -> str:
        if affiliation not in AFFILIATION_RANK:
            raise StanzaError("bad-request", text="Unknown affiliation")
        bare = self._item_bare(room, item)
        if actor.affiliation not in PRIVILEGED:
            raise StanzaError("forbidden")
        if bare in self.admins:
            raise StanzaError("not-allowed", text="That user is a service admin")
        current = simulated.get(bare, "none")
        if actor.affiliation != "owner":
            if current in PRIVILEGED:
                raise StanzaError("not-allowed", text="Only owners change owners and admins")
            if affiliation in PRIVILEGED:
                raise StanzaError("forbidden", text="Only owners grant owner or admin")
        if affiliation == "outcast" and bare == actor.bare:
            raise StanzaError("conflict", text="You cannot ban yourself")
        if current == "owner" and affiliation != "owner" and not any(
                value == "owner" for other, value in simulated.items() if other != bare):
            raise StanzaError("conflict", text="A room needs an owner")
        if affiliation == "none":
            simulated.pop(bare, None)
        else:
            simulated[bare] = affiliation
        return bare

    @staticmethod
    def _item_bare(room: Room, item: Element) -> str:
        """The bare JID an affiliation item is about (by 'jid', or by the nick of an occupant)."""
        jid = item.getAttribute("jid")
        if jid:
            return _bare(jid)
        nick = item.getAttribute("nick")
        if not nick:
            raise StanzaError("bad-request", text="Affiliations are set by jid")
        occupant = room.occupants.get(nick)
        if occupant is None:
            raise StanzaError("item-not-found", text="No such occupant")
        return occupant.bare

    def _apply_affiliation(self, room: Room, actor: _Actor, bare: str, affiliation: str,
                           reason: str | None, later: list[Callable[[], None]]) -> None:
        gained = AFFILIATION_RANK[affiliation] > AFFILIATION_RANK[self._affiliation(room, bare)]
        if affiliation == "none":
            room.affiliations.pop(bare, None)
        else:
            room.affiliations[bare] = affiliation
        self._save(room)
        by = actor.occupant or actor.bare
        for occupant in [o for o in room.occupants.values() if o.bare == bare]:
            if affiliation == "outcast":
                self._remove(room, occupant, _Notice("unavailable", role="none", payload=[],
                                                     codes=("301",), actor=by, reason=reason),
                             later)
            elif room.config.members_only and affiliation == "none":
                self._remove(room, occupant, _Notice("unavailable", role="none", payload=[],
                                                     codes=("321",), actor=by, reason=reason),
                             later)
            else:
                role = self._default_role(room, affiliation)
                if not gained or ROLE_RANK[role] > ROLE_RANK[occupant.role]:
                    occupant.role = role    # gaining never lowers a role (§5.1.3)
                later.append(partial(self._broadcast, room, occupant, _Notice(reason=reason)))

    # -- muc#owner -------------------------------------------------------------------------

    def _owner(self, room: Room, stanza: Element, query: Element) -> None:
        if self._affiliation(room, _bare(stanza["from"])) != "owner":
            raise StanzaError("forbidden", text="Only owners configure a room")
        if stanza["type"] == "get":
            result = Element((MUC_OWNER_NS, "query"), defaultUri=MUC_OWNER_NS)
            result.addChild(self._config_form(room).toElement())
            self._result(stanza, result)
            return
        destroy = _child(query, MUC_OWNER_NS, "destroy")
        if destroy is not None:
            self._destroy_request(room, stanza, destroy)
            return
        x = _child(query, DATA_NS, "x")
        if x is None:
            raise StanzaError("bad-request", text="Expected a data form or <destroy/>")
        try:
            form = Form.fromElement(x)
        except ValueError as e:
            raise StanzaError("bad-request", text=str(e)[:200]) from None
        if form.type == "cancel":
            self._result(stanza, None)
        elif form.type == "submit":
            self._configure(room, stanza, form)
        else:
            raise StanzaError("bad-request", text="Submit or cancel the form")

    def _config_form(self, room: Room) -> Form:
        config = room.config

        def flag(var: str, label: str, value: bool) -> Field:
            return Field(var, "boolean", ["1" if value else "0"], label=label)

        sizes = ["10", "20", "30", "50", "100", "none"]
        current_size = str(config.max_occupants) if config.max_occupants else "none"
        if current_size not in sizes:
            sizes.insert(0, current_size)
        return Form("form", title=f"Configuration of {room.jid}", fields=[
            Field("FORM_TYPE", "hidden", [MUC_ROOMCONFIG]),
            Field("muc#roomconfig_roomname", "text-single", [config.name], label="Name"),
            Field("muc#roomconfig_roomdesc", "text-single", [config.description],
                  label="Description"),
            flag("muc#roomconfig_persistentroom", "Persistent", config.persistent),
            flag("muc#roomconfig_publicroom", "Listed in the directory", config.public),
            flag("muc#roomconfig_moderatedroom", "Moderated", config.moderated),
            flag("muc#roomconfig_membersonly", "Members only", config.members_only),
            flag("muc#roomconfig_passwordprotectedroom", "Password protected",
                 bool(config.password)),
            Field("muc#roomconfig_roomsecret", "text-private", [config.password],
                  label="Password"),
            Field("muc#roomconfig_maxusers", "list-single", [current_size],
                  label="Maximum number of occupants",
                  options=[Option(size, size.capitalize()) for size in sizes]),
            Field("muc#roomconfig_whois", "list-single", [config.whois],
                  label="Who may discover real JIDs",
                  options=[Option("moderators", "Moderators only"), Option("anyone", "Anyone")]),
            flag("muc#roomconfig_changesubject", "Occupants may change the subject",
                 config.change_subject),
            flag("muc#roomconfig_allowinvites", "Occupants may invite", config.allow_invites),
            Field("muc#roomconfig_historylength", "text-single", [str(config.history_size)],
                  label="Messages of history kept"),
        ])

    def _configure(self, room: Room, stanza: Element, form: Form) -> None:
        old = room.config
        new = _apply_form(old, form)
        room.config = new
        room.trim_history()
        self._result(stanza, None)
        if new == old:
            return
        codes = ["104"]
        if new.whois != old.whois:
            codes.append("172" if new.whois == "anyone" else "173")
        notice = _new("message", room.jid, "groupchat", str(uuid.uuid4()))
        x = notice.addElement((MUC_USER_NS, "x"), defaultUri=MUC_USER_NS)
        for code in codes:
            x.addElement("status")["code"] = code
        for occupant in list(room.occupants.values()):
            self._emit(notice, occupant.jid)
        if new.members_only and not old.members_only:
            for occupant in list(room.occupants.values()):
                if AFFILIATION_RANK[self._affiliation(room, occupant.bare)] < 1:
                    self._remove(room, occupant, _Notice("unavailable", role="none", payload=[],
                                                         codes=("322",)))
        if new.members_only != old.members_only and self.lobby is not None:
            self.lobby.room_changed(room)
        if new.persistent:
            self._save(room)
        elif old.persistent:
            self._delete_stored(room)
        self._close_if_empty(room)

    def _destroy_request(self, room: Room, stanza: Element, destroy: Element) -> None:
        alternate = destroy.getAttribute("jid")
        if alternate:
            _jid_parts(alternate)
        reason = _child(destroy, MUC_OWNER_NS, "reason")
        password = _child(destroy, MUC_OWNER_NS, "password")
        self._destroy(room, _text(reason) if reason is not None else None, alternate,
                      _text(password) if password is not None else None)
        self._result(stanza, None)

    def _destroy(self, room: Room, reason: str | None, alternate: str | None,
                 password: str | None) -> None:
        destroy = Element((MUC_USER_NS, "destroy"), defaultUri=MUC_USER_NS)
        if alternate:
            destroy["jid"] = alternate
        if reason is not None:
            destroy.addElement("reason", content=reason or None)
        if password is not None:
            destroy.addElement("password", content=password or None)
        for occupant in list(room.occupants.values()):
            notice = _Notice("unavailable", affiliation="none", role="none", payload=[],
                             destroy=destroy)
            self._emit(self._presence(room, occupant, False, notice, ("110",)), occupant.jid)
        room.occupants.clear()
        room.by_jid.clear()
        if self._rooms.get(room.node) is room:
            del self._rooms[room.node]
            self._closed(room)
        if room.config.persistent:
            self._delete_stored(room)

    # -- state -----------------------------------------------------------------------------

    def _affiliation(self, room: Room, bare: str) -> str:
        if bare in self.admins:
            return "owner"
        return room.affiliations.get(bare, "none")

    @staticmethod
    def _default_role(room: Room, affiliation: str) -> str:
        """XEP-0045 §5.1.2: the role an affiliation enters with."""
        if affiliation in PRIVILEGED:
            return "moderator"
        if affiliation == "member" or not room.config.moderated:
            return "participant"
        return "visitor"

    def _load(self) -> None:
        try:
            states = self.store.load_rooms(self.domain)
        except Exception:
            log.failure("MUC {domain}: could not load rooms", domain=self.domain)
            return
        for node, state in states.items():
            try:
                normal, _, _ = _jid_parts(f"{node}@{self.domain}")
                if normal is None or not isinstance(state, dict):
                    raise ValueError("bad room")
                room = Room(normal, self.domain, RoomConfig.from_defaults(self.defaults),
                            self._clock())
                room.restore(copy.deepcopy(state))
                room.config.persistent = True
                self._rooms[normal] = room
            except Exception:
                log.failure("MUC {domain}: skipped stored room {node!r}", domain=self.domain,
                            node=node)

    def _save(self, room: Room) -> None:
        if not room.config.persistent:
            return
        try:
            self.store.save_room(self.domain, room.node, room.state())
        except Exception:
            log.failure("MUC {domain}: could not save {node}", domain=self.domain, node=room.node)

    def _delete_stored(self, room: Room) -> None:
        try:
            self.store.delete_room(self.domain, room.node)
        except Exception:
            log.failure("MUC {domain}: could not delete {node}", domain=self.domain,
                        node=room.node)


# -- room configuration from a submitted form -----------------------------------------------

_TEXT_FIELDS = {"muc#roomconfig_roomname": "name", "muc#roomconfig_roomdesc": "description"}
_FLAG_FIELDS = {
    "muc#roomconfig_persistentroom": "persistent",
    "muc#roomconfig_publicroom": "public",
    "muc#roomconfig_moderatedroom": "moderated",
    "muc#roomconfig_membersonly": "members_only",
    "muc#roomconfig_changesubject": "change_subject",
    "muc#roomconfig_allowinvites": "allow_invites",
}


def _apply_form(config: RoomConfig, form: Form) -> RoomConfig:
    """``config`` changed as a submitted muc#roomconfig form says; StanzaError if it can't be.

    Fields without a value keep their setting (XEP-0004 §3.5: incomplete submissions).
    """
    new = dataclasses.replace(config)
    for var, name in _TEXT_FIELDS.items():
        value = form.value(var)
        if value is not None:
            setattr(new, name, value)
    for var, name in _FLAG_FIELDS.items():
        flag = _flag(form, var)
        if flag is not None:
            setattr(new, name, flag)
    whois = form.value("muc#roomconfig_whois")
    if whois:
        if whois not in ("anyone", "moderators"):
            raise StanzaError("not-acceptable", text="whois is 'anyone' or 'moderators'")
        new.whois = whois
    maxusers = form.value("muc#roomconfig_maxusers")
    if maxusers:
        new.max_occupants = 0 if maxusers == "none" else _number(maxusers, "maxusers")
    history = form.value("muc#roomconfig_historylength")
    if history:
        new.history_size = min(MAX_HISTORY, _number(history, "historylength"))
    secret = form.value("muc#roomconfig_roomsecret")
    if secret is not None:
        new.password = secret
    protected = _flag(form, "muc#roomconfig_passwordprotectedroom")
    if protected is False:
        new.password = ""
    elif protected and not new.password:
        raise StanzaError("not-acceptable", text="A password-protected room needs a password")
    return new


def _flag(form: Form, var: str) -> bool | None:
    value = form.value(var)
    if not value:
        return None
    try:
        return parse_bool(value)
    except ValueError:
        raise StanzaError("bad-request", text=f"{var} is a boolean") from None


def _number(value: str, name: str) -> int:
    if not value.strip().isdigit():
        raise StanzaError("not-acceptable", text=f"{name} is a non-negative number")
    return int(value)
