"""Colibri2 payloads: captured-shape parsing, round trips, malformed input, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.words.xish.domish import Element

from vw.bridge.colibri2 import (
    CAP_SOURCE_NAMES,
    COLIBRI2_NS,
    COLIBRI_NS,
    DTLS_NS,
    ICE_UDP_NS,
    JITMEET_NS,
    RTCP_FB_NS,
    RTP_HDREXT_NS,
    RTP_NS,
    SSMA_NS,
    Candidate,
    Colibri2Error,
    ConferenceModified,
    ConferenceModify,
    Endpoint,
    Fingerprint,
    ForceMute,
    HeaderExtension,
    IceUdpTransport,
    Media,
    MediaSource,
    Parameter,
    PayloadType,
    Relay,
    RtcpFeedback,
    Sctp,
    Source,
    SourceGroup,
    Transport,
    WebSocket,
    colibri2_error_reply,
)
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


def payload(xml: str) -> Element:
    child = first_child(parse_stanza(xml))
    assert child is not None
    return child


def wire_round_trip(element: Element) -> Element:
    """``element`` inside an IQ, written by the wire serialiser and parsed back."""
    iq = stanza("iq", to="jvb@example", stanza_type="set", stanza_id="r1")
    iq.addChild(element)
    back = first_child(parse_stanza(serialize(iq, default_uri=CLIENT_NS)))
    assert back is not None
    return back


# -- captured shapes ----------------------------------------------------------------------------
# Modelled on jicofo 552164c1 Colibri2Session.sendAllocationRequest with JingleOfferFactory's
# default offer (the IQ type is Smack's default, "get").

FIRST_ALLOCATION = """
<iq xmlns='jabber:client' to='jvbbrewery@internal.auth.meet.example/jvb1' id='aB3dE-12'
    type='get'>
 <conference-modify xmlns='jitsi:colibri2' meeting-id='5b2e4f1c-8e2a-4d0a-9f3e-1a2b3c4d5e6f'
     name='room1@conference.meet.example' create='true'>
  <endpoint xmlns='jitsi:colibri2' id='abcd1234' create='true' stats-id='Fredrick-Xq1'>
   <media type='audio'>
    <payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' name='opus' clockrate='48000' channels='2'
        id='111'>
     <parameter name='minptime' value='10'/>
     <parameter name='useinbandfec' value='1'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
    </payload-type>
    <payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' name='ISAC' clockrate='16000' id='103'/>
    <payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' name='telephone-event' clockrate='8000'
        id='126'/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='1'
        uri='urn:ietf:params:rtp-hdrext:ssrc-audio-level'/>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='5'
        uri='http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01'/>
   </media>
   <media type='video'>
    <payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' name='VP8' clockrate='90000' id='100'>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='ccm' subtype='fir'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='nack' subtype='pli'/>
     <rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type='transport-cc'/>
    </payload-type>
    <payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' name='rtx' clockrate='90000' id='96'>
     <parameter name='apt' value='100'/>
    </payload-type>
    <rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id='3'
        uri='http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time'/>
   </media>
   <transport ice-controlling='true'/>
  </endpoint>
 </conference-modify>
</iq>
"""

# JVB 7e881954 Colibri2ConferenceHandler: transport from Endpoint.describeTransport (candidates,
# rtcp-mux, fingerprint, web-socket) and, because create=true, the feedback sources.
ALLOCATION_ANSWER = """
<iq xmlns='jabber:client' from='jvbbrewery@internal.auth.meet.example/jvb1'
    to='focus@auth.meet.example/focus' id='aB3dE-12' type='result'>
 <conference-modified xmlns='jitsi:colibri2'>
  <endpoint xmlns='jitsi:colibri2' id='abcd1234'>
   <transport>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='8t1sf1fp9dq4s3'
        pwd='3kh1qbv1bfqq4k4vjq0b3ebtbb'>
     <candidate component='1' foundation='1' generation='0' id='653aa1ba295b62d0ffffffffdf4c9a9c'
         network='0' priority='2130706431' protocol='udp' type='host' ip='10.0.0.5'
         port='10000'/>
     <candidate component='1' foundation='2' generation='0' id='653aa1ba295b62d0ffffffffe3a4c0b4'
         network='0' priority='1694498815' protocol='udp' type='srflx' ip='203.0.113.9'
         port='10000' rel-addr='10.0.0.5' rel-port='10000'/>
     <rtcp-mux/>
     <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='actpass'
       >1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00:1F:2E:3D:4C:5B:6A:79:88:97:A6:B5:C4:D3:E2:F1:00</fingerprint>
     <web-socket xmlns='http://jitsi.org/protocol/colibri'
         url='wss://meet.example/colibri-ws/jvb1/5f2d0c1e9a/abcd1234?pwd=3kh1qbv1bfqq4k4vjq0b3ebtbb'/>
    </transport>
   </transport>
  </endpoint>
  <sources>
   <media-source type='audio' id='jvb-a0'>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3123441421' name='jvb-a0'>
     <parameter xmlns='urn:xmpp:jingle:apps:rtp:1' name='msid'
         value='mixedmslabel mixedlabelaudio0'/>
    </source>
   </media-source>
   <media-source type='video' id='jvb-v0'>
    <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='902381556' name='jvb-v0'>
     <parameter xmlns='urn:xmpp:jingle:apps:rtp:1' name='msid'
         value='mixedmslabel mixedlabelvideo0'/>
    </source>
   </media-source>
  </sources>
 </conference-modified>
