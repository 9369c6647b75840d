"""The wire serialiser: what it writes parses back to the same element."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.words.xish.domish import Element

from vw.xmpp.serializer import Serialized, serialize
from vw.xmpp.stanzas import CLIENT_NS, STREAMS_NS
from vw.xmpp.xmlparser import XMLStreamParser

HEADER = (b"<stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams'>")


def parse_back(text: str) -> Element:
    parser = XMLStreamParser(max_stanza_bytes=10**7, max_depth=100)
    parser.feed(HEADER)
    (event,) = parser.feed(text.encode())
    return event.element


def shape(element: Element) -> tuple:
    children = []
    text = ""
    for child in element.children:
        if isinstance(child, Element):
            children.append(shape(child))
        else:
            text += child
    return (element.uri, element.name, sorted(element.attributes.items(), key=str), text, children)


names = st.sampled_from(["message", "body", "x", "item", "presence", "c", "nick"])
uris = st.sampled_from([CLIENT_NS, "urn:xmpp:ping", "http://jabber.org/protocol/muc#user", "u"])
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)


@st.composite
def elements(draw: st.DrawFn, depth: int = 0) -> Element:
    element = Element((draw(uris), draw(names)))
    for key in draw(st.lists(st.sampled_from(["to", "id", "type", "jid"]), unique=True,
                             max_size=3)):
        element[key] = draw(texts)
    if draw(st.booleans()):
        element[("http://www.w3.org/XML/1998/namespace", "lang")] = "en"
    if depth < 3:
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                element.addChild(draw(elements(depth=depth + 1)))
            else:
                text = draw(texts)
                if text:
                    element.addContent(text)
    return element


@settings(max_examples=300, deadline=None)
@given(elements())
def test_round_trip(element: Element) -> None:
    assert shape(parse_back(serialize(element))) == shape(element)
    assert shape(parse_back(serialize(element, CLIENT_NS))) == shape(element)


def test_default_namespace_is_not_repeated() -> None:
    message = Element((CLIENT_NS, "message"))
    message["to"] = "a@b"
    message.addElement("body", content="1 < 2 & 'x'")
    expected = "<message to='a@b'><body>1 &lt; 2 &amp; 'x'</body></message>"
    assert serialize(message, CLIENT_NS) == expected
    assert serialize(message).startswith("<message xmlns='jabber:client'")


def test_stream_prefix() -> None:
    features = Element((STREAMS_NS, "features"))
    features.addElement(("urn:ietf:params:xml:ns:xmpp-bind", "bind"))
    inside = "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    assert serialize(features, CLIENT_NS, stream_prefix=True) == "<stream:features>" + inside
    assert serialize(features) == f"<stream:features xmlns:stream='{STREAMS_NS}'>" + inside


def test_serialized_stanzas_pass_through() -> None:
    assert serialize(Serialized("<message/>"), CLIENT_NS) == "<message/>"
