"""Colibri2, the focus ↔ bridge allocation protocol, as plain data (parse from / build to domish).

**Era.** Neither reference commit speaks Colibri2: jicofo ``04c1143c`` (2021-12-17) only has
``conference/colibri/v1`` and jitsi-videobridge ``c5a59056`` (2021-12-20) only the Colibri v1
shim; both use jitsi-xmpp-extensions (XEXT) ``1.0-36-gc8f4179``, which has no ``colibri2``
package. Colibri2 arrived in jicofo ``552164c1`` and JVB ``7e881954`` (both 2022-01-13,
"Colibri2 and secure octo"), on XEXT ``b85a8a8`` (2022-01-10). This module follows that first
Colibri2 shape, plus later additive XEXT elements (``<sctp>`` a767fcd, ``<error>`` f2d08b7,
``<capability>`` 209f259, ``muc-role`` 1883667, conference ``expire`` dbc408f,
``<initial-last-n>`` 8c6cdeb).

**Request** (jicofo ``conference/colibri/v2/Colibri2Session.kt`` @552164c1), an IQ to the
bridge's brewery occupant JID; Smack's default IQ type is ``get`` and JVB accepts get or set::

    <conference-modify xmlns="jitsi:colibri2" meeting-id="UUID" [name="room@muc" create="true"]>
      <endpoint id="abcd1234" create="true" stats-id="Fred-x1">
        <media type="audio|video"> <payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" …/>…
          <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id uri/>… </media>
        <transport ice-controlling="true"/>
      </endpoint></conference-modify>

- ``create``/``name`` only on the request that creates the bridge conference; ``meeting-id`` on
  every request (XEXT ``ConferenceModifyIQProvider`` requires it). ``rtcstats-enabled`` and
  ``callstats-enabled`` default to true and are written only when false.
- Updates (after session-accept, source-add/remove): ``<endpoint id stats-id>`` with
  ``<transport><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag pwd>`` (client
  fingerprint ``setup="active"``, candidates) and/or ``<sources>`` = the endpoint's *complete*
  source set: ``<media-source type id="abcd1234-v0">`` holding ``<source
  xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc [name]/>`` (no msid, no ssrc-info) and
  ``<ssrc-group semantics="SIM|FID">``. An empty ``<sources/>`` clears them.
- ``<endpoint id expire="true"/>`` frees an endpoint; ``<force-mute audio video/>`` mutes.
- Octo: ``<relay id create|expire [mesh-id]>`` with media, a transport (``use-unique-port``),
  and ``<endpoints><endpoint …/></endpoints>`` describing the remote endpoints.

**Answer** (JVB ``colibri2/Colibri2ConferenceHandler.kt`` @7e881954): a result IQ with
``<conference-modified xmlns="jitsi:colibri2">``. Each endpoint echoes its ``id``; a created
one carries ``<transport><transport xmlns="…ice-udp:1" ufrag pwd>`` with ``<candidate/>``s,
``<rtcp-mux/>``, ``<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash setup="actpass">`` and
``<web-socket xmlns="http://jitsi.org/protocol/colibri" url/>`` (``Endpoint.describeTransport``);
an expired one echoes ``expire="true"``. With ``create="true"`` the answer adds conference-level
``<sources>``: ``media-source`` ``jvb-a0``/``jvb-v0`` whose ``<source ssrc name="jvb-a0">``
carries ``<parameter name="msid" value="mixedmslabel mixedlabelaudio0"/>`` (…video0); jicofo
republishes them with owner ``jvb``.

Later JVBs (``Colibri2ConferenceHandler.kt`` at HEAD) answer a requested ``<sctp/>`` with
``<sctp role="server" port="5000"/>`` in the endpoint's transport.

**Errors**: an IQ error carrying ``<error xmlns="jitsi:colibri2" reason="…"/>`` (XEXT f2d08b7),
with reason ``conference_not_found`` (item-not-found), ``conference_already_exists``
(conflict), ``unknown_endpoint`` (item-not-found), ``graceful_shutdown``
(service-unavailable), ``feature_not_implemented`` or ``unspecified``: lower case with
underscores (``Reason.toString().toLowerCase()``), parsed case-insensitively, absent =
unspecified. JVB cff282cf (2022-02) put it beside the stanza ``<error>``; 9a450d0e (2022-05)
moved it inside. At 7e881954 (Jan 2022) there was no colibri2 error: an unknown or duplicate
conference and an unknown endpoint gave ``bad-request``, a duplicate endpoint ``conflict``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from twisted.words.xish.domish import Element

from vw.xmpp.errors import StanzaError, error_reply

COLIBRI2_NS = "jitsi:colibri2"
#: Colibri v1 namespace; still the namespace of ``<web-socket>``.
COLIBRI_NS = "http://jitsi.org/protocol/colibri"
RTP_NS = "urn:xmpp:jingle:apps:rtp:1"
RTCP_FB_NS = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
RTP_HDREXT_NS = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
ICE_UDP_NS = "urn:xmpp:jingle:transports:ice-udp:1"
DTLS_NS = "urn:xmpp:jingle:apps:dtls:0"
SSMA_NS = "urn:xmpp:jingle:apps:rtp:ssma:0"
JITMEET_NS = "http://jitsi.org/jitmeet"

MEDIA_TYPES = frozenset({"audio", "video"})
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay", "stun"})
DTLS_SETUPS = frozenset({"active", "passive", "actpass", "holdconn"})
SCTP_ROLES = frozenset({"client", "server"})
MUC_ROLES = frozenset({"moderator", "participant", "visitor", "none"})

CAP_SOURCE_NAMES = "source-names"
CAP_SSRC_REWRITING = "ssrc-rewriting"
CAP_PRIVATE_ADDRESS_CONNECTIVITY = "private-address-connectivity"

#: Colibri2Error reasons (XEXT ``Colibri2Error.Reason``) and the stanza error JVB pairs them with.
REASON_CONDITIONS = {
    "conference_not_found": "item-not-found",
    "conference_already_exists": "conflict",
    "feature_not_implemented": "feature-not-implemented",
    "graceful_shutdown": "service-unavailable",
    "unknown_endpoint": "item-not-found",
    "unspecified": "bad-request",
}

_INTEGER = re.compile(r"-?[0-9]{1,20}")
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0"})
MAX_SSRC = 0xFFFFFFFF


# -- helpers -----------------------------------------------------------------------------------

def _new(uri: str, name: str) -> Element:
    return Element((uri, name), defaultUri=uri)


def _children(element: Element, uri: str | None, name: str) -> Iterator[Element]:
    """Child elements called ``name`` in namespace ``uri`` (any namespace when None)."""
    for child in element.elements():
        if child.name == name and (uri is None or child.uri == uri):
            yield child


def _first(element: Element, uri: str | None, name: str) -> Element | None:
    return next(_children(element, uri, name), None)


def _text(element: Element) -> str:
    return "".join(c for c in element.children if isinstance(c, str)).strip()


def _expect(element: Element, uri: str, name: str) -> None:
    if element.name != name or element.uri != uri:
        raise ValueError(f"expected <{name} xmlns='{uri}'/>, got <{element.name} "
                         f"xmlns='{element.uri}'/>")


def _required(element: Element, attr: str) -> str:
    value = element.getAttribute(attr)
    if value is None:
        raise ValueError(f"<{element.name}/> is missing '{attr}'")
    if not value:
        raise ValueError(f"<{element.name}/> has an empty '{attr}'")
    return value


def _int(element: Element, attr: str, low: int, high: int, required: bool = False) -> int | None:
    raw = _required(element, attr) if required else element.getAttribute(attr)
    if raw is None:
        return None
    if not _INTEGER.fullmatch(raw):
        raise ValueError(f"<{element.name}/> '{attr}' is not an integer: {raw!r}")
    value = int(raw)
    if not low <= value <= high:
        raise ValueError(f"<{element.name}/> '{attr}' out of range {low}..{high}: {value}")
    return value


def _req_int(element: Element, attr: str, low: int, high: int) -> int:
    value = _int(element, attr, low, high, required=True)
    assert value is not None
    return value


def _opt_bool(element: Element, attr: str) -> bool | None:
    raw = element.getAttribute(attr)
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"<{element.name}/> '{attr}' is not a boolean: {raw!r}")


def _bool(element: Element, attr: str, default: bool) -> bool:
    value = _opt_bool(element, attr)
    return default if value is None else value


def _choice(element: Element, attr: str, allowed: frozenset[str],
            required: bool = False) -> str | None:
    raw = _required(element, attr) if required else element.getAttribute(attr)
    if raw is None:
        return None
    if raw.lower() not in allowed:
        raise ValueError(f"<{element.name}/> has an unknown '{attr}': {raw!r}")
    return raw.lower()


def _media_type(element: Element) -> str:
    value = _choice(element, "type", MEDIA_TYPES, required=True)
    assert value is not None
    return value


def _set(element: Element, attr: str, value: object) -> None:
    """Set ``attr`` unless ``value`` is None; booleans are written as true/false."""
    if value is None:
        return
    if isinstance(value, bool):
        element[attr] = "true" if value else "false"
    else:
        element[attr] = str(value)


# -- Jingle RTP description parts ---------------------------------------------------------------

@dataclass
class Parameter:
    """``<parameter name value/>``: an fmtp parameter of a payload type, or a source's msid."""

    name: str
    value: str | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Parameter:
        return cls(_required(element, "name"), element.getAttribute("value"))

    def toElement(self, uri: str = RTP_NS) -> Element:
        """The element, in the parent's namespace ``uri``."""
        element = _new(uri, "parameter")
        element["name"] = self.name
        _set(element, "value", self.value)
        return element


