"""Jingle payloads: captured-shape parsing, round trips, the literal-xmlns wire form, errors,
malformed input and fuzzing."""

from __future__ import annotations

from xml.dom import expatbuilder, minidom

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.words.xish.domish import Element

from vw.bridge.colibri2 import (
    COLIBRI_NS,
    DTLS_NS,
    ICE_UDP_NS,
    JITMEET_NS,
    RTCP_FB_NS,
    RTP_HDREXT_NS,
    RTP_NS,
    SSMA_NS,
    Candidate,
    Fingerprint,
    HeaderExtension,
    IceUdpTransport,
    Parameter,
    PayloadType,
    RtcpFeedback,
    Source,
    SourceGroup,
    WebSocket,
)
from vw.focus.jingle import (
    FOCUS_NS,
    GROUPING_NS,
    JINGLE_ERRORS_NS,
    JINGLE_NS,
    MAX_CANDIDATES,
    MAX_CONTENTS,
    MAX_SOURCES,
    BridgeSession,
    Content,
    Group,
    Jingle,
    JingleError,
    Reason,
    RtpDescription,
    bad_request_reply,
    unknown_session_reply,
)
from vw.xmpp.errors import STANZA_ERRORS_NS, StreamError
from vw.xmpp.serializer import serialize
from vw.xmpp.stanzas import CLIENT_NS, first_child, stanza
from vw.xmpp.xmlparser import ElementReceived, XMLStreamParser

HEADER = (b"<stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams'>")


def parse_stanza(xml: str) -> Element:
    """One stanza, parsed by the project's stream parser after a client stream header."""
    parser = XMLStreamParser(max_stanza_bytes=10**7, max_depth=100)
    parser.feed(HEADER)
    events = parser.feed(xml.encode())
    (event,) = [e for e in events if isinstance(e, ElementReceived)]
    return event.element


def jingle_of(xml: str) -> Jingle:
    child = first_child(parse_stanza(xml))
    assert child is not None
    return Jingle.fromElement(child)


def in_iq(element: Element) -> Element:
    iq = stanza("iq", to="room@conference.example/b0b0b0b0",
                sender="room@conference.example/focus", stanza_type="set", stanza_id="j1")
    iq.addChild(element)
    return iq


def wire_round_trip(jingle: Jingle) -> Jingle:
    """``jingle`` inside an IQ, written by the wire serialiser and parsed back."""
    back = first_child(parse_stanza(serialize(in_iq(jingle.toElement()), default_uri=CLIENT_NS)))
    assert back is not None
    return Jingle.fromElement(back)


def wire_texts(jingle: Jingle) -> list[str]:
    """The IQ carrying ``jingle`` as the server's serialiser and as ``toXml`` write it."""
    return [serialize(in_iq(jingle.toElement()), default_uri=CLIENT_NS),
            in_iq(jingle.toElement()).toXml()]


# What lib-jitsi-meet (and Strophe) see: a DOM without namespace processing, where ``xmlns`` is
# an attribute like any other, matched by its literal text.
LITERAL_XMLNS = {
    "description": RTP_NS, "rtp-hdrext": RTP_HDREXT_NS, "rtcp-fb": RTCP_FB_NS,
    "ssrc-group": SSMA_NS, "ssrc-info": JITMEET_NS, "transport": ICE_UDP_NS,
    "fingerprint": DTLS_NS, "web-socket": COLIBRI_NS, "group": GROUPING_NS,
    "bridge-session": FOCUS_NS, "jingle": JINGLE_NS,
}


def dom(text: str) -> minidom.Element:
    return expatbuilder.parseString(text, namespaces=False).documentElement


def walk(node: minidom.Element) -> list[minidom.Element]:
    found = [node]
    for child in node.childNodes:
        if child.nodeType == child.ELEMENT_NODE:
            found += walk(child)
    return found


def assert_literal_xmlns(text: str) -> minidom.Element:
    """Every element the client matches by ``[xmlns="…"]`` carries that literal attribute; no
    prefixes anywhere; an ssrc-group's ``<source>``s carry none (or the client would count them
    as sources)."""
    root = dom(text)
    for node in walk(root):
        assert ":" not in node.tagName, text
        assert not any(":" in name for name in node.attributes.keys()), text
        if node.tagName in LITERAL_XMLNS:
            assert node.getAttribute("xmlns") == LITERAL_XMLNS[node.tagName], node.toxml()
        if node.tagName == "source":
            if node.parentNode.tagName == "ssrc-group":
                assert not node.hasAttribute("xmlns"), node.toxml()
            else:
                assert node.getAttribute("xmlns") == SSMA_NS, node.toxml()
    return root


