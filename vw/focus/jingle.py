"""Jingle (XEP-0166) between the focus and lib-jitsi-meet, as plain data (parse from / build to
domish).

Shapes are those of ``/work/shared/PROTOCOL.md`` §4: RTP descriptions (XEP-0167) with
source-specific media attributes (XEP-0339), ICE-UDP transports (XEP-0176) with DTLS fingerprints
(XEP-0320) and Jitsi's ``<web-socket/>``, the BUNDLE group (XEP-0338) and Jitsi's
``<bridge-session/>`` and ``<ice-state/>``. The RTP and transport parts are the Colibri2 models
of :mod:`vw.bridge.colibri2`, which share these namespaces.

Every child lives in its own namespace and ``toElement`` gives each element a default namespace,
so both serialisers (``Element.toXml`` and :func:`vw.xmpp.serializer.serialize`) write a literal
``xmlns`` on ``source``, ``ssrc-group``, ``rtp-hdrext``, ``rtcp-fb``, ``fingerprint``,
``transport``, ``group``, ``ssrc-info`` and ``bridge-session`` and never a prefix: the client
matches them with jQuery on that attribute's text (PROTOCOL.md §8.4).

Malformed input raises ``ValueError`` (the caller answers ``bad-request``); lists are bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.words.xish.domish import Element

from vw.bridge.colibri2 import (
    COLIBRI_NS,
    DTLS_NS,
    ICE_UDP_NS,
    MAX_SSRC,
    RTCP_FB_NS,
    RTP_HDREXT_NS,
    RTP_NS,
    SSMA_NS,
    HeaderExtension,
    IceUdpTransport,
    PayloadType,
    RtcpFeedback,
    Source,
    SourceGroup,
    _children,
    _choice,
    _expect,
    _first,
    _int,
    _new,
    _opt_bool,
    _required,
    _set,
    _text,
)
from vw.xmpp.errors import StanzaError, error_reply

JINGLE_NS = "urn:xmpp:jingle:1"
JINGLE_ERRORS_NS = "urn:xmpp:jingle:errors:1"
GROUPING_NS = "urn:xmpp:jingle:apps:grouping:0"
FOCUS_NS = "http://jitsi.org/protocol/focus"

#: XEP-0166 §7.2 actions, plus Jitsi's source-add and source-remove.
ACTIONS = frozenset({
    "content-accept", "content-add", "content-modify", "content-reject", "content-remove",
    "description-info", "security-info", "session-accept", "session-info", "session-initiate",
    "session-terminate", "transport-accept", "transport-info", "transport-reject",
    "transport-replace", "source-add", "source-remove",
})
#: XEP-0166 §7.4 reason conditions.
REASONS = frozenset({
    "alternative-session", "busy", "cancel", "connectivity-error", "decline", "expired",
    "failed-application", "failed-transport", "general-error", "gone", "incompatible-parameters",
    "media-error", "security-error", "success", "timeout", "unsupported-applications",
    "unsupported-transports",
})
CREATORS = frozenset({"initiator", "responder"})
#: ``rejected`` is lib-jitsi-meet's marker for a port-0 m-line.
SENDERS = frozenset({"both", "initiator", "responder", "none", "rejected"})
MEDIA = frozenset({"audio", "video", "application"})
#: The Jingle error conditions (XEP-0166 §10) and the stanza error each goes with.
JINGLE_ERRORS = {
    "out-of-order": "unexpected-request",
    "tie-break": "conflict",
    "unknown-session": "item-not-found",
    "unsupported-info": "feature-not-implemented",
}

MAX_CONTENTS = 16
MAX_PAYLOAD_TYPES = 64
MAX_HEADER_EXTENSIONS = 32
MAX_FEEDBACK = 32
MAX_SOURCES = 64
MAX_SOURCE_GROUPS = 64
MAX_CANDIDATES = 64
MAX_FINGERPRINTS = 8
MAX_WEB_SOCKETS = 8
MAX_GROUPS = 8


def _limited(element: Element, uri: str, name: str, limit: int) -> list[Element]:
    """The ``name`` children in ``uri``, or ValueError when there are more than ``limit``."""
    found = list(_children(element, uri, name))
    if len(found) > limit:
        raise ValueError(f"<{element.name}/> has more than {limit} <{name}/>")
    return found


def _transport(element: Element) -> IceUdpTransport:
    """An ICE-UDP transport, with its candidate and fingerprint counts bounded first."""
    for uri, name, limit in ((ICE_UDP_NS, "candidate", MAX_CANDIDATES),
                             (DTLS_NS, "fingerprint", MAX_FINGERPRINTS),
                             (COLIBRI_NS, "web-socket", MAX_WEB_SOCKETS)):
        _limited(element, uri, name, limit)
    return IceUdpTransport.fromElement(element)


@dataclass
class RtpDescription:
    """``<description xmlns="urn:xmpp:jingle:apps:rtp:1" media ssrc>`` (XEP-0167).

    ``rtcp_fbs`` are description-level (``a=rtcp-fb:*``); ``rtcp_mux`` is ``<rtcp-mux/>``, the only
    place lib-jitsi-meet takes ``a=rtcp-mux`` from. ``<source rid>`` without an SSRC (Firefox's
    RID simulcast) is skipped.
    """

    media: str
    ssrc: int | None = None
    payload_types: list[PayloadType] = field(default_factory=list)
    header_extensions: list[HeaderExtension] = field(default_factory=list)
    rtcp_fbs: list[RtcpFeedback] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)
    groups: list[SourceGroup] = field(default_factory=list)
    rtcp_mux: bool = False

    @classmethod
    def fromElement(cls, element: Element) -> RtpDescription:
        _expect(element, RTP_NS, "description")
        media = _choice(element, "media", MEDIA, required=True)
        assert media is not None
        return cls(
            media=media,
            ssrc=_int(element, "ssrc", 0, MAX_SSRC),
            payload_types=[PayloadType.fromElement(c) for c in _limited(
                element, RTP_NS, "payload-type", MAX_PAYLOAD_TYPES)],
            header_extensions=[HeaderExtension.fromElement(c) for c in _limited(
                element, RTP_HDREXT_NS, "rtp-hdrext", MAX_HEADER_EXTENSIONS)],
            rtcp_fbs=[RtcpFeedback.fromElement(c) for c in _limited(
                element, RTCP_FB_NS, "rtcp-fb", MAX_FEEDBACK)],
            sources=[Source.fromElement(c) for c in _limited(
                element, SSMA_NS, "source", MAX_SOURCES)
                if c.hasAttribute("ssrc") or not c.hasAttribute("rid")],
            groups=[SourceGroup.fromElement(c) for c in _limited(
                element, SSMA_NS, "ssrc-group", MAX_SOURCE_GROUPS)],
            rtcp_mux=_first(element, RTP_NS, "rtcp-mux") is not None,
        )

    def toElement(self) -> Element:
        element = _new(RTP_NS, "description")
        element["media"] = self.media
        _set(element, "ssrc", self.ssrc)
        for child in (*self.payload_types, *self.header_extensions, *self.rtcp_fbs,
                      *self.sources, *self.groups):
            element.addChild(child.toElement())
        if self.rtcp_mux:
            element.addElement("rtcp-mux")
        return element


@dataclass
class Content:
    """``<content name creator senders>`` with an RTP description and an ICE-UDP transport."""

    name: str
    creator: str | None = None
    senders: str | None = None
    description: RtpDescription | None = None
    transport: IceUdpTransport | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Content:
        _expect(element, JINGLE_NS, "content")
        description = _first(element, None, "description")
        transport = _first(element, None, "transport")
        return cls(
            name=_required(element, "name"),
            creator=_choice(element, "creator", CREATORS),
            senders=_choice(element, "senders", SENDERS),
            description=None if description is None else RtpDescription.fromElement(description),
            transport=None if transport is None else _transport(transport),
        )

    def toElement(self) -> Element:
        element = _new(JINGLE_NS, "content")
        _set(element, "creator", self.creator)
        element["name"] = self.name
        _set(element, "senders", self.senders)
        if self.description is not None:
            element.addChild(self.description.toElement())
        if self.transport is not None:
            element.addChild(self.transport.toElement())
        return element


@dataclass
class Group:
    """``<group xmlns="urn:xmpp:jingle:apps:grouping:0" semantics>`` of content names
    (XEP-0338)."""

    semantics: str
    contents: list[str] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> Group:
        _expect(element, GROUPING_NS, "group")
        return cls(_required(element, "semantics"), [
            _required(c, "name") for c in _limited(element, GROUPING_NS, "content", MAX_CONTENTS)])

    def toElement(self) -> Element:
        element = _new(GROUPING_NS, "group")
        element["semantics"] = self.semantics
        for name in self.contents:
            element.addElement("content")["name"] = name
        return element


@dataclass
class Reason:
    """``<reason><CONDITION/><text>…</text></reason>`` (XEP-0166 §7.4)."""

    condition: str
    text: str | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Reason:
        _expect(element, JINGLE_NS, "reason")
        condition = next((c.name for c in element.elements()
                          if c.uri == JINGLE_NS and c.name != "text"), None)
        if condition is None:
            raise ValueError("<reason/> has no condition")
        if condition not in REASONS:
            raise ValueError(f"<reason/> has an unknown condition: {condition!r}")
        text = _first(element, JINGLE_NS, "text")
        return cls(condition, None if text is None else _text(text))

    def toElement(self) -> Element:
        element = _new(JINGLE_NS, "reason")
        element.addElement(self.condition)
        if self.text is not None:
            element.addElement("text", content=self.text)
        return element


@dataclass
class BridgeSession:
    """Jitsi's ``<bridge-session xmlns="http://jitsi.org/protocol/focus" id restart/>``."""

    id: str
    restart: bool | None = None

    @classmethod
    def fromElement(cls, element: Element) -> BridgeSession:
        _expect(element, FOCUS_NS, "bridge-session")
        return cls(_required(element, "id"), _opt_bool(element, "restart"))

    def toElement(self) -> Element:
        element = _new(FOCUS_NS, "bridge-session")
        element["id"] = self.id
        _set(element, "restart", self.restart)
        return element