@dataclass
class RtcpFeedback:
    """``<rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type subtype/>`` (XEP-0293)."""

    type: str
    subtype: str | None = None

    @classmethod
    def fromElement(cls, element: Element) -> RtcpFeedback:
        return cls(_required(element, "type"), element.getAttribute("subtype"))

    def toElement(self) -> Element:
        element = _new(RTCP_FB_NS, "rtcp-fb")
        element["type"] = self.type
        _set(element, "subtype", self.subtype)
        return element


@dataclass
class PayloadType:
    """``<payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id name clockrate channels>``."""

    id: int
    name: str | None = None
    clockrate: int | None = None
    channels: int | None = None
    parameters: list[Parameter] = field(default_factory=list)
    rtcp_fbs: list[RtcpFeedback] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> PayloadType:
        _expect(element, RTP_NS, "payload-type")
        return cls(
            id=_req_int(element, "id", 0, 127),
            name=element.getAttribute("name"),
            clockrate=_int(element, "clockrate", 1, MAX_SSRC),
            channels=_int(element, "channels", 1, 255),
            parameters=[Parameter.fromElement(c) for c in _children(element, None, "parameter")],
            rtcp_fbs=[RtcpFeedback.fromElement(c) for c in _children(element, None, "rtcp-fb")],
        )

    def toElement(self) -> Element:
        element = _new(RTP_NS, "payload-type")
        element["id"] = str(self.id)
        _set(element, "name", self.name)
        _set(element, "clockrate", self.clockrate)
        _set(element, "channels", self.channels)
        for parameter in self.parameters:
            element.addChild(parameter.toElement(RTP_NS))
        for feedback in self.rtcp_fbs:
            element.addChild(feedback.toElement())
        return element