def children(node: minidom.Element, name: str, xmlns: str | None = None) -> list[minidom.Element]:
    """jQuery's ``find('>name[xmlns="…"]')``."""
    return [c for c in node.childNodes if c.nodeType == c.ELEMENT_NODE and c.tagName == name
            and (xmlns is None or c.getAttribute("xmlns") == xmlns)]


# -- captured shapes (PROTOCOL.md §4) -----------------------------------------------------------

# lib-jitsi-meet's plan-B session-accept: sources with msid only, SIM + 3 FID groups, the DTLS
# fingerprint with setup="active", no candidates yet.
SESSION_ACCEPT = """
<iq xmlns='jabber:client' to='room@conference.example/focus' type='set' id='ab12:sendIQ'>
 <jingle xmlns='urn:xmpp:jingle:1' action='session-accept' initiator='room@conference.example/focus'
     responder='9f3c2a10-aaaa@example/res1' sid='a1b2c3'>
  <group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'>
   <content name='audio'/><content name='video'/>
  </group>
  <content creator='responder' name='audio' senders='both'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio' ssrc='1111'>
    <payload-type id='111' name='opus' clockrate='48000' channels='2'>
     <parameter name='minptime' value='10'/><parameter name='useinbandfec' value='1'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
    </payload-type>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1111'>
     <parameter name='msid' value='st-a tr-a'/>
    </source>
    <rtcp-mux/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'
        uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level' id='1'/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='5'
        uri='http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01'/>
   </description>
   <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='cU1x'
       pwd='cPcPcPcPcPcPcPcPcPcPcPcP'>
    <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256'
        setup='active'>12:34:56:78:9A:BC:DE:F0</fingerprint>
   </transport>
  </content>
  <content creator='responder' name='video' senders='both'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video' ssrc='1001'>
    <payload-type id='100' name='VP8' clockrate='90000'>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='ccm' subtype='fir'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
    </payload-type>
    <payload-type id='96' name='rtx' clockrate='90000'><parameter name='apt' value='100'/>
    </payload-type>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1001'>
     <parameter name='msid' value='st-1 tr-1'/></source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1002'>
     <parameter name='msid' value='st-1 tr-1'/></source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1003'>
     <parameter name='msid' value='st-1 tr-1'/></source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2001'>
     <parameter name='msid' value='st-1 tr-1'/></source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2002'>
     <parameter name='msid' value='st-1 tr-1'/></source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2003'>
     <parameter name='msid' value='st-1 tr-1'/></source>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='SIM'>
     <source ssrc='1001'/><source ssrc='1002'/><source ssrc='1003'/></ssrc-group>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
     <source ssrc='1001'/><source ssrc='2001'/></ssrc-group>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
     <source ssrc='1002'/><source ssrc='2002'/></ssrc-group>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
     <source ssrc='1003'/><source ssrc='2003'/></ssrc-group>
    <rtcp-mux/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'
        uri='http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time' id='3'/>
   </description>
   <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='cU1x'
       pwd='cPcPcPcPcPcPcPcPcPcPcPcP'>
    <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256'
        setup='active'>12:34:56:78:9A:BC:DE:F0</fingerprint>
   </transport>
  </content>
 </jingle>
</iq>
"""

# One trickled candidate: the content is named by the unified-plan mid "0", the fingerprint has
# required="true" and no setup, the host is an mDNS name.
TRANSPORT_INFO = """
<iq xmlns='jabber:client' to='room@conference.example/focus' type='set' id='ab12:sendIQ'>
 <jingle xmlns='urn:xmpp:jingle:1' action='transport-info' initiator='room@conference.example/focus'
     sid='a1b2c3'>
  <content creator='responder' name='0'>
   <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='cU1x'
       pwd='cPcPcPcPcPcPcPcPcPcPcPcP'>
    <candidate foundation='3516744513' component='1' protocol='udp' priority='2122260223'
        ip='6d9a3c1e-0b7f-4e2a-8c5d-1f2e3a4b5c6d.local' port='54321' type='host' generation='0'
        network='1' id='1k4q9z'/>
    <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256'
        required='true'>12:34:56:78:9A:BC:DE:F0</fingerprint>
   </transport>
  </content>
 </jingle>
</iq>
"""

