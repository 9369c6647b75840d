"""A restricted, bounded XML parser for XMPP streams (sans-IO).

XMPP forbids DTDs, entity declarations, comments and processing instructions
(RFC 6120 §11.1). They are refused here before expat can expand anything, so
billion-laughs and external-entity attacks never get started. Stanza size and
nesting depth are bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.parsers import expat

from twisted.words.xish.domish import Element

from vw.xmpp.errors import StreamError

STREAMS_NS = "http://etherx.jabber.org/streams"
FRAMING_NS = "urn:ietf:params:xml:ns:xmpp-framing"
#: Feed expat in slices this large, so limits are checked while a huge chunk is parsed.
_SLICE = 4096


@dataclass(frozen=True)
class StreamOpened:
    """The stream header (or a WebSocket ``<open/>``): its attributes by local name."""

    uri: str
    name: str
    attributes: dict[str, str]
    #: The default namespace declared on the header (jabber:client, jabber:component:accept).
    default_namespace: str = ""


@dataclass(frozen=True)
class ElementReceived:
    element: Element


@dataclass(frozen=True)
class StreamClosed:
    pass


Event = StreamOpened | ElementReceived | StreamClosed


def _split(name: str) -> tuple[str, str]:
    uri, _, local = name.rpartition(" ")
    return uri, local


def _local_names(attrs: dict[str, str]) -> dict[str, str]:
    return {_split(key)[1]: value for key, value in attrs.items()}


class XMLStreamParser:
    """Bytes of one XML stream in, stream events out.

    With ``framed=True`` (RFC 7395 WebSocket framing, BOSH bodies) each
    top-level element is an event of its own: ``<open/>`` gives
    StreamOpened, ``<close/>`` StreamClosed, anything else ElementReceived.
    Otherwise the first element is the stream header and its children are stanzas.
    """

    def __init__(self, max_stanza_bytes: int = 262144, max_depth: int = 48,
                 framed: bool = False) -> None:
        self._max_bytes = max_stanza_bytes
        self._max_depth = max_depth
        self._framed = framed
        self._events: list[Event] = []
        self._stack: list[Element] = []
        self._depth = 0
        self._mark = 0
        self._fed = 0
        self._default_namespace = ""
        self._parser = self._new_parser()
        if framed:
            # One synthetic root makes a sequence of frames a single document.
            root = b"<frames>"
            self._parser.Parse(root, False)
            self._events.clear()
            self._fed = len(root)

    def _new_parser(self) -> expat.XMLParserType:
        parser = expat.ParserCreate("UTF-8", " ")
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.StartNamespaceDeclHandler = self._namespace
        parser.StartDoctypeDeclHandler = self._restricted
        parser.EntityDeclHandler = self._restricted
        parser.CommentHandler = self._restricted
        parser.ProcessingInstructionHandler = self._restricted
        parser.ExternalEntityRefHandler = self._restricted
        parser.buffer_text = True
        parser.buffer_size = 1024  # text arrives in slices; a small buffer keeps idle streams lean
        return parser

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events it completes. Raises StreamError."""
        try:
            for start in range(0, len(data), _SLICE):
                chunk = data[start:start + _SLICE]
                self._fed += len(chunk)
                self._parser.Parse(chunk, False)
                self._check_size()
        except expat.ExpatError as e:
            raise StreamError("not-well-formed", expat.errors.messages[e.code]) from None
        events, self._events = self._events, []
        return events

    def _check_size(self) -> None:
        if self._fed - self._mark > self._max_bytes:
            raise StreamError("policy-violation", "stanza too large")

    def _restricted(self, *args: object) -> None:
        raise StreamError("restricted-xml", "DTDs, entities, comments and PIs are not allowed")

    def _namespace(self, prefix: str | None, uri: str) -> None:
        if prefix is None and self._depth == 0:
            self._default_namespace = uri

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        uri, local = _split(name)
        self._depth += 1
        if self._depth == 1:
            self._mark = self._parser.CurrentByteIndex
            self._events.append(StreamOpened(uri, local, _local_names(attrs),
                                             self._default_namespace))
            return
        if self._framed and self._depth == 2 and uri == FRAMING_NS:
            if local == "open":
                self._events.append(StreamOpened(uri, local, _local_names(attrs), uri))
            elif local == "close":
                self._events.append(StreamClosed())
            self._stack.append(Element((uri, local)))
            return
        if self._depth - 1 > self._max_depth:
            raise StreamError("policy-violation", "elements nested too deeply")
        element = Element((uri, local), defaultUri=uri)
        for key, value in attrs.items():
            attr_uri, attr_local = _split(key)
            element.attributes[(attr_uri, attr_local) if attr_uri else attr_local] = value
        if self._stack:
            self._stack[-1].addChild(element)
        else:
            self._mark = self._parser.CurrentByteIndex
        self._stack.append(element)

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._events.append(StreamClosed())
            return
        element = self._stack.pop()
        if not self._stack:
            self._mark = self._parser.CurrentByteIndex
            if not (self._framed and element.uri == FRAMING_NS):
                self._events.append(ElementReceived(element))

    def _text(self, data: str) -> None:
        if self._stack:
            self._stack[-1].addContent(data)
        elif data.strip() and self._depth >= 1:
            raise StreamError("not-well-formed", "text outside of stanzas")

