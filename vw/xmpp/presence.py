"""Presence broadcast and subscriptions (RFC 6121 §3 and §4), over the router and rosters."""

from __future__ import annotations

from dataclasses import replace

from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError
from vw.xmpp.roster import Rosters
from vw.xmpp.router import Router
from vw.xmpp.session import Session
from vw.xmpp.stanzas import copy_element, parse_jid, stanza

SUBSCRIPTION_TYPES = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")
#: Subscriptions under which the owner's presence goes to the contact.
SHARES_TO_CONTACT = ("from", "both")
#: Subscriptions under which the owner receives the contact's presence.
RECEIVES_FROM_CONTACT = ("to", "both")


class Presence:
    """Handles every presence stanza: outbound from sessions and inbound to local users."""

    def __init__(self, router: Router, rosters: Rosters) -> None:
        self._router = router
        self._rosters = rosters
        router.presence_handler = self
        rosters.on_remove = self._cancel_both_ways

    # -- outbound (from a session of ours) ----------------------------------

    def outbound(self, session: Session, presence: Element) -> None:
        presence_type = presence.getAttribute("type", "available")
        to = presence.getAttribute("to")
        if presence_type in SUBSCRIPTION_TYPES:
            if not to:
                raise StanzaError("bad-request", text="subscription requests need a recipient")
            self._outbound_subscription(session, parse_jid(to).userhostJID(), presence_type)
        elif to:
            self._directed(session, presence, presence_type)
        elif presence_type in ("available", "unavailable"):
            self._broadcast(session, presence, presence_type)
        elif presence_type != "error":
            raise StanzaError("bad-request", text=f"unexpected presence type {presence_type}")

    def _directed(self, session: Session, presence: Element, presence_type: str) -> None:
        to = presence["to"]
        if presence_type == "available":
            session.directed.add(to)
        elif presence_type == "unavailable":
            session.directed.discard(to)
        self._router.route(presence, session)

    def _broadcast(self, session: Session, presence: Element, presence_type: str) -> None:
        initial = not session.available and presence_type == "available"
        if presence_type == "available":
            session.available = True
            session.priority = _priority(presence)
            session.presence = copy_element(presence)
        else:
            session.available = False
            session.presence = None
        for contact in self._contacts(session.bare, SHARES_TO_CONTACT):
            self._send_copy(presence, contact)
        for other in self._router.resources(session.bare):
            if other.available or other is session:
                self._send_copy(presence, other.full, deliver_to=other)
        if presence_type == "unavailable":
            for to in sorted(session.directed):
                self._send_copy(presence, to)
            session.directed.clear()
        if initial:
            self._after_initial_presence(session)

    def _after_initial_presence(self, session: Session) -> None:
        for contact in self._contacts(session.bare, RECEIVES_FROM_CONTACT):
            probe = stanza("presence", to=contact, sender=session.full, stanza_type="probe")
            self._router.route(probe, session)
        for other in self._router.resources(session.bare):
            if other is not session and other.available and other.presence is not None:
                self._send_copy(other.presence, session.full, deliver_to=session)
        for item in self._rosters.items(session.bare).values():
            if item.pending_in:
                request = stanza("presence", to=session.bare, sender=item.jid,
                                 stanza_type="subscribe")
                session.deliver(request)

    def session_ended(self, session: Session) -> None:
        """The session is gone: tell everyone who saw it available."""
        if session.available or session.directed:
            gone = stanza("presence", sender=session.full, stanza_type="unavailable")
            self._broadcast(session, gone, "unavailable")

    def _contacts(self, owner: str, subscriptions: tuple[str, ...]) -> list[str]:
        items = self._rosters.items(owner).values()
        return [item.jid for item in items if item.subscription in subscriptions]

    def _send_copy(self, presence: Element, to: str, deliver_to: Session | None = None) -> None:
        copy = copy_element(presence)
        copy["to"] = to
        if deliver_to is not None:
            deliver_to.deliver(copy)
        else:
            self._router.route(copy)

    # -- subscriptions --------------------------------------------------------

    def _outbound_subscription(self, session: Session, contact: JID, kind: str) -> None:
        owner = session.bare
        target = contact.full()
        item = self._rosters.item(owner, target)
        if kind == "subscribe":
            if item.subscription not in RECEIVES_FROM_CONTACT:
                self._rosters.update(owner, replace(item, ask=True, hidden=False))
        elif kind == "subscribed":
            if item.pending_in or item.subscription in ("none", "to"):
                self._rosters.update(owner, replace(item, pending_in=False, hidden=False,
                                                    subscription=_add(item.subscription, "from")))
            for own in self._router.resources(owner):
                if own.available and own.presence is not None:
                    self._send_copy(own.presence, target)
        elif kind == "unsubscribe":
            self._rosters.update(owner, replace(item, ask=False,
                                                subscription=_drop(item.subscription, "to")))
        elif kind == "unsubscribed":
            self._rosters.update(owner, replace(item, pending_in=False,
                                                subscription=_drop(item.subscription, "from")))
            for own in self._router.resources(owner):
                if own.available:
                    gone = stanza("presence", to=target, sender=own.full, stanza_type="unavailable")
                    self._router.route(gone)
        request = stanza("presence", to=target, sender=owner, stanza_type=kind)
        self._router.route(request, session)

    def _cancel_both_ways(self, session: Session, contact: str) -> None:
        item = self._rosters.item(session.bare, contact)
        if item.subscription in RECEIVES_FROM_CONTACT or item.ask:
            self._outbound_subscription(session, parse_jid(contact), "unsubscribe")
        if item.subscription in SHARES_TO_CONTACT or item.pending_in:
            self._outbound_subscription(session, parse_jid(contact), "unsubscribed")

    # -- inbound (to a local user) ----------------------------------------------

    def inbound_to_resource(self, session: Session, presence: Element) -> bool:
        """Probes to a full JID are answered here; True when consumed."""
        if presence.getAttribute("type") == "probe":
            self._answer_probe(parse_jid(session.bare), presence)
            return True
        return False

    def inbound_to_bare(self, jid: JID, presence: Element,
                        resources: dict[str, Session]) -> None:
        kind = presence.getAttribute("type", "available")
        owner = jid.userhost()
        sender = parse_jid(presence.getAttribute("from", "")).userhost()
        if kind == "probe":
            self._answer_probe(jid, presence)
            return
        if kind not in SUBSCRIPTION_TYPES:
            for session in resources.values():
                if session.available or kind == "error":
                    session.deliver(presence)
            return
        if not resources and not self._router.account_exists(jid.user or "", jid.host):
            return
        item = self._rosters.item(owner, sender)
        if kind == "subscribe":
            if item.subscription in SHARES_TO_CONTACT:
                self._router.route(stanza("presence", to=sender, sender=owner,
                                          stanza_type="subscribed"))
                return
            self._rosters.update(owner, replace(item, pending_in=True), push=False)
        elif kind == "subscribed":
            if not item.ask:
                return
            self._rosters.update(owner, replace(item, ask=False,
                                                subscription=_add(item.subscription, "to")))
        elif kind == "unsubscribe":
            if item.subscription not in SHARES_TO_CONTACT and not item.pending_in:
                return
            self._rosters.update(owner, replace(item, pending_in=False,
                                                subscription=_drop(item.subscription, "from")))
        elif kind == "unsubscribed":
            if item.subscription not in RECEIVES_FROM_CONTACT and not item.ask:
                return
            self._rosters.update(owner, replace(item, ask=False,
                                                subscription=_drop(item.subscription, "to")))
        for session in resources.values():
            if session.available:
                session.deliver(presence)

    def _answer_probe(self, jid: JID, probe: Element) -> None:
        prober = parse_jid(probe.getAttribute("from", ""))
        item = self._rosters.item(jid.userhost(), prober.userhost())
        if item.subscription not in SHARES_TO_CONTACT:
            return
        for session in self._router.resources(jid.userhost()):
            if session.available and session.presence is not None:
                answer = copy_element(session.presence)
                answer["from"] = session.full
                answer["to"] = prober.full()
                self._router.route(answer)


def _priority(presence: Element) -> int:
    for child in presence.elements(presence.uri, "priority"):
        try:
            return max(-128, min(127, int(str(child))))
        except ValueError:
            raise StanzaError("bad-request", text="priority must be an integer") from None
    return 0


def _add(subscription: str, direction: str) -> str:
    has = {"none": set(), "to": {"to"}, "from": {"from"}, "both": {"to", "from"}}[subscription]
    return _name(has | {direction})


def _drop(subscription: str, direction: str) -> str:
    has = {"none": set(), "to": {"to"}, "from": {"from"}, "both": {"to", "from"}}[subscription]
    return _name(has - {direction})


def _name(directions: set[str]) -> str:
    if directions == {"to", "from"}:
        return "both"
    return next(iter(directions), "none")