</iq>
"""

# Colibri2Session.updateParticipant after session-accept: the client's transport and its
# complete source set (ConferenceSourceMap.toColibriMediaSources: no msid, no ssrc-info).
UPDATE_WITH_SOURCES = """
<iq xmlns='jabber:client' to='jvbbrewery@internal.auth.meet.example/jvb1' id='aB3dE-13'
    type='get'>
 <conference-modify xmlns='jitsi:colibri2' meeting-id='5b2e4f1c-8e2a-4d0a-9f3e-1a2b3c4d5e6f'>
  <endpoint xmlns='jitsi:colibri2' id='abcd1234' stats-id='Fredrick-Xq1'>
   <transport>
    <transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag='Qx1b'
        pwd='y3dQ1p0sK9fRr2wE8tZc5vNm'>
     <fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash='sha-256' setup='active'
         required='true'>AA:BB:CC:DD</fingerprint>
     <candidate component='1' foundation='3516744513' generation='0' id='1k4q9z'
         network='1' priority='2122260223' protocol='udp' type='host'
         ip='6d9a3c1e-0b7f-4e2a-8c5d-1f2e3a4b5c6d.local' port='54321'/>
     <candidate component='1' foundation='842163049' generation='0' id='8p2m1x'
         network='1' priority='1518280447' protocol='tcp' type='host' ip='192.0.2.44' port='9'
         tcptype='active'/>
    </transport>
   </transport>
   <sources>
    <media-source type='audio' id='abcd1234-a0'>
     <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1111'/>
    </media-source>
    <media-source type='video' id='abcd1234-v0'>
     <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2001'/>
     <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2002'/>
     <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='2003'/>
     <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3001'/>
     <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3002'/>
     <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='3003'/>
     <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='SIM'>
      <source ssrc='2001'/><source ssrc='2002'/><source ssrc='2003'/>
     </ssrc-group>
     <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
      <source ssrc='2001'/><source ssrc='3001'/>
     </ssrc-group>
     <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
      <source ssrc='2002'/><source ssrc='3002'/>
     </ssrc-group>
     <ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics='FID'>
      <source ssrc='2003'/><source ssrc='3003'/>
     </ssrc-group>
    </media-source>
   </sources>
  </endpoint>
 </conference-modify>
</iq>
"""

EXPIRE = """
<iq xmlns='jabber:client' to='jvbbrewery@internal.auth.meet.example/jvb1' id='aB3dE-20'
    type='get'>
 <conference-modify xmlns='jitsi:colibri2' meeting-id='5b2e4f1c-8e2a-4d0a-9f3e-1a2b3c4d5e6f'>
  <endpoint xmlns='jitsi:colibri2' id='abcd1234' expire='true'/>
  <endpoint xmlns='jitsi:colibri2' id='ef567890' expire='true'/>
 </conference-modify>
</iq>
"""

# The later (2022-03+) allocation: capability, sctp, force-mute, initial-last-n, muc-role.
LATER_ALLOCATION = """
<iq xmlns='jabber:client' to='jvbbrewery@internal.auth.meet.example/jvb1' id='x9' type='set'>
 <conference-modify xmlns='jitsi:colibri2' meeting-id='m-1' name='room2@conference.meet.example'
     rtcstats-enabled='false' callstats-enabled='false' create='true'>
  <endpoint id='0f0f0f0f' create='true' stats-id='Anna-1' muc-role='visitor'>
   <media type='audio'>
    <payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' name='opus' clockrate='48000' channels='2'
        id='111'/>
   </media>
   <transport ice-controlling='true'><sctp/></transport>
   <force-mute audio='true'/>
   <capability name='source-names'/>
   <capability name='ssrc-rewriting'/>
   <initial-last-n value='-1'/>
  </endpoint>
 </conference-modify>