@dataclass
class Jingle:
    """``<jingle xmlns="urn:xmpp:jingle:1" action sid initiator responder>``.

    ``groups`` holds the XEP-0338 groups (the BUNDLE one is :attr:`bundle`); ``ice_state`` is the
    text of the client's ``<ice-state xmlns="http://jitsi.org/protocol/focus"/>`` (session-info).
    """

    action: str
    sid: str
    initiator: str | None = None
    responder: str | None = None
    contents: list[Content] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    reason: Reason | None = None
    bridge_session: BridgeSession | None = None
    ice_state: str | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Jingle:
        _expect(element, JINGLE_NS, "jingle")
        action = _required(element, "action")
        if action not in ACTIONS:
            raise ValueError(f"<jingle/> has an unknown action: {action!r}")
        reason = _first(element, JINGLE_NS, "reason")
        bridge_session = _first(element, FOCUS_NS, "bridge-session")
        ice_state = _first(element, FOCUS_NS, "ice-state")
        return cls(
            action=action,
            sid=_required(element, "sid"),
            initiator=element.getAttribute("initiator"),
            responder=element.getAttribute("responder"),
            contents=[Content.fromElement(c)
                      for c in _limited(element, JINGLE_NS, "content", MAX_CONTENTS)],
            groups=[Group.fromElement(c)
                    for c in _limited(element, GROUPING_NS, "group", MAX_GROUPS)],
            reason=None if reason is None else Reason.fromElement(reason),
            bridge_session=(None if bridge_session is None
                            else BridgeSession.fromElement(bridge_session)),
            ice_state=None if ice_state is None else _text(ice_state),
        )

    def toElement(self) -> Element:
        element = _new(JINGLE_NS, "jingle")
        element["action"] = self.action
        _set(element, "initiator", self.initiator)
        _set(element, "responder", self.responder)
        element["sid"] = self.sid
        for child in (*self.contents, *self.groups):
            element.addChild(child.toElement())
        if self.reason is not None:
            element.addChild(self.reason.toElement())
        if self.bridge_session is not None:
            element.addChild(self.bridge_session.toElement())
        if self.ice_state is not None:
            element.addChild(_new(FOCUS_NS, "ice-state")).addContent(self.ice_state)
        return element

    @property
    def bundle(self) -> Group | None:
        """The BUNDLE group, if any."""
        return next((g for g in self.groups if g.semantics == "BUNDLE"), None)