@dataclass
class HeaderExtension:
    """``<rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id uri/>`` (XEP-0294)."""

    id: int
    uri: str
    senders: str | None = None

    @classmethod
    def fromElement(cls, element: Element) -> HeaderExtension:
        _expect(element, RTP_HDREXT_NS, "rtp-hdrext")
        return cls(_req_int(element, "id", 1, 255), _required(element, "uri"),
                   element.getAttribute("senders"))

    def toElement(self) -> Element:
        element = _new(RTP_HDREXT_NS, "rtp-hdrext")
        element["id"] = str(self.id)
        element["uri"] = self.uri
        _set(element, "senders", self.senders)
        return element


# -- sources (XEP-0339) -------------------------------------------------------------------------

def _ssrc(element: Element) -> int:
    return _req_int(element, "ssrc", 0, MAX_SSRC)


@dataclass
class Source:
    """``<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc name>``.

    ``owner`` is ``<ssrc-info xmlns="http://jitsi.org/jitmeet" owner/>`` (Jingle only: jicofo's
    colibri2 sources carry none); ``parameters`` are ``<parameter name value/>`` (msid).
    """

    ssrc: int
    name: str | None = None
    owner: str | None = None
    parameters: list[Parameter] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> Source:
        _expect(element, SSMA_NS, "source")
        info = _first(element, JITMEET_NS, "ssrc-info")
        return cls(
            ssrc=_ssrc(element),
            name=element.getAttribute("name"),
            owner=None if info is None else info.getAttribute("owner"),
            parameters=[Parameter.fromElement(c) for c in _children(element, None, "parameter")],
        )

    def toElement(self) -> Element:
        element = _new(SSMA_NS, "source")
        element["ssrc"] = str(self.ssrc)
        _set(element, "name", self.name)
        if self.owner is not None:
            element.addChild(_new(JITMEET_NS, "ssrc-info"))["owner"] = self.owner
        for parameter in self.parameters:
            element.addChild(parameter.toElement(SSMA_NS))
        return element

    @property
    def msid(self) -> str | None:
        """The value of the ``msid`` parameter, if any."""
        return next((p.value for p in self.parameters if p.name == "msid"), None)