</iq>
"""

RELAY = """
<iq xmlns='jabber:client' to='jvbbrewery@internal.auth.meet.example/jvb2' id='r7' type='get'>
 <conference-modify xmlns='jitsi:colibri2' meeting-id='m-1'>
  <relay id='relay-jvb1' create='true' mesh-id='0'>
   <media type='video'>
    <payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' name='VP8' clockrate='90000' id='100'/>
   </media>
   <transport ice-controlling='true' use-unique-port='true'/>
   <endpoints>
    <endpoint id='abcd1234' create='true' stats-id='Fredrick-Xq1'>
     <sources>
      <media-source type='audio' id='abcd1234-a0'>
       <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1111'/>
      </media-source>
     </sources>
    </endpoint>
   </endpoints>
  </relay>
 </conference-modify>
</iq>
"""

ERROR_ANSWER = """
<iq xmlns='jabber:client' from='jvbbrewery@internal.auth.meet.example/jvb1' id='aB3dE-21'
    type='error'>
 <conference-modify xmlns='jitsi:colibri2' meeting-id='5b2e4f1c-8e2a-4d0a-9f3e-1a2b3c4d5e6f'/>
 <error type='cancel'>
  <item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
  <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Conference not found for ID: 5b2e</text>
  <error xmlns='jitsi:colibri2' reason='conference_not_found'/>
 </error>