SOURCE_ADD = """
<iq xmlns='jabber:client' to='room@conference.example/focus' type='set' id='ab13:sendIQ'>
 <jingle xmlns='urn:xmpp:jingle:1' action='source-add' initiator='room@conference.example/focus'
     sid='a1b2c3'>
  <content name='video'>
   <description xmlns='urn:xmpp:jingle:apps:rtp:1' media='video'>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3001'>
     <parameter name='msid' value='st-2 tr-2'/></source>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3002'>
     <parameter name='msid' value='st-2 tr-2'/></source>
    <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
     <source ssrc='3001'/><source ssrc='3002'/></ssrc-group>
   </description>
  </content>
 </jingle>
</iq>
"""

SOURCE_REMOVE = SOURCE_ADD.replace("source-add", "source-remove").replace("ab13", "ab14")

# The client gives up on ICE (IceFailedHandling) when the focus supports terminate-restart.
SESSION_TERMINATE = """
<iq xmlns='jabber:client' to='room@conference.example/focus' type='set' id='ab15:sendIQ'>
 <jingle xmlns='urn:xmpp:jingle:1' action='session-terminate'
     initiator='room@conference.example/focus' sid='a1b2c3'>
  <reason><connectivity-error/><text>ICE FAILED</text></reason>
  <bridge-session xmlns='http://jitsi.org/protocol/focus' id='bs-1' restart='true'/>
 </jingle>
</iq>
"""

SESSION_INFO = """
<iq xmlns='jabber:client' to='room@conference.example/focus' type='set' id='ab16:sendIQ'>
 <jingle xmlns='urn:xmpp:jingle:1' action='session-info' initiator='room@conference.example/focus'
     sid='a1b2c3'>
  <ice-state xmlns='http://jitsi.org/protocol/focus'>failed</ice-state>
  <bridge-session xmlns='http://jitsi.org/protocol/focus' id='bs-1'/>
 </jingle>
</iq>
"""


def test_session_accept() -> None:
    jingle = jingle_of(SESSION_ACCEPT)
    assert (jingle.action, jingle.sid) == ("session-accept", "a1b2c3")
    assert jingle.initiator == "room@conference.example/focus"
    assert jingle.responder == "9f3c2a10-aaaa@example/res1"
    assert jingle.bundle == Group("BUNDLE", ["audio", "video"])
    audio, video = jingle.contents
    assert (audio.name, audio.creator, audio.senders) == ("audio", "responder", "both")
    assert audio.description is not None and video.description is not None
    assert audio.description.ssrc == 1111 and audio.description.rtcp_mux
    assert audio.description.payload_types == [PayloadType(
        111, "opus", 48000, 2, [Parameter("minptime", "10"), Parameter("useinbandfec", "1")],
        [RtcpFeedback("transport-cc")])]
    assert [e.id for e in audio.description.header_extensions] == [1, 5]
    assert audio.description.sources == [Source(1111, parameters=[Parameter("msid",
                                                                            "st-a tr-a")])]
    assert [s.ssrc for s in video.description.sources] == [1001, 1002, 1003, 2001, 2002, 2003]
    assert {s.msid for s in video.description.sources} == {"st-1 tr-1"}
    assert video.description.groups == [
        SourceGroup("SIM", [1001, 1002, 1003]), SourceGroup("FID", [1001, 2001]),
        SourceGroup("FID", [1002, 2002]), SourceGroup("FID", [1003, 2003])]
    assert video.transport == IceUdpTransport(
        "cU1x", "cPcPcPcPcPcPcPcPcPcPcPcP",
        [Fingerprint("sha-256", "active", "12:34:56:78:9A:BC:DE:F0")])
    assert jingle.reason is None and jingle.bridge_session is None
    assert wire_round_trip(jingle) == jingle


def test_transport_info() -> None:
    jingle = jingle_of(TRANSPORT_INFO)
    (content,) = jingle.contents
    assert content.name == "0" and content.description is None
    assert content.transport is not None
    (candidate,) = content.transport.candidates
    assert candidate == Candidate(
        component=1, foundation="3516744513", ip="6d9a3c1e-0b7f-4e2a-8c5d-1f2e3a4b5c6d.local",
        port=54321, priority=2122260223, protocol="udp", type="host", generation=0, id="1k4q9z",
        network=1)
    assert content.transport.fingerprints == [
        Fingerprint("sha-256", None, "12:34:56:78:9A:BC:DE:F0", True)]
    assert wire_round_trip(jingle) == jingle


@pytest.mark.parametrize("xml", [SOURCE_ADD, SOURCE_REMOVE])
def test_source_add_and_remove(xml: str) -> None:
    jingle = jingle_of(xml)
    assert jingle.action in ("source-add", "source-remove")
    (content,) = jingle.contents
    assert content.name == "video" and content.creator is None and content.transport is None
    assert content.description == RtpDescription("video", sources=[
        Source(3001, parameters=[Parameter("msid", "st-2 tr-2")]),
        Source(3002, parameters=[Parameter("msid", "st-2 tr-2")])],
        groups=[SourceGroup("FID", [3001, 3002])])
    assert wire_round_trip(jingle) == jingle