@dataclass
class SourceGroup:
    """``<ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics>`` of ``<source ssrc/>``."""

    semantics: str
    ssrcs: list[int] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> SourceGroup:
        _expect(element, SSMA_NS, "ssrc-group")
        return cls(_required(element, "semantics"),
                   [_ssrc(c) for c in _children(element, None, "source")])

    def toElement(self) -> Element:
        element = _new(SSMA_NS, "ssrc-group")
        element["semantics"] = self.semantics
        for ssrc in self.ssrcs:
            element.addChild(_new(SSMA_NS, "source"))["ssrc"] = str(ssrc)
        return element


@dataclass
class MediaSource:
    """``<media-source type id>``: one sender's source (its SSRCs and their groups)."""

    type: str
    id: str
    sources: list[Source] = field(default_factory=list)
    groups: list[SourceGroup] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> MediaSource:
        _expect(element, COLIBRI2_NS, "media-source")
        return cls(
            type=_media_type(element),
            id=_required(element, "id"),
            sources=[Source.fromElement(c) for c in _children(element, SSMA_NS, "source")],
            groups=[SourceGroup.fromElement(c) for c in _children(element, SSMA_NS, "ssrc-group")],
        )

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "media-source")
        element["type"] = self.type
        element["id"] = self.id
        for source in self.sources:
            element.addChild(source.toElement())
        for group in self.groups:
            element.addChild(group.toElement())
        return element


def _parse_sources(element: Element) -> list[MediaSource]:
    return [MediaSource.fromElement(c) for c in _children(element, COLIBRI2_NS, "media-source")]


def _sources_element(sources: list[MediaSource]) -> Element:
    element = _new(COLIBRI2_NS, "sources")
    for media_source in sources:
        element.addChild(media_source.toElement())
    return element


# -- ICE-UDP transport (XEP-0176, XEP-0320) -----------------------------------------------------

@dataclass
class Fingerprint:
    """``<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash setup [required]>VALUE``."""

    hash: str
    setup: str | None
    value: str
    required: bool | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Fingerprint:
        _expect(element, DTLS_NS, "fingerprint")
        value = _text(element)
        if not value:
            raise ValueError("<fingerprint/> has no value")
        return cls(_required(element, "hash"), _choice(element, "setup", DTLS_SETUPS), value,
                   _opt_bool(element, "required"))

    def toElement(self) -> Element:
        element = _new(DTLS_NS, "fingerprint")
        element["hash"] = self.hash
        _set(element, "setup", self.setup)
        _set(element, "required", self.required)
        element.addContent(self.value)
        return element