</iq>
"""


def test_first_allocation() -> None:
    request = ConferenceModify.fromElement(payload(FIRST_ALLOCATION))
    assert request.meeting_id == "5b2e4f1c-8e2a-4d0a-9f3e-1a2b3c4d5e6f"
    assert request.name == "room1@conference.meet.example"
    assert request.create and not request.expire
    assert request.rtcstats_enabled and request.callstats_enabled
    assert request.relays == []
    (endpoint,) = request.endpoints
    assert endpoint.id == "abcd1234" and endpoint.create and endpoint.stats_id == "Fredrick-Xq1"
    assert endpoint.transport == Transport(ice_controlling=True)
    assert endpoint.sources is None and endpoint.force_mute is None
    audio, video = endpoint.media
    assert audio.type == "audio" and video.type == "video"
    opus = audio.payload_types[0]
    assert opus == PayloadType(
        id=111, name="opus", clockrate=48000, channels=2,
        parameters=[Parameter("minptime", "10"), Parameter("useinbandfec", "1")],
        rtcp_fbs=[RtcpFeedback("transport-cc")])
    assert [pt.id for pt in audio.payload_types] == [111, 103, 126]
    assert audio.header_extensions[0] == HeaderExtension(
        1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level")
    assert [(f.type, f.subtype) for f in video.payload_types[0].rtcp_fbs] == [
        ("ccm", "fir"), ("nack", None), ("nack", "pli"), ("transport-cc", None)]
    assert video.payload_types[1].parameters == [Parameter("apt", "100")]
    assert request.endpoint("abcd1234") is endpoint and request.endpoint("nope") is None


def test_allocation_answer() -> None:
    answer = ConferenceModified.fromElement(payload(ALLOCATION_ANSWER))
    endpoint = answer.endpoint("abcd1234")
    assert endpoint is not None and endpoint.transport is not None
    ice = endpoint.transport.ice_udp
    assert ice is not None
    assert (ice.ufrag, ice.pwd, ice.rtcp_mux) == ("8t1sf1fp9dq4s3", "3kh1qbv1bfqq4k4vjq0b3ebtbb",
                                                  True)
    assert ice.fingerprint is not None
    assert ice.fingerprint.hash == "sha-256" and ice.fingerprint.setup == "actpass"
    assert ice.fingerprint.value.startswith("1F:2E:3D")
    host, srflx = ice.candidates
    assert host == Candidate(component=1, foundation="1", ip="10.0.0.5", port=10000,
                             priority=2130706431, protocol="udp", type="host", generation=0,
                             id="653aa1ba295b62d0ffffffffdf4c9a9c", network=0)
    assert (srflx.type, srflx.rel_addr, srflx.rel_port) == ("srflx", "10.0.0.5", 10000)
    assert ice.web_socket_url == ("wss://meet.example/colibri-ws/jvb1/5f2d0c1e9a/abcd1234"
                                  "?pwd=3kh1qbv1bfqq4k4vjq0b3ebtbb")
    assert answer.sources is not None
    audio, video = answer.sources
    assert (audio.type, audio.id, video.type, video.id) == ("audio", "jvb-a0", "video", "jvb-v0")
    assert audio.sources[0].ssrc == 3123441421
    assert audio.sources[0].msid == "mixedmslabel mixedlabelaudio0"
    assert video.sources[0].msid == "mixedmslabel mixedlabelvideo0"


def test_update_with_sources() -> None:
    request = ConferenceModify.fromElement(payload(UPDATE_WITH_SOURCES))
    assert not request.create and request.name is None
    (endpoint,) = request.endpoints
    assert not endpoint.create and endpoint.media == []
    assert endpoint.transport is not None and not endpoint.transport.ice_controlling
    ice = endpoint.transport.ice_udp
    assert ice is not None
    assert ice.fingerprints == [Fingerprint("sha-256", "active", "AA:BB:CC:DD", required=True)]
    assert ice.candidates[0].ip.endswith(".local")
    assert (ice.candidates[1].protocol, ice.candidates[1].tcptype) == ("tcp", "active")
    assert endpoint.sources is not None
    audio, video = endpoint.sources
    assert audio == MediaSource("audio", "abcd1234-a0", [Source(1111)])
    assert [s.ssrc for s in video.sources] == [2001, 2002, 2003, 3001, 3002, 3003]
    assert video.groups == [
        SourceGroup("SIM", [2001, 2002, 2003]), SourceGroup("FID", [2001, 3001]),
        SourceGroup("FID", [2002, 3002]), SourceGroup("FID", [2003, 3003])]


def test_expire() -> None:
    request = ConferenceModify.fromElement(payload(EXPIRE))
    assert request.endpoints == [Endpoint("abcd1234", expire=True),
                                 Endpoint("ef567890", expire=True)]


def test_later_allocation() -> None:
    request = ConferenceModify.fromElement(payload(LATER_ALLOCATION))
    assert not request.rtcstats_enabled and not request.callstats_enabled
    (endpoint,) = request.endpoints
    assert endpoint.transport == Transport(ice_controlling=True, sctp=Sctp())
    assert endpoint.force_mute == ForceMute(audio=True, video=False)
    assert endpoint.capabilities == ["source-names", "ssrc-rewriting"]
    assert endpoint.has_capability(CAP_SOURCE_NAMES)
    assert endpoint.initial_last_n == -1 and endpoint.muc_role == "visitor"


def test_relay() -> None:
    request = ConferenceModify.fromElement(payload(RELAY))
    (relay,) = request.relays
    assert (relay.id, relay.create, relay.mesh_id) == ("relay-jvb1", True, "0")
    assert relay.transport == Transport(ice_controlling=True, use_unique_port=True)
    assert relay.endpoints is not None
    (remote,) = relay.endpoints
    assert remote.id == "abcd1234" and remote.sources == [
        MediaSource("audio", "abcd1234-a0", [Source(1111)])]


@pytest.mark.parametrize("xml", [FIRST_ALLOCATION, UPDATE_WITH_SOURCES, EXPIRE, LATER_ALLOCATION,
                                 RELAY])
def test_captured_requests_round_trip(xml: str) -> None:
    request = ConferenceModify.fromElement(payload(xml))
    assert ConferenceModify.fromElement(request.toElement()) == request
    assert ConferenceModify.fromElement(wire_round_trip(request.toElement())) == request


def test_captured_answer_round_trips() -> None:
    answer = ConferenceModified.fromElement(payload(ALLOCATION_ANSWER))
    assert ConferenceModified.fromElement(answer.toElement()) == answer
    assert ConferenceModified.fromElement(wire_round_trip(answer.toElement())) == answer


def test_written_namespaces() -> None:
    """Every Jingle element carries its own xmlns on the wire (jQuery matches the attribute)."""
    answer = ConferenceModified.fromElement(payload(ALLOCATION_ANSWER))
    text = serialize(answer.toElement())
    assert text.startswith(f"<conference-modified xmlns='{COLIBRI2_NS}'>")
    for fragment in (f"<transport xmlns='{ICE_UDP_NS}'", f"<fingerprint xmlns='{DTLS_NS}'",
                     f"<web-socket xmlns='{COLIBRI_NS}'", f"<source xmlns='{SSMA_NS}'"):
        assert fragment in text
    request = ConferenceModify.fromElement(payload(FIRST_ALLOCATION))
    text = serialize(request.toElement())
    for fragment in (f"<payload-type xmlns='{RTP_NS}'", f"<rtcp-fb xmlns='{RTCP_FB_NS}'",
                     f"<rtp-hdrext xmlns='{RTP_HDREXT_NS}'", "<parameter name='minptime'"):
        assert fragment in text
    owned = serialize(Source(5, owner="jvb", parameters=[Parameter("msid", "a b")]).toElement())
    assert owned == (f"<source xmlns='{SSMA_NS}' ssrc='5'><ssrc-info xmlns='{JITMEET_NS}' "
                     "owner='jvb'/><parameter name='msid' value='a b'/></source>")


def test_defaults_are_not_written() -> None:
    element = ConferenceModify("m").toElement()
    assert dict(element.attributes) == {"meeting-id": "m"}
    assert dict(Endpoint("e").toElement().attributes) == {"id": "e"}
    assert dict(Transport().toElement().attributes) == {}
    assert dict(ForceMute().toElement().attributes) == {}


def test_error_answer() -> None:
    iq = parse_stanza(ERROR_ANSWER)
    assert Colibri2Error.fromStanza(iq) == Colibri2Error("conference_not_found")
    sibling = Element((CLIENT_NS, "iq"))
    sibling.addChild(Colibri2Error("graceful_shutdown").toElement())
    assert Colibri2Error.fromStanza(sibling) == Colibri2Error("graceful_shutdown")
    assert Colibri2Error.fromStanza(Element((CLIENT_NS, "iq"))) is None


def test_error_reasons() -> None:
    def reason(attrs: str) -> str:
        return Colibri2Error.fromElement(payload(
            f"<iq type='error' id='1'><error xmlns='jitsi:colibri2' {attrs}/></iq>")).reason

    assert reason("reason='CONFERENCE_not_FOUND'") == "conference_not_found"
    assert reason("") == "unspecified"
    with pytest.raises(ValueError, match="unknown reason"):
        reason("reason='conference-not-found'")


def test_error_reply() -> None:
    request = parse_stanza(UPDATE_WITH_SOURCES.replace("<iq ", "<iq from='focus@auth.x/f' "))
    reply = colibri2_error_reply(request, "unknown_endpoint", "Endpoint not found: abcd1234")
    assert reply is not None
    assert (reply["type"], reply["id"], reply["to"]) == ("error", "aB3dE-13", "focus@auth.x/f")
    back = parse_stanza(serialize(reply, default_uri=CLIENT_NS))
    assert Colibri2Error.fromStanza(back) == Colibri2Error("unknown_endpoint")
    (error,) = [c for c in back.elements() if c.name == "error"]
    assert error["type"] == "cancel"
    assert [c.name for c in error.elements()] == ["item-not-found", "text", "error"]
    with pytest.raises(ValueError):
        colibri2_error_reply(request, "nope")


# -- malformed input ----------------------------------------------------------------------------

def modify(body: str, attrs: str = "meeting-id='m'") -> Element:
    return payload(f"<iq type='get' id='1'><conference-modify xmlns='jitsi:colibri2' {attrs}>"
                   f"{body}</conference-modify></iq>")


def ice(body: str) -> str:
    return (f"<endpoint id='e'><transport><transport xmlns='{ICE_UDP_NS}' ufrag='u' pwd='p'>"
            f"{body}</transport></transport></endpoint>")


def candidate(**overrides: str) -> str:
    attrs = {"component": "1", "foundation": "1", "generation": "0", "id": "c1", "ip": "192.0.2.1",
             "port": "10000", "priority": "2130706431", "protocol": "udp", "type": "host"}
    attrs.update({k.replace("_", "-"): v for k, v in overrides.items()})
    text = " ".join(f"{k}='{v}'" for k, v in attrs.items() if v != "DROP")
    return ice(f"<candidate {text}/>")


def media_source(body: str, attrs: str = "type='video' id='s'") -> str:
    return (f"<endpoint id='e'><sources><media-source {attrs}>{body}</media-source></sources>"
            "</endpoint>")


def source(ssrc: str) -> str:
    return media_source(f"<source xmlns='{SSMA_NS}' ssrc='{ssrc}'/>")


@pytest.mark.parametrize(("body", "attrs", "message"), [
    ("", "", "<conference-modify/> is missing 'meeting-id'"),
    ("", "meeting-id=''", "<conference-modify/> has an empty 'meeting-id'"),
    ("", "meeting-id='m' create='yes'", "<conference-modify/> 'create' is not a boolean: 'yes'"),
    ("<endpoint create='true'/>", None, "<endpoint/> is missing 'id'"),
    ("<relay/>", None, "<relay/> is missing 'id'"),
    ("<endpoint id='e' expire='maybe'/>", None, "<endpoint/> 'expire' is not a boolean"),
    ("<endpoint id='e' muc-role='king'/>", None, "<endpoint/> has an unknown 'muc-role'"),
    ("<endpoint id='e'><media type='text'/></endpoint>", None,
     "<media/> has an unknown 'type': 'text'"),
    ("<endpoint id='e'><media/></endpoint>", None, "<media/> is missing 'type'"),
    (media_source("", "type='data' id='s'"), None, "<media-source/> has an unknown 'type'"),
    (media_source("", "type='audio'"), None, "<media-source/> is missing 'id'"),
    (source("abc"), None, "<source/> 'ssrc' is not an integer: 'abc'"),
    (source("-1"), None, "<source/> 'ssrc' out of range 0..4294967295: -1"),
    (source("4294967296"), None, "<source/> 'ssrc' out of range"),
    (source(" 12"), None, "<source/> 'ssrc' is not an integer"),
    (source("1_000"), None, "<source/> 'ssrc' is not an integer"),
    (media_source(f"<source xmlns='{SSMA_NS}'/>"), None, "<source/> is missing 'ssrc'"),
    (media_source(f"<ssrc-group xmlns='{SSMA_NS}' semantics='FID'><source ssrc='1'/>"
                  "<source ssrc='x'/></ssrc-group>"), None, "<source/> 'ssrc' is not an integer"),
    (media_source(f"<ssrc-group xmlns='{SSMA_NS}'/>"), None, "<ssrc-group/> is missing"),
    (candidate(port="70000"), None, "<candidate/> 'port' out of range 0..65535: 70000"),
    (candidate(port="-5"), None, "<candidate/> 'port' out of range"),
    (candidate(port="http"), None, "<candidate/> 'port' is not an integer: 'http'"),
    (candidate(port="DROP"), None, "<candidate/> is missing 'port'"),
    (candidate(rel_port="65536"), None, "<candidate/> 'rel-port' out of range"),
    (candidate(ip="DROP"), None, "<candidate/> is missing 'ip'"),
    (candidate(type="bogus"), None, "<candidate/> has an unknown 'type': 'bogus'"),
    (candidate(priority="4294967296"), None, "<candidate/> 'priority' out of range"),
    (candidate(component="0"), None, "<candidate/> 'component' out of range"),
    (ice(f"<fingerprint xmlns='{DTLS_NS}' hash='sha-256'/>"), None, "<fingerprint/> has no value"),
    (ice(f"<fingerprint xmlns='{DTLS_NS}'>AA</fingerprint>"), None,
     "<fingerprint/> is missing 'hash'"),
    (ice(f"<fingerprint xmlns='{DTLS_NS}' hash='sha-1' setup='both'>AA</fingerprint>"), None,
     "<fingerprint/> has an unknown 'setup'"),
    (ice(f"<web-socket xmlns='{COLIBRI_NS}'/>"), None, "<web-socket/> is missing 'url'"),
    ("<endpoint id='e'><transport><sctp role='peer'/></transport></endpoint>", None,
     "<sctp/> has an unknown 'role'"),
    ("<endpoint id='e'><transport><sctp port='99999'/></transport></endpoint>", None,
     "<sctp/> 'port' out of range"),
    ("<endpoint id='e'><media type='audio'><payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' "
     "name='opus'/></media></endpoint>", None, "<payload-type/> is missing 'id'"),
    ("<endpoint id='e'><media type='audio'><payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' "
     "id='128'/></media></endpoint>", None, "<payload-type/> 'id' out of range 0..127"),
    ("<endpoint id='e'><media type='audio'><rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:"
     "rtp-hdrext:0' id='1'/></media></endpoint>", None, "<rtp-hdrext/> is missing 'uri'"),
    ("<endpoint id='e'><capability/></endpoint>", None, "<capability/> is missing 'name'"),
    ("<endpoint id='e'><initial-last-n value='many'/></endpoint>", None,
     "<initial-last-n/> 'value' is not an integer"),
    ("<endpoint id='e'><force-mute audio='on'/></endpoint>", None,
     "<force-mute/> 'audio' is not a boolean"),
    ("<relay id='r'><endpoints><endpoint/></endpoints></relay>", None,
     "<endpoint/> is missing 'id'"),
])
def test_malformed(body: str, attrs: str | None, message: str) -> None:
    element = modify(body) if attrs is None else modify(body, attrs)
    with pytest.raises(ValueError) as info:
        ConferenceModify.fromElement(element)
    assert str(info.value).startswith(message)


def test_wrong_element() -> None:
    with pytest.raises(ValueError, match="expected <conference-modify"):
        ConferenceModify.fromElement(Element((COLIBRI2_NS, "conference-modified")))
    with pytest.raises(ValueError, match="expected <conference-modified"):
        ConferenceModified.fromElement(Element(("jitsi:colibri", "conference-modified")))
    with pytest.raises(ValueError, match="expected <transport xmlns='urn:xmpp:jingle"):
        IceUdpTransport.fromElement(Element((COLIBRI2_NS, "transport")))


def test_lenient_parts() -> None:
    """Case-insensitive enumerations, foreign children ignored, parameters in any namespace."""
    request = ConferenceModify.fromElement(modify(
        "<endpoint id='e' create='TRUE'><media type='AUDIO'/><unknown xmlns='x:y'/>"
        "<transport xmlns='urn:other'/>" + media_source(
            f"<source xmlns='{SSMA_NS}' ssrc='7'><parameter name='msid' value='a b'/></source>"
        )[len("<endpoint id='e'>"):]))
    (endpoint,) = request.endpoints
    assert endpoint.create and endpoint.media == [Media("audio")] and endpoint.transport is None
    assert endpoint.sources == [MediaSource("video", "s", [Source(7, parameters=[
        Parameter("msid", "a b")])])]


# -- generated round trips ------------------------------------------------------------------------

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Cn")),
                max_size=12)
names = texts.filter(bool)
maybe_text = st.none() | texts
maybe_bool = st.none() | st.booleans()
ssrcs = st.integers(0, 0xFFFFFFFF)
ports = st.integers(0, 65535)
media_types = st.sampled_from(["audio", "video"])
small = {"max_size": 3}

parameters = st.builds(Parameter, names, maybe_text)
payload_types = st.builds(
    PayloadType, st.integers(0, 127), maybe_text, st.none() | st.integers(1, 0xFFFFFFFF),
    st.none() | st.integers(1, 255), st.lists(parameters, **small),
    st.lists(st.builds(RtcpFeedback, names, maybe_text), **small))
header_extensions = st.builds(HeaderExtension, st.integers(1, 255), names, maybe_text)
medias = st.builds(Media, media_types, st.lists(payload_types, **small),
                   st.lists(header_extensions, **small))
sources = st.builds(Source, ssrcs, maybe_text, maybe_text, st.lists(parameters, **small))
groups = st.builds(SourceGroup, names, st.lists(ssrcs, **small))
media_sources = st.builds(MediaSource, media_types, names, st.lists(sources, **small),
                          st.lists(groups, **small))
fingerprints = st.builds(
    Fingerprint, names, st.none() | st.sampled_from(["active", "passive", "actpass", "holdconn"]),
    st.text(alphabet="0123456789ABCDEF:", min_size=1, max_size=20), maybe_bool)
candidates = st.builds(
    Candidate, component=st.integers(1, 256), foundation=names, ip=names, port=ports,
    priority=ssrcs, protocol=st.sampled_from(["udp", "tcp", "ssltcp"]),
    type=st.sampled_from(["host", "srflx", "prflx", "relay"]),
    generation=st.none() | st.integers(0, 65535), id=maybe_text,
    network=st.none() | st.integers(0, 65535), rel_addr=maybe_text, rel_port=st.none() | ports,
    tcptype=maybe_text)
ice_transports = st.builds(
    IceUdpTransport, maybe_text, maybe_text, st.lists(fingerprints, **small),
    st.lists(candidates, **small), st.booleans(),
    st.lists(st.builds(WebSocket, names, maybe_bool), **small))
sctps = st.builds(Sctp, st.none() | ports, st.none() | st.sampled_from(["client", "server"]))
transports = st.builds(Transport, st.booleans(), st.booleans(), st.none() | ice_transports,
                       st.none() | sctps)
source_lists = st.none() | st.lists(media_sources, **small)
endpoints = st.builds(
    Endpoint, names, st.booleans(), st.booleans(), maybe_text,
    st.none() | st.sampled_from(["moderator", "participant", "visitor", "none"]),
    st.lists(medias, **small), st.none() | transports, source_lists,
    st.none() | st.builds(ForceMute, st.booleans(), st.booleans()), st.lists(names, **small),
    st.none() | st.integers(-1, 2**31 - 1))
relays = st.builds(Relay, names, st.booleans(), st.booleans(), maybe_text,
                   st.lists(medias, **small), st.none() | transports, source_lists,
                   st.none() | st.lists(endpoints, **small))
modifies = st.builds(ConferenceModify, names, maybe_text, st.booleans(), st.booleans(),
                     st.booleans(), st.booleans(), st.lists(endpoints, **small),
                     st.lists(relays, max_size=2))
modifieds = st.builds(ConferenceModified, st.lists(endpoints, **small),
                      st.lists(relays, max_size=2), source_lists)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modifies)
def test_conference_modify_round_trip(request: ConferenceModify) -> None:
    assert ConferenceModify.fromElement(request.toElement()) == request
    assert ConferenceModify.fromElement(wire_round_trip(request.toElement())) == request


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(modifieds)
def test_conference_modified_round_trip(answer: ConferenceModified) -> None:
    assert ConferenceModified.fromElement(answer.toElement()) == answer
    assert ConferenceModified.fromElement(wire_round_trip(answer.toElement())) == answer


@given(st.sampled_from(sorted(["conference_not_found", "conference_already_exists",
                               "feature_not_implemented", "graceful_shutdown",
                               "unknown_endpoint", "unspecified"])))
def test_error_round_trip(reason: str) -> None:
    error = Colibri2Error(reason)
    assert Colibri2Error.fromElement(wire_round_trip(error.toElement())) == error


# -- fuzzing --------------------------------------------------------------------------------------

VOCABULARY = [
    (COLIBRI2_NS, n) for n in (
        "conference-modify", "endpoint", "relay", "endpoints", "media", "transport", "sources",
        "media-source", "force-mute", "capability", "initial-last-n", "sctp", "error")
] + [
    (RTP_NS, "payload-type"), (RTP_NS, "parameter"), (RTCP_FB_NS, "rtcp-fb"),
    (RTP_HDREXT_NS, "rtp-hdrext"), (ICE_UDP_NS, "transport"), (ICE_UDP_NS, "candidate"),
    (ICE_UDP_NS, "rtcp-mux"), (DTLS_NS, "fingerprint"), (COLIBRI_NS, "web-socket"),
    (SSMA_NS, "source"), (SSMA_NS, "ssrc-group"), (JITMEET_NS, "ssrc-info"), ("x:y", "endpoint"),
]
ATTRIBUTES = [
    "id", "meeting-id", "name", "create", "expire", "stats-id", "muc-role", "type", "ssrc",
    "semantics", "port", "rel-port", "priority", "component", "generation", "network", "ip",
    "foundation", "protocol", "hash", "setup", "required", "url", "active", "ice-controlling",
    "use-unique-port", "role", "value", "audio", "video", "clockrate", "channels", "uri",
    "reason", "owner", "rtcstats-enabled", "mesh-id",
]
VALUES = st.sampled_from([
    "", "0", "1", "-1", "127", "128", "65535", "65536", "4294967295", "4294967296", "true",
    "false", "TRUE", "audio", "video", "data", "host", "relay", "udp", "actpass", "server",
    "SIM", "x", "\u00e9\u4e2d", "1e3", "0x10", " 5", "99999999999999999999999",
]) | texts


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> Element:
    uri, name = draw(st.sampled_from(VOCABULARY))
    element = Element((uri, name), defaultUri=uri)
    for attr in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=5, unique=True)):
        element[attr] = draw(VALUES)
    if depth < 3:
        for child in draw(st.lists(trees(depth + 1), max_size=4)):
            element.addChild(child)
    if draw(st.booleans()):
        element.addContent(draw(texts))
    return element


@st.composite
def requests(draw: st.DrawFn) -> Element:
    root = Element((COLIBRI2_NS, "conference-modify"), defaultUri=COLIBRI2_NS)
    if draw(st.integers(0, 9)):
        root["meeting-id"] = draw(VALUES)
    for attr in draw(st.lists(st.sampled_from(ATTRIBUTES), max_size=3, unique=True)):
        root[attr] = draw(VALUES)
    for child in draw(st.lists(trees(1), max_size=5)):
        root.addChild(child)
    return root


def _walk(element: Element) -> list[Element]:
    found = [element]
    for child in element.elements():
        found.extend(_walk(child))
    return found


@st.composite
def mutated(draw: st.DrawFn) -> Element:
    """A valid request's tree with a few attributes changed or dropped and subtrees grafted."""
    root = draw(modifies).toElement()
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(_walk(root)))
        action = draw(st.sampled_from(["set", "drop", "graft", "prune"]))
        if action == "set":
            target[draw(st.sampled_from(ATTRIBUTES))] = draw(VALUES)
        elif action == "drop" and target.attributes:
            del target.attributes[draw(st.sampled_from(sorted(target.attributes)))]
        elif action == "graft":
            target.addChild(draw(trees(2)))
        elif action == "prune" and target.children:
            target.children.pop(draw(st.integers(0, len(target.children) - 1)))
    return root


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(requests() | trees() | mutated())
def test_fuzz_conference_modify(element: Element) -> None:
    try:
        request = ConferenceModify.fromElement(element)
    except ValueError:
        return
    assert ConferenceModify.fromElement(request.toElement()) == request


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(trees())
def test_fuzz_parts(element: Element) -> None:
    for cls in (ConferenceModified, Endpoint, Relay, Transport, IceUdpTransport, MediaSource,
                Media, Colibri2Error):
        try:
            cls.fromElement(element)
        except ValueError:
            pass