def test_session_terminate_asking_for_a_restart() -> None:
    jingle = jingle_of(SESSION_TERMINATE)
    assert jingle.reason == Reason("connectivity-error", "ICE FAILED")
    assert jingle.bridge_session == BridgeSession("bs-1", True)
    assert jingle.contents == [] and jingle.bundle is None
    assert wire_round_trip(jingle) == jingle


def test_session_info_ice_failed() -> None:
    jingle = jingle_of(SESSION_INFO)
    assert jingle.ice_state == "failed"
    assert jingle.bridge_session == BridgeSession("bs-1")
    assert wire_round_trip(jingle) == jingle


def test_reason_without_text_and_ignored_extras() -> None:
    jingle = jingle_of(
        "<iq xmlns='jabber:client' type='set' id='t'><jingle xmlns='urn:xmpp:jingle:1' "
        "action='session-terminate' sid='s'><reason><success/></reason>"
        "<startmuted xmlns='http://jitsi.org/jitmeet' audio='true'/>"
        "<content name='data'><transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'>"
        "<sctpmap xmlns='urn:xmpp:jingle:transports:dtls-sctp:1' number='5000'/></transport>"
        "</content></jingle></iq>")
    assert jingle.reason == Reason("success")
    assert jingle.contents == [Content("data", transport=IceUdpTransport())]


def test_rid_sources_are_skipped() -> None:
    """Firefox's RID simulcast signals ``<source rid/>`` with no SSRC; it is not an error."""
    description = RtpDescription.fromElement(parse_stanza(
        f"<description xmlns='{RTP_NS}' media='video'>"
        f"<source xmlns='{SSMA_NS}' ssrc='5'/><source xmlns='{SSMA_NS}' rid='hi'/>"
        f"<rid-group xmlns='{SSMA_NS}' semantics='SIM'><source rid='hi'/></rid-group>"
        "</description>"))
    assert description.sources == [Source(5)]


# -- the wire form ------------------------------------------------------------------------------

def full_offer() -> Jingle:
    """A jicofo-like offer using every element the client matches by literal xmlns."""
    transport = IceUdpTransport(
        "u1", "p1p1p1p1p1p1p1p1p1p1p1",
        [Fingerprint("sha-256", "actpass", "AB:CD")],
        [Candidate(component=1, foundation="1", ip="192.0.2.7", port=10000,
                   priority=2130706431, protocol="udp", type="host", generation=0, id="c1",
                   network=0),
         Candidate(component=1, foundation="2", ip="203.0.113.9", port=10000,
                   priority=1694498815, protocol="udp", type="srflx", generation=0, id="c2",
                   network=0, rel_addr="192.0.2.7", rel_port=10000)],
        rtcp_mux=True, web_sockets=[WebSocket("wss://example/colibri-ws/b1/c9/b0b0b0b0?pwd=p1")])
    video = RtpDescription(
        "video",
        payload_types=[PayloadType(100, "VP8", 90000, rtcp_fbs=[RtcpFeedback("ccm", "fir"),
                                                                RtcpFeedback("nack")]),
                       PayloadType(96, "rtx", 90000, parameters=[Parameter("apt", "100")])],
        header_extensions=[HeaderExtension(3, "http://www.webrtc.org/experiments/rtp-hdrext/"
                                              "abs-send-time")],
        rtcp_fbs=[RtcpFeedback("goog-remb")],
        sources=[Source(4000002, owner="jvb",
                        parameters=[Parameter("msid", "mixedmslabel mixedlabelvideo0")]),
                 Source(1001, owner="room@conference.example/c0c0c0c0",
                        parameters=[Parameter("msid", "s-1 t-1")]),
                 Source(2001, owner="room@conference.example/c0c0c0c0",
                        parameters=[Parameter("msid", "s-1 t-1")])],
        groups=[SourceGroup("FID", [1001, 2001])], rtcp_mux=True)
    return Jingle("session-initiate", "a1b2", initiator="focus@auth.example/focus",
                  contents=[Content("video", "initiator", "both", video, transport)],
                  groups=[Group("BUNDLE", ["video"])], bridge_session=BridgeSession("bs-1"))


