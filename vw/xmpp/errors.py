"""XMPP errors: stream errors (RFC 6120 §4.9) and stanza errors (§8.3), as data."""

from __future__ import annotations

from twisted.words.xish.domish import Element

STREAMS_NS = "http://etherx.jabber.org/streams"
STREAM_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-streams"
JITMEET_NS = "http://jitsi.org/jitmeet"
STANZA_ERRORS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"

#: The default error type of each stanza error condition (RFC 6120 §8.3.3).
DEFAULT_TYPES = {
    "bad-request": "modify", "conflict": "cancel", "feature-not-implemented": "cancel",
    "forbidden": "auth", "gone": "cancel", "internal-server-error": "cancel",
    "item-not-found": "cancel", "jid-malformed": "modify", "not-acceptable": "modify",
    "not-allowed": "cancel", "not-authorized": "auth", "policy-violation": "modify",
    "recipient-unavailable": "wait", "redirect": "modify", "registration-required": "auth",
    "remote-server-not-found": "cancel", "remote-server-timeout": "wait",
    "resource-constraint": "wait", "service-unavailable": "cancel",
    "subscription-required": "auth", "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class StreamError(Exception):
    """A stream-level error: the stream is closed after it is sent."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text

    def to_element(self) -> Element:
        error = Element((STREAMS_NS, "error"))
        error.addElement((STREAM_ERRORS_NS, self.condition))
        if self.text:
            error.addElement((STREAM_ERRORS_NS, "text"), content=self.text)
        return error


class StanzaError(Exception):
    """A stanza-level error, turned into an error reply in one place (``error_reply``)."""

    def __init__(self, condition: str, error_type: str | None = None, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.error_type = error_type or DEFAULT_TYPES.get(condition, "cancel")
        self.text = text

    def to_element(self) -> Element:
        error = Element((None, "error"))
        error["type"] = self.error_type
        error.addElement((STANZA_ERRORS_NS, self.condition))
        if self.text:
            error.addElement((STANZA_ERRORS_NS, "text"), content=self.text)
        return error

    def payload(self) -> list[Element]:
        """Children of the error reply beside ``<error/>`` (none by default)."""
        return []


class ReservationError(StanzaError):
    """Jitsi's ``<reservation-error error-code/>``: this conference may not be started here.
    lib-jitsi-meet gives up and reports it (other errors to its conference request make it
    retry forever)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__("not-allowed", text=text)
        self.code = code

    def to_element(self) -> Element:
        error = super().to_element()
        error.addElement(("http://jitsi.org/protocol/focus", "reservation-error"))[
            "error-code"] = str(self.code)
        return error


def error_reply(stanza: Element, error: StanzaError, sender: str | None = None) -> Element | None:
    """The error reply to ``stanza``, or None when it must not be answered (errors, results)."""
    if stanza.getAttribute("type") in ("error", "result"):
        return None
    reply = Element((stanza.uri, stanza.name))
    reply.defaultUri = stanza.uri
    reply["type"] = "error"
    if stanza.hasAttribute("id"):
        reply["id"] = stanza["id"]
    if stanza.hasAttribute("from"):
        reply["to"] = stanza["from"]
    origin = sender if sender is not None else stanza.getAttribute("to")
    if origin:
        reply["from"] = origin
    if stanza.name == "iq":
        for child in stanza.elements():
            reply.addChild(child)
            break
    error = error.to_element()
    error.uri = error.defaultUri = stanza.uri
    reply.addChild(error)
    return reply


class LobbyRequired(StanzaError):
    """Jitsi's answer to a non-member joining a members-only room that has a lobby: the
    lobby room's JID inside ``<error/>`` and beside it (lib-jitsi-meet reads the latter)."""

    def __init__(self, lobby: str) -> None:
        super().__init__("registration-required", "auth", "This room is members-only")
        self.lobby = lobby

    def _lobbyroom(self) -> Element:
        element = Element((JITMEET_NS, "lobbyroom"), defaultUri=JITMEET_NS)
        element.addContent(self.lobby)
        return element

    def to_element(self) -> Element:
        error = super().to_element()
        error.addChild(self._lobbyroom())
        return error

    def payload(self) -> list[Element]:
        return [self._lobbyroom()]
