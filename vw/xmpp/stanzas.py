"""Small helpers for building and reading stanzas as domish Elements."""

from __future__ import annotations

from twisted.words.protocols.jabber.jid import JID, InvalidFormat, internJID
from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError

CLIENT_NS = "jabber:client"
STREAMS_NS = "http://etherx.jabber.org/streams"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS_NS = "http://jabber.org/protocol/disco#items"


def parse_jid(text: str) -> JID:
    """A JID from a stanza attribute, or a jid-malformed stanza error."""
    try:
        return internJID(text)
    except (InvalidFormat, UnicodeError, ValueError) as e:
        raise StanzaError("jid-malformed", text=str(e)[:100]) from None


def stanza(name: str, to: str | None = None, sender: str | None = None,
           stanza_type: str | None = None, stanza_id: str | None = None) -> Element:
    """A jabber:client stanza element with the given addressing."""
    element = Element((CLIENT_NS, name))
    for key, value in (("to", to), ("from", sender), ("type", stanza_type), ("id", stanza_id)):
        if value is not None:
            element[key] = value
    return element


def iq_result(iq: Element, payload: Element | None = None) -> Element:
    """The result reply to ``iq`` (addressed back to its sender)."""
    reply = stanza("iq", to=iq.getAttribute("from"), sender=iq.getAttribute("to"),
                   stanza_type="result", stanza_id=iq.getAttribute("id"))
    if payload is not None:
        reply.addChild(payload)
    return reply


def first_child(element: Element) -> Element | None:
    """The first child element, ignoring text."""
    for child in element.elements():
        return child
    return None


def copy_element(element: Element) -> Element:
    """A deep copy of a domish element."""
    clone = Element((element.uri, element.name), defaultUri=element.defaultUri,
                    attribs=dict(element.attributes), localPrefixes=element.localPrefixes)
    for child in element.children:
        clone.addChild(copy_element(child) if isinstance(child, Element) else child)
    return clone