def test_wire_form_has_literal_xmlns() -> None:
    for text in wire_texts(full_offer()):
        root = assert_literal_xmlns(text)
        (jingle,) = children(root, "jingle", JINGLE_NS)
        (content,) = children(jingle, "content")
        (description,) = children(content, "description")
        # LJM: a=rtcp-mux comes only from <description><rtcp-mux/>.
        assert children(description, "rtcp-mux")
        assert len(children(description, "source", SSMA_NS)) == 3
        assert len(children(description, "ssrc-group", SSMA_NS)) == 1
        assert len(children(description, "rtcp-fb", RTCP_FB_NS)) == 1
        (payload_type,) = [p for p in children(description, "payload-type")
                           if p.getAttribute("id") == "100"]
        assert len(children(payload_type, "rtcp-fb", RTCP_FB_NS)) == 2
        (transport,) = children(content, "transport", ICE_UDP_NS)
        assert children(transport, "fingerprint", DTLS_NS)[0].getAttribute("setup") == "actpass"
        assert len(children(transport, "candidate")) == 2
        assert children(jingle, "group", GROUPING_NS)
        assert children(jingle, "bridge-session", FOCUS_NS)[0].getAttribute("id") == "bs-1"


def test_wire_form_of_parsed_input_has_literal_xmlns() -> None:
    """Re-serialising what a client sent (parsed, then rebuilt) gives the same literal form."""
    for xml in (SESSION_ACCEPT, TRANSPORT_INFO, SOURCE_ADD, SESSION_TERMINATE):
        for text in wire_texts(jingle_of(xml)):
            assert_literal_xmlns(text)


# -- error replies ------------------------------------------------------------------------------

def jingle_iq() -> Element:
    iq = stanza("iq", to="room@conference.example/focus",
                sender="room@conference.example/b0b0b0b0", stanza_type="set", stanza_id="q7")
    iq.addChild(Jingle("transport-info", "nope").toElement())
    return iq


def test_unknown_session_reply() -> None:
    reply = unknown_session_reply(jingle_iq())
    assert reply is not None
    assert (reply["type"], reply["id"]) == ("error", "q7")
    assert reply["to"] == "room@conference.example/b0b0b0b0"
    assert reply["from"] == "room@conference.example/focus"
    for text in (serialize(reply, default_uri=CLIENT_NS), reply.toXml()):
        (error,) = children(dom(text), "error")
        assert error.getAttribute("type") == "cancel"
        assert [(c.tagName, c.getAttribute("xmlns")) for c in error.childNodes] == [
            ("item-not-found", STANZA_ERRORS_NS), ("unknown-session", JINGLE_ERRORS_NS)]


def test_bad_request_reply() -> None:
    reply = bad_request_reply(jingle_iq(), "unknown action")
    assert reply is not None
    (error,) = children(dom(serialize(reply, default_uri=CLIENT_NS)), "error")
    assert error.getAttribute("type") == "modify"
    assert [c.tagName for c in error.childNodes] == ["bad-request", "text"]
    assert error.childNodes[1].firstChild.data == "unknown action"


def test_no_reply_to_results_and_errors() -> None:
    for kind in ("result", "error"):
        iq = jingle_iq()
        iq["type"] = kind
        assert unknown_session_reply(iq) is None and bad_request_reply(iq) is None


def test_jingle_error_conditions() -> None:
    error = JingleError(jingle_condition="out-of-order")
    assert (error.condition, error.error_type) == ("unexpected-request", "wait")
    assert [c.name for c in error.to_element().elements()] == ["unexpected-request",
                                                               "out-of-order"]
    assert JingleError("conflict", "tie-break").condition == "conflict"
    with pytest.raises(ValueError, match="unknown Jingle error condition"):
        JingleError(jingle_condition="bogus")
    with pytest.raises(ValueError, match="needs a condition"):
        JingleError()


# -- malformed input ----------------------------------------------------------------------------

def jingle_xml(body: str = "", attrs: str = "action='session-accept' sid='s'") -> str:
    return (f"<iq xmlns='jabber:client' type='set' id='m'><jingle xmlns='{JINGLE_NS}' {attrs}>"
            f"{body}</jingle></iq>")


def content(body: str, attrs: str = "name='audio'") -> str:
    return f"<content {attrs}>{body}</content>"


def description(body: str = "", attrs: str = "media='audio'") -> str:
    return content(f"<description xmlns='{RTP_NS}' {attrs}>{body}</description>")


