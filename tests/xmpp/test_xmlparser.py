"""The restricted XML stream parser, on captured stream bytes and on hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vw.xmpp.errors import StreamError
from vw.xmpp.xmlparser import (
    FRAMING_NS,
    ElementReceived,
    StreamClosed,
    StreamOpened,
    XMLStreamParser,
)

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' "
          b"xml:lang='en'>")


def test_stream_header_stanzas_and_close() -> None:
    parser = XMLStreamParser()
    events = parser.feed(HEADER + b"<message to='a@localhost' type='chat'><body>hi &amp; "
                         b"bye</body></message> </stream:stream>")
    opened, received, closed = events
    assert opened == StreamOpened("http://etherx.jabber.org/streams", "stream",
                                  {"to": "localhost", "version": "1.0", "lang": "en"},
                                  "jabber:client")
    assert isinstance(received, ElementReceived)
    message = received.element
    assert (message.uri, message.name, message["to"]) == ("jabber:client", "message", "a@localhost")
    assert str(message.body) == "hi & bye"
    assert isinstance(closed, StreamClosed)


def test_bytes_split_anywhere_give_the_same_events() -> None:
    data = HEADER + "<message><body>héllo</body></message>".encode()
    whole = XMLStreamParser().feed(data)
    parser = XMLStreamParser()
    split = [event for i in range(len(data)) for event in parser.feed(data[i:i + 1])]
    assert [type(e) for e in split] == [type(e) for e in whole]
    assert str(split[1].element.body) == "héllo"


def test_framed_open_stanza_close() -> None:
    parser = XMLStreamParser(framed=True)
    (opened,) = parser.feed(f"<open xmlns='{FRAMING_NS}' to='localhost' version='1.0'/>".encode())
    assert opened.name == "open" and opened.attributes["to"] == "localhost"
    (iq,) = parser.feed(b"<iq xmlns='jabber:client' type='get' id='1'>"
                        b"<ping xmlns='urn:xmpp:ping'/></iq>")
    assert iq.element.firstChildElement().uri == "urn:xmpp:ping"
    assert parser.feed(f"<close xmlns='{FRAMING_NS}'/>".encode()) == [StreamClosed()]


@pytest.mark.parametrize("payload, condition", [
    (b"<!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER, "restricted-xml"),
    (HEADER + b"<!-- comment -->", "restricted-xml"),
    (HEADER + b"<?pi data?>", "restricted-xml"),
    (HEADER + b"<message><body>&undefined;</body></message>", "not-well-formed"),
    (HEADER + b"<message></iq>", "not-well-formed"),
    (HEADER + b"<x:message/>", "not-well-formed"),
    (HEADER + b"<a>" * 100, "policy-violation"),
    (HEADER + b"<message><body>" + b"x" * 300000, "policy-violation"),
])
def test_refused_input(payload: bytes, condition: str) -> None:
    with pytest.raises(StreamError) as caught:
        XMLStreamParser(max_stanza_bytes=262144, max_depth=48).feed(payload)
    assert caught.value.condition == condition


def test_size_limit_applies_to_data_dribbled_in() -> None:
    parser = XMLStreamParser(max_stanza_bytes=1000)
    parser.feed(HEADER + b"<message><body>")
    with pytest.raises(StreamError):
        for _ in range(200):
            parser.feed(b"xxxxxxxxxx")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_stream_errors(data: bytes) -> None:
    parser = XMLStreamParser(max_stanza_bytes=4096, max_depth=8)
    try:
        parser.feed(HEADER)
        parser.feed(data)
    except StreamError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["<a>", "</a>", "<b x='1'/>", "text", "&amp;", "<c xmlns='u'>",
                                 "</c>", "&lt;", "<!--", "]]>", "<![CDATA[x]]>", "\u00e9"]),
                max_size=60))
def test_tag_soup_raises_only_stream_errors(parts: list[str]) -> None:
    parser = XMLStreamParser(max_stanza_bytes=4096, max_depth=8, framed=True)
    try:
        for part in parts:
            parser.feed(part.encode())
    except StreamError:
        pass