@dataclass
class Candidate:
    """``<candidate/>`` of an ICE-UDP transport (XEP-0176)."""

    component: int
    foundation: str
    ip: str
    port: int
    priority: int
    protocol: str
    type: str
    generation: int | None = None
    id: str | None = None
    network: int | None = None
    rel_addr: str | None = None
    rel_port: int | None = None
    tcptype: str | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Candidate:
        _expect(element, ICE_UDP_NS, "candidate")
        candidate_type = _choice(element, "type", CANDIDATE_TYPES, required=True)
        assert candidate_type is not None
        return cls(
            component=_req_int(element, "component", 1, 256),
            foundation=_required(element, "foundation"),
            ip=_required(element, "ip"),
            port=_req_int(element, "port", 0, 65535),
            priority=_req_int(element, "priority", 0, MAX_SSRC),
            protocol=_required(element, "protocol").lower(),
            type=candidate_type,
            generation=_int(element, "generation", 0, 65535),
            id=element.getAttribute("id"),
            network=_int(element, "network", 0, 65535),
            rel_addr=element.getAttribute("rel-addr"),
            rel_port=_int(element, "rel-port", 0, 65535),
            tcptype=element.getAttribute("tcptype"),
        )

    def toElement(self) -> Element:
        element = _new(ICE_UDP_NS, "candidate")
        for attr, value in (
            ("component", self.component), ("foundation", self.foundation),
            ("generation", self.generation), ("id", self.id), ("ip", self.ip),
            ("network", self.network), ("port", self.port), ("priority", self.priority),
            ("protocol", self.protocol), ("type", self.type), ("rel-addr", self.rel_addr),
            ("rel-port", self.rel_port), ("tcptype", self.tcptype),
        ):
            _set(element, attr, value)
        return element


@dataclass
class WebSocket:
    """``<web-socket xmlns="http://jitsi.org/protocol/colibri" url [active]/>``: colibri-ws."""

    url: str
    active: bool | None = None

    @classmethod
    def fromElement(cls, element: Element) -> WebSocket:
        _expect(element, COLIBRI_NS, "web-socket")
        return cls(_required(element, "url"), _opt_bool(element, "active"))

    def toElement(self) -> Element:
        element = _new(COLIBRI_NS, "web-socket")
        element["url"] = self.url
        _set(element, "active", self.active)
        return element


@dataclass
class IceUdpTransport:
    """``<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag pwd>``.

    Children (written in JVB's order): candidates, ``<rtcp-mux/>``, fingerprints, web-sockets.
    Other children (e.g. Jingle's ``<sctpmap>``) are ignored.
    """

    ufrag: str | None = None
    pwd: str | None = None
    fingerprints: list[Fingerprint] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    rtcp_mux: bool = False
    web_sockets: list[WebSocket] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> IceUdpTransport:
        _expect(element, ICE_UDP_NS, "transport")
        return cls(
            ufrag=element.getAttribute("ufrag"),
            pwd=element.getAttribute("pwd"),
            fingerprints=[Fingerprint.fromElement(c)
                          for c in _children(element, DTLS_NS, "fingerprint")],
            candidates=[Candidate.fromElement(c)
                        for c in _children(element, ICE_UDP_NS, "candidate")],
            rtcp_mux=_first(element, ICE_UDP_NS, "rtcp-mux") is not None,
            web_sockets=[WebSocket.fromElement(c)
                         for c in _children(element, COLIBRI_NS, "web-socket")],
        )

    def toElement(self) -> Element:
        element = _new(ICE_UDP_NS, "transport")
        _set(element, "ufrag", self.ufrag)
        _set(element, "pwd", self.pwd)
        for candidate in self.candidates:
            element.addChild(candidate.toElement())
        if self.rtcp_mux:
            element.addChild(_new(ICE_UDP_NS, "rtcp-mux"))
        for fingerprint in self.fingerprints:
            element.addChild(fingerprint.toElement())
        for web_socket in self.web_sockets:
            element.addChild(web_socket.toElement())
        return element

    @property
    def fingerprint(self) -> Fingerprint | None:
        """The first fingerprint (JVB and browsers send one)."""
        return self.fingerprints[0] if self.fingerprints else None

    @property
    def web_socket_url(self) -> str | None:
        """The first colibri-ws URL, which is the one lib-jitsi-meet opens."""
        return self.web_sockets[0].url if self.web_sockets else None