@pytest.mark.parametrize(("body", "attrs", "message"), [
    ("", "sid='s'", "<jingle/> is missing 'action'"),
    ("", "action='session-accept'", "<jingle/> is missing 'sid'"),
    ("", "action='session-accept' sid=''", "<jingle/> has an empty 'sid'"),
    ("", "action='session-dance' sid='s'", "<jingle/> has an unknown action: 'session-dance'"),
    ("", "action='addsource' sid='s'", "<jingle/> has an unknown action"),
    (content("", "creator='initiator'"), None, "<content/> is missing 'name'"),
    (content("", "name='a' creator='both'"), None, "<content/> has an unknown 'creator'"),
    (content("", "name='a' senders='all'"), None, "<content/> has an unknown 'senders'"),
    (content("<description xmlns='urn:xmpp:jingle:apps:file-transfer:5'/>"), None,
     "expected <description xmlns='urn:xmpp:jingle:apps:rtp:1'/>"),
    (content("<transport xmlns='urn:xmpp:jingle:transports:raw-udp:1'/>"), None,
     "expected <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1'/>"),
    (description("", ""), None, "<description/> is missing 'media'"),
    (description("", "media='text'"), None, "<description/> has an unknown 'media': 'text'"),
    (description("", "media='audio' ssrc='x'"), None,
     "<description/> 'ssrc' is not an integer: 'x'"),
    (description("", "media='audio' ssrc='4294967296'"), None, "<description/> 'ssrc' out of"),
    (description(f"<source xmlns='{SSMA_NS}' ssrc='-3'/>"), None, "<source/> 'ssrc' out of"),
    (description(f"<source xmlns='{SSMA_NS}'/>"), None, "<source/> is missing 'ssrc'"),
    (description(f"<ssrc-group xmlns='{SSMA_NS}' semantics='FID'><source ssrc='0x1'/>"
                 "</ssrc-group>"), None, "<source/> 'ssrc' is not an integer"),
    (description(f"<ssrc-group xmlns='{SSMA_NS}'/>"), None, "<ssrc-group/> is missing"),
    (description("<payload-type id='300'/>"), None, "<payload-type/> 'id' out of range"),
    (description(f"<rtp-hdrext xmlns='{RTP_HDREXT_NS}' uri='u' id='a'/>"), None,
     "<rtp-hdrext/> 'id' is not an integer"),
    (description(f"<rtcp-fb xmlns='{RTCP_FB_NS}'/>"), None, "<rtcp-fb/> is missing 'type'"),
    (description(f"<source xmlns='{SSMA_NS}' ssrc='1'/>" * (MAX_SOURCES + 1)), None,
     f"<description/> has more than {MAX_SOURCES} <source/>"),
    (content("") * (MAX_CONTENTS + 1), None, f"<jingle/> has more than {MAX_CONTENTS}"),
    (content(f"<transport xmlns='{ICE_UDP_NS}'>" + "<candidate/>" * (MAX_CANDIDATES + 1)
             + "</transport>"), None, f"<transport/> has more than {MAX_CANDIDATES} <candidate/>"),
    (content(f"<transport xmlns='{ICE_UDP_NS}'><candidate/></transport>"), None,
     "<candidate/> is missing"),
    (content(f"<transport xmlns='{ICE_UDP_NS}'><fingerprint xmlns='{DTLS_NS}' "
             "hash='sha-256' setup='sideways'>AA</fingerprint></transport>"), None,
     "<fingerprint/> has an unknown 'setup'"),
    (f"<group xmlns='{GROUPING_NS}'><content name='a'/></group>", None,
     "<group/> is missing 'semantics'"),
    (f"<group xmlns='{GROUPING_NS}' semantics='BUNDLE'><content/></group>", None,
     "<content/> is missing 'name'"),
    ("<reason/>", None, "<reason/> has no condition"),
    ("<reason><text>why</text></reason>", None, "<reason/> has no condition"),
    ("<reason><on-fire/></reason>", None, "<reason/> has an unknown condition: 'on-fire'"),
    (f"<bridge-session xmlns='{FOCUS_NS}'/>", None, "<bridge-session/> is missing 'id'"),
    (f"<bridge-session xmlns='{FOCUS_NS}' id='b' restart='please'/>", None,
     "<bridge-session/> 'restart' is not a boolean"),
])
def test_malformed(body: str, attrs: str | None, message: str) -> None:
    xml = jingle_xml(body) if attrs is None else jingle_xml(body, attrs)
    with pytest.raises(ValueError) as info:
        jingle_of(xml)
    assert str(info.value).startswith(message)


def test_wrong_element() -> None:
    with pytest.raises(ValueError, match="expected <jingle xmlns='urn:xmpp:jingle:1'/>"):
        Jingle.fromElement(Element(("urn:xmpp:jingle:0", "jingle")))
    with pytest.raises(ValueError, match="expected <jingle"):
        Jingle.fromElement(Element((JINGLE_NS, "content")))
    with pytest.raises(ValueError, match="expected <content"):
        Content.fromElement(Element((RTP_NS, "content")))


