"""Fast serialisation of domish elements for the wire (the routing hot path)."""

from __future__ import annotations

from twisted.words.xish.domish import Element

from vw.xmpp.stanzas import STREAMS_NS

XML_NS = "http://www.w3.org/XML/1998/namespace"


def _escape_text(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _escape_attribute(text: str) -> str:
    text = _escape_text(text)
    if "'" in text:
        text = text.replace("'", "&apos;")
    if '"' in text:
        text = text.replace('"', "&quot;")
    return text


def serialize(element: Element, default_uri: str = "", stream_prefix: bool = False) -> str:
    """``element`` as XML text inside a parent whose default namespace is ``default_uri``.

    With ``stream_prefix`` the ``stream:`` prefix is taken as declared (a TCP
    stream), else it is declared where used (WebSocket frames, BOSH bodies).
    """
    if isinstance(element, Serialized):
        return element.xml
    out: list[str] = []
    _write(element, default_uri, stream_prefix, out)
    return "".join(out)


def _write(element: Element, default_uri: str, stream_prefix: bool, out: list[str]) -> None:
    uri = element.uri
    if uri == STREAMS_NS:
        name = "stream:" + element.name
        out.append("<" + name)
        if not stream_prefix:
            out.append(f" xmlns:stream='{STREAMS_NS}'")
        inner_default = default_uri
    else:
        name = element.name
        out.append("<" + name)
        if uri is not None and uri != default_uri:
            out.append(f" xmlns='{_escape_attribute(uri)}'")
            inner_default = uri
        else:
            inner_default = default_uri
    extra_prefixes = 0
    for key, value in element.attributes.items():
        if isinstance(key, tuple):
            attr_uri, local = key
            if attr_uri == XML_NS:
                out.append(f" xml:{local}='{_escape_attribute(value)}'")
            else:
                extra_prefixes += 1
                prefix = f"ns{extra_prefixes}"
                out.append(f" xmlns:{prefix}='{_escape_attribute(attr_uri)}' "
                           f"{prefix}:{local}='{_escape_attribute(value)}'")
        else:
            out.append(f" {key}='{_escape_attribute(value)}'")
    children = element.children
    if not children:
        out.append("/>")
        return
    out.append(">")
    for child in children:
        if isinstance(child, Element):
            _write(child, inner_default, stream_prefix, out)
        else:
            out.append(_escape_text(child))
    out.append(f"</{name}>")


class Serialized(Element):
    """A stanza already turned into text, kept for XEP-0198 retransmission."""

    def __init__(self, xml: str) -> None:
        super().__init__((None, "serialized"))
        self.xml = xml

    def toXml(self, *args: object, **kwargs: object) -> str:
        return self.xml