# -- colibri2 elements --------------------------------------------------------------------------

@dataclass
class Media:
    """``<media type="audio|video">``: the payload types and header extensions of one kind."""

    type: str
    payload_types: list[PayloadType] = field(default_factory=list)
    header_extensions: list[HeaderExtension] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> Media:
        _expect(element, COLIBRI2_NS, "media")
        return cls(
            type=_media_type(element),
            payload_types=[PayloadType.fromElement(c)
                           for c in _children(element, RTP_NS, "payload-type")],
            header_extensions=[HeaderExtension.fromElement(c)
                               for c in _children(element, RTP_HDREXT_NS, "rtp-hdrext")],
        )

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "media")
        element["type"] = self.type
        for payload_type in self.payload_types:
            element.addChild(payload_type.toElement())
        for extension in self.header_extensions:
            element.addChild(extension.toElement())
        return element


@dataclass
class Sctp:
    """``<sctp [port] [role="client|server"]/>`` inside a colibri2 transport (XEXT a767fcd)."""

    port: int | None = None
    role: str | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Sctp:
        _expect(element, COLIBRI2_NS, "sctp")
        return cls(_int(element, "port", 0, 65535), _choice(element, "role", SCTP_ROLES))

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "sctp")
        _set(element, "role", self.role)
        _set(element, "port", self.port)
        return element


@dataclass
class Transport:
    """Colibri2 ``<transport ice-controlling use-unique-port>`` wrapping an ICE-UDP transport."""

    ice_controlling: bool = False
    use_unique_port: bool = False
    ice_udp: IceUdpTransport | None = None
    sctp: Sctp | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Transport:
        _expect(element, COLIBRI2_NS, "transport")
        ice = _first(element, ICE_UDP_NS, "transport")
        sctp = _first(element, COLIBRI2_NS, "sctp")
        return cls(
            ice_controlling=_bool(element, "ice-controlling", False),
            use_unique_port=_bool(element, "use-unique-port", False),
            ice_udp=None if ice is None else IceUdpTransport.fromElement(ice),
            sctp=None if sctp is None else Sctp.fromElement(sctp),
        )

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "transport")
        if self.ice_controlling:
            element["ice-controlling"] = "true"
        if self.use_unique_port:
            element["use-unique-port"] = "true"
        if self.ice_udp is not None:
            element.addChild(self.ice_udp.toElement())
        if self.sctp is not None:
            element.addChild(self.sctp.toElement())
        return element


@dataclass
class ForceMute:
    """``<force-mute audio video/>``: the bridge drops the endpoint's audio and/or video."""

    audio: bool = False
    video: bool = False

    @classmethod
    def fromElement(cls, element: Element) -> ForceMute:
        _expect(element, COLIBRI2_NS, "force-mute")
        return cls(_bool(element, "audio", False), _bool(element, "video", False))

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "force-mute")
        if self.audio:
            element["audio"] = "true"
        if self.video:
            element["video"] = "true"
        return element


def _optional(element: Element, name: str) -> Element | None:
    return _first(element, COLIBRI2_NS, name)