def test_foreign_children_are_ignored() -> None:
    """Children in other namespaces are extensions: a ``<source>`` outside ssma, a ``<group>``
    outside grouping, a ``<reason>`` outside Jingle."""
    jingle = jingle_of(jingle_xml(
        description("<source ssrc='9'/><source xmlns='x:y' ssrc='bad'/>")
        + "<group xmlns='x:y'/><reason xmlns='x:y'/><bridge-session id='x'/>"))
    assert jingle.contents[0].description == RtpDescription("audio")
    assert jingle.groups == [] and jingle.reason is None and jingle.bridge_session is None


# -- generated round trips ----------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn")),
                max_size=12)
names = texts.filter(bool)
stripped = texts.filter(lambda t: t == t.strip())
maybe_text = st.none() | texts
ssrcs = st.integers(0, 0xFFFFFFFF)
small = {"max_size": 3}

parameters = st.builds(Parameter, names, maybe_text)
feedback = st.builds(RtcpFeedback, names, maybe_text)
payload_types = st.builds(
    PayloadType, st.integers(0, 127), maybe_text, st.none() | st.integers(1, 0xFFFFFFFF),
    st.none() | st.integers(1, 255), st.lists(parameters, **small), st.lists(feedback, **small))
sources = st.builds(Source, ssrcs, maybe_text, maybe_text, st.lists(parameters, **small))
descriptions = st.builds(
    RtpDescription, st.sampled_from(["audio", "video", "application"]), st.none() | ssrcs,
    st.lists(payload_types, **small),
    st.lists(st.builds(HeaderExtension, st.integers(1, 255), names, maybe_text), **small),
    st.lists(feedback, **small), st.lists(sources, **small),
    st.lists(st.builds(SourceGroup, names, st.lists(ssrcs, **small)), **small), st.booleans())
candidates = st.builds(
    Candidate, component=st.integers(1, 256), foundation=names, ip=names,
    port=st.integers(0, 65535), priority=ssrcs, protocol=st.sampled_from(["udp", "tcp"]),
    type=st.sampled_from(["host", "srflx", "prflx", "relay"]),
    generation=st.none() | st.integers(0, 65535), id=maybe_text,
    rel_addr=maybe_text, rel_port=st.none() | st.integers(0, 65535), tcptype=maybe_text)
transports = st.builds(
    IceUdpTransport, maybe_text, maybe_text,
    st.lists(st.builds(Fingerprint, names, st.none() | st.sampled_from(["active", "actpass"]),
                       st.text(alphabet="0123456789ABCDEF:", min_size=1, max_size=20),
                       st.none() | st.booleans()), **small),
    st.lists(candidates, **small), st.booleans(),
    st.lists(st.builds(WebSocket, names, st.none() | st.booleans()), **small))
contents = st.builds(
    Content, names, st.none() | st.sampled_from(["initiator", "responder"]),
    st.none() | st.sampled_from(["both", "none", "initiator", "responder", "rejected"]),
    st.none() | descriptions, st.none() | transports)
jingles = st.builds(
    Jingle, st.sampled_from(sorted(["session-initiate", "session-accept", "source-add",
                                    "transport-info", "session-terminate", "session-info"])),
    names, maybe_text, maybe_text, st.lists(contents, **small),
    st.lists(st.builds(Group, names, st.lists(names, **small)), max_size=2),
    st.none() | st.builds(Reason, st.sampled_from(["success", "connectivity-error", "gone"]),
                          st.none() | stripped),
    st.none() | st.builds(BridgeSession, names, st.none() | st.booleans()),
    st.none() | stripped)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jingles)
def test_round_trip(jingle: Jingle) -> None:
    assert Jingle.fromElement(jingle.toElement()) == jingle
    assert wire_round_trip(jingle) == jingle
    for text in wire_texts(jingle):
        assert_literal_xmlns(text)


# -- fuzzing ------------------------------------------------------------------------------------