# -- errors ------------------------------------------------------------------------------------

class JingleError(StanzaError):
    """A stanza error with an optional Jingle condition (XEP-0166 §10) after the stanza one.

    ``condition`` defaults to the stanza error that goes with ``jingle_condition``.
    """

    def __init__(self, condition: str | None = None, jingle_condition: str | None = None,
                 text: str = "") -> None:
        if jingle_condition is not None and jingle_condition not in JINGLE_ERRORS:
            raise ValueError(f"unknown Jingle error condition: {jingle_condition!r}")
        if condition is None:
            if jingle_condition is None:
                raise ValueError("a Jingle error needs a condition")
            condition = JINGLE_ERRORS[jingle_condition]
        super().__init__(condition, text=text)
        self.jingle_condition = jingle_condition

    def to_element(self) -> Element:
        error = super().to_element()
        if self.jingle_condition is not None:
            error.addChild(_new(JINGLE_ERRORS_NS, self.jingle_condition))
        return error


def unknown_session_reply(iq: Element) -> Element | None:
    """``item-not-found`` + ``<unknown-session/>``: the answer to a Jingle IQ for an unknown sid.

    None when ``iq`` must not be answered (an error or a result).
    """
    return error_reply(iq, JingleError(jingle_condition="unknown-session"))


def bad_request_reply(iq: Element, text: str = "") -> Element | None:
    """``bad-request``: the answer to a malformed Jingle IQ or an unknown action."""
    return error_reply(iq, JingleError("bad-request", text=text))