@dataclass
class Endpoint:
    """``<endpoint id create expire stats-id muc-role>``: one participant on this bridge.

    ``sources`` None means no ``<sources>`` element (unchanged); ``[]`` is an empty one (clear).
    """

    id: str
    create: bool = False
    expire: bool = False
    stats_id: str | None = None
    muc_role: str | None = None
    media: list[Media] = field(default_factory=list)
    transport: Transport | None = None
    sources: list[MediaSource] | None = None
    force_mute: ForceMute | None = None
    capabilities: list[str] = field(default_factory=list)
    initial_last_n: int | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Endpoint:
        _expect(element, COLIBRI2_NS, "endpoint")
        force_mute = _optional(element, "force-mute")
        last_n = _optional(element, "initial-last-n")
        return cls(
            **_read_common(element),
            stats_id=element.getAttribute("stats-id"),
            muc_role=_choice(element, "muc-role", MUC_ROLES),
            force_mute=None if force_mute is None else ForceMute.fromElement(force_mute),
            capabilities=[_required(c, "name")
                          for c in _children(element, COLIBRI2_NS, "capability")],
            initial_last_n=None if last_n is None else _req_int(last_n, "value", -1, 2**31 - 1),
        )

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "endpoint")
        _write_common(element, self, {"stats-id": self.stats_id, "muc-role": self.muc_role})
        if self.force_mute is not None:
            element.addChild(self.force_mute.toElement())
        for name in self.capabilities:
            element.addChild(_new(COLIBRI2_NS, "capability"))["name"] = name
        if self.initial_last_n is not None:
            last_n = element.addChild(_new(COLIBRI2_NS, "initial-last-n"))
            last_n["value"] = str(self.initial_last_n)
        return element

    def has_capability(self, name: str) -> bool:
        return name in self.capabilities


@dataclass
class Relay:
    """``<relay id create expire mesh-id>``: an Octo link to another bridge.

    ``endpoints`` are the remote endpoints reached through it (``<endpoints>``; None if absent).
    """

    id: str
    create: bool = False
    expire: bool = False
    mesh_id: str | None = None
    media: list[Media] = field(default_factory=list)
    transport: Transport | None = None
    sources: list[MediaSource] | None = None
    endpoints: list[Endpoint] | None = None

    @classmethod
    def fromElement(cls, element: Element) -> Relay:
        _expect(element, COLIBRI2_NS, "relay")
        endpoints = _optional(element, "endpoints")
        return cls(
            **_read_common(element),
            mesh_id=element.getAttribute("mesh-id"),
            endpoints=None if endpoints is None else [
                Endpoint.fromElement(c) for c in _children(endpoints, COLIBRI2_NS, "endpoint")],
        )

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "relay")
        _write_common(element, self, {"mesh-id": self.mesh_id})
        if self.endpoints is not None:
            wrapper = element.addChild(_new(COLIBRI2_NS, "endpoints"))
            for endpoint in self.endpoints:
                wrapper.addChild(endpoint.toElement())
        return element


def _read_common(element: Element) -> dict[str, Any]:
    """What ``<endpoint>`` and ``<relay>`` share: id, create, expire, media, transport,
    sources."""
    transport = _optional(element, "transport")
    sources = _optional(element, "sources")
    return {
        "id": _required(element, "id"),
        "create": _bool(element, "create", False),
        "expire": _bool(element, "expire", False),
        "media": [Media.fromElement(c) for c in _children(element, COLIBRI2_NS, "media")],
        "transport": None if transport is None else Transport.fromElement(transport),
        "sources": None if sources is None else _parse_sources(sources),
    }


def _write_common(element: Element, entity: Endpoint | Relay,
                  attributes: dict[str, str | None]) -> None:
    """Write the shared parts, with ``attributes`` after id, create and expire."""
    element["id"] = entity.id
    if entity.create:
        element["create"] = "true"
    if entity.expire:
        element["expire"] = "true"
    for name, value in attributes.items():
        _set(element, name, value)
    for media in entity.media:
        element.addChild(media.toElement())
    if entity.transport is not None:
        element.addChild(entity.transport.toElement())
    if entity.sources is not None:
        element.addChild(_sources_element(entity.sources))


def _entities(element: Element) -> tuple[list[Endpoint], list[Relay]]:
    return ([Endpoint.fromElement(c) for c in _children(element, COLIBRI2_NS, "endpoint")],
            [Relay.fromElement(c) for c in _children(element, COLIBRI2_NS, "relay")])


