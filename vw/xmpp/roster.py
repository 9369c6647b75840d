"""Rosters (RFC 6121 §2): items as plain data, a store protocol, and the roster IQ handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError
from vw.xmpp.session import Session
from vw.xmpp.stanzas import parse_jid, stanza

ROSTER_NS = "jabber:iq:roster"
MAX_ITEMS = 1000


@dataclass(frozen=True)
class RosterItem:
    jid: str
    name: str = ""
    subscription: str = "none"  # none | to | from | both
    ask: bool = False  # an outbound subscription request is pending
    groups: tuple[str, ...] = ()
    #: An inbound subscription request awaits the owner's answer.
    pending_in: bool = False
    #: Only a pending inbound request, not yet a roster item the owner sees.
    hidden: bool = False

    @classmethod
    def fromElement(cls, element: Element) -> RosterItem:
        jid = parse_jid(element.getAttribute("jid", ""))
        if jid.resource is not None:
            raise StanzaError("bad-request", text="roster items are bare JIDs")
        groups = tuple(str(g) for g in element.elements(ROSTER_NS, "group"))
        if len(set(groups)) != len(groups) or any(not g for g in groups):
            raise StanzaError("bad-request", text="duplicate or empty group")
        return cls(jid=jid.full(), name=element.getAttribute("name", ""), groups=groups)

    def toElement(self) -> Element:
        item = Element((ROSTER_NS, "item"))
        item["jid"] = self.jid
        item["subscription"] = self.subscription
        if self.name:
            item["name"] = self.name
        if self.ask:
            item["ask"] = "subscribe"
        for group in self.groups:
            item.addElement("group", content=group)
        return item


class RosterStore(Protocol):
    def roster(self, owner: str) -> dict[str, RosterItem]: ...
    def put(self, owner: str, item: RosterItem) -> None: ...
    def remove(self, owner: str, contact: str) -> None: ...


@dataclass
class MemoryRosterStore:
    """Rosters kept in memory (anonymous guests, tests)."""

    rosters: dict[str, dict[str, RosterItem]] = field(default_factory=dict)

    def roster(self, owner: str) -> dict[str, RosterItem]:
        return dict(self.rosters.get(owner, {}))

    def put(self, owner: str, item: RosterItem) -> None:
        self.rosters.setdefault(owner, {})[item.jid] = item

    def remove(self, owner: str, contact: str) -> None:
        self.rosters.get(owner, {}).pop(contact, None)

    def forget(self, owner: str) -> None:
        self.rosters.pop(owner, None)


class Rosters:
    """Roster reads, writes and pushes, over the right store for each owner."""

    def __init__(self, durable: RosterStore, volatile: MemoryRosterStore,
                 is_durable: Callable[[str], bool],
                 resources: Callable[[str], list[Session]]) -> None:
        self._durable = durable
        self._volatile = volatile
        self._is_durable = is_durable
        self._resources = resources

    def _store(self, owner: str) -> RosterStore:
        return self._durable if self._is_durable(owner) else self._volatile

    def items(self, owner: str) -> dict[str, RosterItem]:
        return self._store(owner).roster(owner)

    def item(self, owner: str, contact: str) -> RosterItem:
        return self.items(owner).get(contact) or RosterItem(jid=contact, hidden=True)

    def update(self, owner: str, item: RosterItem, push: bool = True) -> None:
        """Store ``item`` and push it to the owner's interested resources."""
        self._store(owner).put(owner, item)
        if push and not item.hidden:
            self._push(owner, item.toElement())

    def remove(self, owner: str, contact: str) -> None:
        self._store(owner).remove(owner, contact)
        removed = RosterItem(jid=contact, subscription="remove").toElement()
        self._push(owner, removed)

    def _push(self, owner: str, item: Element) -> None:
        for session in self._resources(owner):
            if session.interested:
                push = stanza("iq", to=session.full, stanza_type="set",
                              stanza_id=f"push-{id(item):x}")
                push.addElement((ROSTER_NS, "query")).addChild(item)
                session.deliver(push)

    # -- the jabber:iq:roster handler ----------------------------------------

    def handle_iq(self, jid: JID, iq: Element, origin: Session | None) -> Element | None:
        if origin is None:
            raise StanzaError("forbidden")
        owner = origin.bare
        if iq["type"] == "get":
            origin.interested = True
            query = Element((ROSTER_NS, "query"))
            for item in self.items(owner).values():
                if not item.hidden:
                    query.addChild(item.toElement())
            return query
        query = next(iter(iq.elements()))
        items = list(query.elements(ROSTER_NS, "item"))
        if len(items) != 1:
            raise StanzaError("bad-request", text="a roster set holds exactly one item")
        element = items[0]
        if element.getAttribute("subscription") == "remove":
            contact = parse_jid(element.getAttribute("jid", "")).userhost()
            if contact not in self.items(owner):
                raise StanzaError("item-not-found")
            if self.on_remove is not None:
                self.on_remove(origin, contact)
            self.remove(owner, contact)
            return None
        wanted = RosterItem.fromElement(element)
        if wanted.jid == owner:
            raise StanzaError("not-allowed", text="a roster does not list its owner")
        current = self.items(owner)
        if wanted.jid not in current and len(current) >= MAX_ITEMS:
            raise StanzaError("not-allowed", text="roster full")
        existing = self.item(owner, wanted.jid)
        self.update(owner, replace(existing, name=wanted.name, groups=wanted.groups,
                                   hidden=False))
        return None

    #: Called before a contact is removed, to cancel subscriptions both ways.
    on_remove: Callable[[Session, str], None] | None = None