VOCABULARY = [(JINGLE_NS, n) for n in ("jingle", "content", "reason", "text", "success",
                                       "connectivity-error", "bogus")] + [
    (RTP_NS, "description"), (RTP_NS, "payload-type"), (RTP_NS, "parameter"),
    (RTP_NS, "rtcp-mux"), (RTCP_FB_NS, "rtcp-fb"), (RTP_HDREXT_NS, "rtp-hdrext"),
    (ICE_UDP_NS, "transport"), (ICE_UDP_NS, "candidate"), (DTLS_NS, "fingerprint"),
    (COLIBRI_NS, "web-socket"), (SSMA_NS, "source"), (SSMA_NS, "ssrc-group"),
    (SSMA_NS, "parameter"), (JITMEET_NS, "ssrc-info"), (GROUPING_NS, "group"),
    (GROUPING_NS, "content"), (FOCUS_NS, "bridge-session"), (FOCUS_NS, "ice-state"),
    ("x:y", "content"), ("urn:xmpp:jingle:apps:rtp:1", "source"),
]
ATTRIBUTES = [
    "action", "sid", "initiator", "responder", "name", "creator", "senders", "media", "ssrc",
    "id", "clockrate", "channels", "type", "subtype", "uri", "semantics", "owner", "value",
    "ufrag", "pwd", "hash", "setup", "required", "component", "foundation", "ip", "port",
    "priority", "protocol", "generation", "network", "rel-port", "url", "restart", "rid",
]
VALUES = st.sampled_from([
    "", "0", "1", "-1", "127", "128", "65535", "65536", "4294967295", "4294967296", "true",
    "false", "audio", "video", "application", "session-accept", "source-add", "bogus", "both",
    "initiator", "rejected", "host", "udp", "active", "actpass", "SIM", "FID", "BUNDLE", "1e3",
    "0x10", " 5", "99999999999999999999999", "\u00e9\u4e2d",
]) | texts


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> Element:
    uri, name = draw(st.sampled_from(VOCABULARY))
    element = Element((uri, name), defaultUri=uri)
    for attr in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=5, unique=True)):
        element[attr] = draw(VALUES)
    if depth < 4:
        for child in draw(st.lists(trees(depth + 1), max_size=4)):
            element.addChild(child)
    if draw(st.booleans()):
        element.addContent(draw(texts))
    return element


@st.composite
def jingle_trees(draw: st.DrawFn) -> Element:
    root = Element((JINGLE_NS, "jingle"), defaultUri=JINGLE_NS)
    for attr in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=4, unique=True)):
        root[attr] = draw(VALUES)
    for child in draw(st.lists(trees(1), max_size=5)):
        root.addChild(child)
    return root


def _walk(element: Element) -> list[Element]:
    found = [element]
    for child in element.elements():
        found.extend(_walk(child))
    return found


CAPTURED = [SESSION_ACCEPT, TRANSPORT_INFO, SOURCE_ADD, SESSION_TERMINATE, SESSION_INFO]


@st.composite
def mutated(draw: st.DrawFn) -> Element:
    """A captured or generated Jingle with attributes changed or dropped and subtrees grafted or
    pruned."""
    if draw(st.booleans()):
        root = first_child(parse_stanza(draw(st.sampled_from(CAPTURED))))
        assert root is not None
    else:
        root = draw(jingles).toElement()
    for _ in range(draw(st.integers(1, 5))):
        target = draw(st.sampled_from(_walk(root)))
        action = draw(st.sampled_from(["set", "drop", "graft", "prune", "rename"]))
        if action == "set":
            target[draw(st.sampled_from(ATTRIBUTES))] = draw(VALUES)
        elif action == "drop" and target.attributes:
            del target.attributes[draw(st.sampled_from(sorted(target.attributes)))]
        elif action == "graft":
            target.addChild(draw(trees(2)))
        elif action == "prune" and target.children:
            target.children.pop(draw(st.integers(0, len(target.children) - 1)))
        elif action == "rename":
            target.uri, target.name = draw(st.sampled_from(VOCABULARY))
    return root


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(jingle_trees() | trees() | mutated())
def test_fuzz(element: Element) -> None:
    try:
        jingle = Jingle.fromElement(element)
    except ValueError:
        return
    assert Jingle.fromElement(jingle.toElement()) == jingle


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(CAPTURED), st.data())
def test_fuzz_text(xml: str, data: st.DataObject) -> None:
    """Byte-level damage to captured stanzas: whatever still parses as XML parses as Jingle or
    raises ValueError."""
    raw = xml.encode()
    start = data.draw(st.integers(0, len(raw) - 1))
    damaged = raw[:start] + data.draw(st.binary(max_size=8)) + raw[start + data.draw(
        st.integers(0, 8)):]
    parser = XMLStreamParser(max_stanza_bytes=10**7, max_depth=100)
    parser.feed(HEADER)
    try:
        events = parser.feed(damaged)
    except StreamError:  # not XML any more: the stream layer's business
        return
    for event in events:
        if isinstance(event, ElementReceived):
            payload = first_child(event.element)
            if payload is not None:
                try:
                    Jingle.fromElement(payload)
                except ValueError:
                    pass