@dataclass
class ConferenceModify:
    """The ``<conference-modify/>`` request payload (focus → bridge)."""

    meeting_id: str
    name: str | None = None
    create: bool = False
    expire: bool = False
    rtcstats_enabled: bool = True
    callstats_enabled: bool = True
    endpoints: list[Endpoint] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)

    @classmethod
    def fromElement(cls, element: Element) -> ConferenceModify:
        _expect(element, COLIBRI2_NS, "conference-modify")
        endpoints, relays = _entities(element)
        return cls(
            meeting_id=_required(element, "meeting-id"),
            name=element.getAttribute("name"),
            create=_bool(element, "create", False),
            expire=_bool(element, "expire", False),
            rtcstats_enabled=_bool(element, "rtcstats-enabled", True),
            callstats_enabled=_bool(element, "callstats-enabled", True),
            endpoints=endpoints,
            relays=relays,
        )

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "conference-modify")
        element["meeting-id"] = self.meeting_id
        _set(element, "name", self.name)
        if not self.rtcstats_enabled:
            element["rtcstats-enabled"] = "false"
        if not self.callstats_enabled:
            element["callstats-enabled"] = "false"
        if self.create:
            element["create"] = "true"
        if self.expire:
            element["expire"] = "true"
        for endpoint in self.endpoints:
            element.addChild(endpoint.toElement())
        for relay in self.relays:
            element.addChild(relay.toElement())
        return element

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.id == endpoint_id), None)


@dataclass
class ConferenceModified:
    """The ``<conference-modified/>`` answer payload (bridge → focus).

    ``sources`` are the bridge's own conference-level feedback sources (sent on create).
    """

    endpoints: list[Endpoint] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)
    sources: list[MediaSource] | None = None

    @classmethod
    def fromElement(cls, element: Element) -> ConferenceModified:
        _expect(element, COLIBRI2_NS, "conference-modified")
        endpoints, relays = _entities(element)
        sources = _optional(element, "sources")
        return cls(endpoints, relays, None if sources is None else _parse_sources(sources))

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "conference-modified")
        for endpoint in self.endpoints:
            element.addChild(endpoint.toElement())
        for relay in self.relays:
            element.addChild(relay.toElement())
        if self.sources is not None:
            element.addChild(_sources_element(self.sources))
        return element

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        return next((e for e in self.endpoints if e.id == endpoint_id), None)


@dataclass
class Colibri2Error:
    """``<error xmlns="jitsi:colibri2" reason/>``, carried inside an IQ's stanza ``<error>``."""

    reason: str = "unspecified"

    @classmethod
    def fromElement(cls, element: Element) -> Colibri2Error:
        _expect(element, COLIBRI2_NS, "error")
        reason = element.getAttribute("reason")
        if reason is None:
            return cls()
        if reason.lower() not in REASON_CONDITIONS:
            raise ValueError(f"<error xmlns='{COLIBRI2_NS}'/> has an unknown reason: {reason!r}")
        return cls(reason.lower())

    def toElement(self) -> Element:
        element = _new(COLIBRI2_NS, "error")
        element["reason"] = self.reason
        return element

    @classmethod
    def fromStanza(cls, stanza: Element) -> Colibri2Error | None:
        """The colibri2 error of an error IQ: inside its ``<error>`` (2022-05 on) or beside it."""
        for error in stanza.elements():
            if error.name == "error" and error.uri != COLIBRI2_NS:
                found = _first(error, COLIBRI2_NS, "error")
                if found is not None:
                    return cls.fromElement(found)
        found = _first(stanza, COLIBRI2_NS, "error")
        return None if found is None else cls.fromElement(found)


def colibri2_error_reply(iq: Element, reason: str, text: str = "",
                         condition: str | None = None) -> Element | None:
    """The error reply to a conference-modify ``iq``, as JVB builds it (None for non-requests).

    ``condition`` defaults to the stanza error JVB pairs with ``reason``.
    """
    if reason not in REASON_CONDITIONS:
        raise ValueError(f"unknown colibri2 error reason: {reason!r}")
    error = StanzaError(condition or REASON_CONDITIONS[reason], text=text)
    reply = error_reply(iq, error)
    if reply is not None:
        for child in reply.elements():
            if child.name == "error" and child.uri != COLIBRI2_NS:
                child.addChild(Colibri2Error(reason).toElement())
    return reply
