"""The focus's offer factory, source bookkeeping and client transport, checked as data and as
lib-jitsi-meet would read them off the wire."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vw.bridge.colibri2 import (
    DTLS_NS,
    ICE_UDP_NS,
    JITMEET_NS,
    RTCP_FB_NS,
    RTP_HDREXT_NS,
    SSMA_NS,
    Candidate,
    Fingerprint,
    HeaderExtension,
    IceUdpTransport,
    Media,
    MediaSource,
    Parameter,
    PayloadType,
    RtcpFeedback,
    Source,
    SourceGroup,
    WebSocket,
)
from vw.focus.jingle import (
    GROUPING_NS,
    JINGLE_NS,
    BridgeSession,
    Content,
    Group,
    Jingle,
    RtpDescription,
)
from vw.focus.offer import (
    ConferenceSources,
    MediaSources,
    OfferConfig,
    client_transport,
    session_initiate,
    source_add,
    source_remove,
    transport_replace,
)
from vw.rtp.extensions import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, TRANSPORT_CC_URI

from .test_jingle import (
    SESSION_ACCEPT,
    SOURCE_ADD,
    SOURCE_REMOVE,
    TRANSPORT_INFO,
    assert_literal_xmlns,
    children,
    dom,
    jingle_of,
    wire_round_trip,
    wire_texts,
)

ALICE = "room@conference.example/a0a0a0a0"
BOB = "room@conference.example/b0b0b0b0"
CAROL = "room@conference.example/c0c0c0c0"
FOCUS = "focus@auth.example/focus"


# -- what lib-jitsi-meet makes of it ------------------------------------------------------------

def ljm_sdp(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The session lines and, by content name, the media lines that lib-jitsi-meet's
    ``SDP.fromJingle`` writes for the Jingle in the IQ ``text`` (the lines these tests check).

    Like the client it matches children by tag and literal ``xmlns`` text only.
    """
    (jingle,) = children(dom(text), "jingle", JINGLE_NS)
    session = [f"a=group:{g.getAttribute('semantics')} "
               + " ".join(c.getAttribute("name") for c in children(g, "content"))
               for g in children(jingle, "group", GROUPING_NS)]
    media: dict[str, list[str]] = {}
    for content in children(jingle, "content"):
        (description,) = children(content, "description")
        payload_types = children(description, "payload-type")
        lines = [f"m={description.getAttribute('media')} 9 UDP/TLS/RTP/SAVPF "
                 + " ".join(p.getAttribute("id") for p in payload_types)]
        for transport in children(content, "transport", ICE_UDP_NS):
            lines += [f"a=ice-ufrag:{transport.getAttribute('ufrag')}",
                      f"a=ice-pwd:{transport.getAttribute('pwd')}"]
            for fingerprint in children(transport, "fingerprint", DTLS_NS):
                lines += [f"a=fingerprint:{fingerprint.getAttribute('hash')} "
                          f"{fingerprint.firstChild.data}",
                          f"a=setup:{fingerprint.getAttribute('setup')}"]
            for c in children(transport, "candidate"):
                line = (f"a=candidate:{c.getAttribute('foundation')} "
                        f"{c.getAttribute('component')} {c.getAttribute('protocol')} "
                        f"{c.getAttribute('priority')} {c.getAttribute('ip')} "
                        f"{c.getAttribute('port')} typ {c.getAttribute('type')}")
                if c.hasAttribute("rel-addr"):
                    line += (f" raddr {c.getAttribute('rel-addr')}"
                             f" rport {c.getAttribute('rel-port')}")
                lines.append(line + f" generation {c.getAttribute('generation')}")
            web_sockets = children(transport, "web-socket")
            lines += [f"(web-socket {w.getAttribute('url')})" for w in web_sockets]
        direction = {"both": "sendrecv", "initiator": "sendonly", "responder": "recvonly",
                     "none": "inactive"}.get(content.getAttribute("senders"))
        lines += [f"a={direction}", f"a=mid:{content.getAttribute('name')}"]
        if children(description, "rtcp-mux"):
            lines.append("a=rtcp-mux")
        for p in payload_types:
            pt = p.getAttribute("id")
            rtpmap = f"a=rtpmap:{pt} {p.getAttribute('name')}/{p.getAttribute('clockrate')}"
            lines.append(rtpmap + (f"/{p.getAttribute('channels')}"
                                   if p.hasAttribute("channels") else ""))
            parameters = children(p, "parameter")
            if parameters:
                lines.append(f"a=fmtp:{pt} " + "; ".join(
                    f"{x.getAttribute('name')}={x.getAttribute('value')}" for x in parameters))
            lines += [f"a=rtcp-fb:{pt} " + " ".join(
                filter(None, (f.getAttribute("type"), f.getAttribute("subtype"))))
                for f in children(p, "rtcp-fb", RTCP_FB_NS)]
        lines += [f"a=extmap:{e.getAttribute('id')} {e.getAttribute('uri')}"
                  for e in children(description, "rtp-hdrext", RTP_HDREXT_NS)]
        lines += [f"a=ssrc-group:{g.getAttribute('semantics')} "
                  + " ".join(s.getAttribute("ssrc") for s in children(g, "source"))
                  for g in children(description, "ssrc-group", SSMA_NS)]
        mixed, user = [], []
        for source in children(description, "source", SSMA_NS):
            ssrc_lines = [f"a=ssrc:{source.getAttribute('ssrc')} {x.getAttribute('name')}:"
                          f"{x.getAttribute('value')}" for x in children(source, "parameter")]
            owners = [i.getAttribute("owner")
                      for i in children(source, "ssrc-info", JITMEET_NS)]
            ssrc_lines = [f"{line} (owner {' '.join(owners)})" for line in ssrc_lines]
            (mixed if any("mixedmslabel" in x for x in ssrc_lines) else user).extend(ssrc_lines)
        media[content.getAttribute("name")] = lines + mixed + user
    return session, media


# -- the offer ----------------------------------------------------------------------------------

def test_default_offer_is_jicofos() -> None:
    config = OfferConfig()
    assert config.payload_types("audio") == [PayloadType(
        111, "opus", 48000, 2, [Parameter("minptime", "10"), Parameter("useinbandfec", "1")],
        [RtcpFeedback("transport-cc")])]
    assert config.payload_types("video") == [
        PayloadType(100, "VP8", 90000, None, [], [
            RtcpFeedback("ccm", "fir"), RtcpFeedback("nack"), RtcpFeedback("nack", "pli"),
            RtcpFeedback("transport-cc")]),
        PayloadType(96, "rtx", 90000, None, [Parameter("apt", "100")])]
    assert config.header_extensions("audio") == [HeaderExtension(1, AUDIO_LEVEL_URI),
                                                 HeaderExtension(5, TRANSPORT_CC_URI)]
    assert config.header_extensions("video") == [HeaderExtension(3, ABS_SEND_TIME_URI),
                                                 HeaderExtension(5, TRANSPORT_CC_URI)]
    assert TRANSPORT_CC_URI == (
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01")
    assert config.media() == [
        Media("audio", config.payload_types("audio"), config.header_extensions("audio")),
        Media("video", config.payload_types("video"), config.header_extensions("video"))]


def test_offer_without_tcc_offers_remb() -> None:
    config = OfferConfig(tcc=False)
    (opus,) = config.payload_types("audio")
    assert opus.rtcp_fbs == []
    vp8 = config.payload_types("video")[0]
    assert vp8.rtcp_fbs == [RtcpFeedback("ccm", "fir"), RtcpFeedback("nack"),
                            RtcpFeedback("nack", "pli"), RtcpFeedback("goog-remb")]
    assert [e.uri for m in ("audio", "video") for e in config.header_extensions(m)] == [
        AUDIO_LEVEL_URI, ABS_SEND_TIME_URI]


def test_optional_codecs_and_rtx() -> None:
    video = OfferConfig(vp9=True, h264=True).payload_types("video")
    assert [(p.id, p.name) for p in video] == [
        (100, "VP8"), (96, "rtx"), (101, "VP9"), (97, "rtx"), (107, "H264"), (99, "rtx")]
    assert [p.parameters for p in video if p.name == "rtx"] == [
        [Parameter("apt", "100")], [Parameter("apt", "101")], [Parameter("apt", "107")]]
    assert Parameter("packetization-mode", "1") in video[4].parameters
    no_rtx = OfferConfig(vp9=True, rtx=False).payload_types("video")
    assert [p.name for p in no_rtx] == ["VP8", "VP9"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"vp8_rtx_pt": 111}, "payload types are not distinct"),
    ({"vp9": True, "vp9_pt": 100}, "payload types are not distinct"),
    ({"opus_pt": 128}, "payload type out of range"),
    ({"tcc_id": 15}, "header extension id out of range"),
    ({"abs_send_time_id": 1}, "header extension ids are not distinct"),
])
def test_bad_config(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        OfferConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown media type"):
        OfferConfig().payload_types("data")


def bridge_transport() -> IceUdpTransport:
    """An endpoint transport as the bridge describes it (vw.bridge.allocation)."""
    return IceUdpTransport(
        "8t1s", "3kh1qbv1bfqq4k4vjq0b3ebtbb",
        [Fingerprint("sha-256", "actpass", "1F:2E:3D")],
        [Candidate(component=1, foundation="1", ip="192.0.2.7", port=10000, priority=2130706431,
                   protocol="udp", type="host", generation=0, id="c1", network=0),
         Candidate(component=1, foundation="2", ip="203.0.113.9", port=10000,
                   priority=1694498815, protocol="udp", type="srflx", generation=0, id="c2",
                   network=0, rel_addr="192.0.2.7", rel_port=10000)],
        rtcp_mux=True,
        web_sockets=[WebSocket("wss://example/colibri-ws/jvb1/c9/a0a0a0a0?pwd=3kh1")])


def bridge_sources() -> list[MediaSource]:
    """The bridge's feedback sources, as its conference-modified answer carries them."""
    return [
        MediaSource("audio", "jvb-a0", [Source(4000001, "jvb-a0", parameters=[
            Parameter("msid", "mixedmslabel mixedlabelaudio0")])]),
        MediaSource("video", "jvb-v0", [Source(4000002, "jvb-v0")]),
    ]


def sources_with_bob() -> ConferenceSources:
    sources = ConferenceSources()
    sources.add(BOB, jingle_of(SESSION_ACCEPT).contents)
    return sources


def test_session_initiate() -> None:
    sources = sources_with_bob()
    transport = bridge_transport()
    offer = session_initiate(OfferConfig(), "a1b2", FOCUS, transport, sources.others(ALICE),
                             bridge_sources(), bridge_session="bs-1")
    assert (offer.action, offer.sid, offer.initiator) == ("session-initiate", "a1b2", FOCUS)
    assert offer.groups == [Group("BUNDLE", ["audio", "video"])]
    assert offer.bridge_session == BridgeSession("bs-1")
    assert [c.name for c in offer.contents] == ["audio", "video"]
    for content in offer.contents:
        assert (content.creator, content.senders) == ("initiator", "both")
        assert content.transport == transport and content.transport is not transport
        assert content.description is not None and content.description.rtcp_mux
    audio, video = (c.description for c in offer.contents)
    assert audio is not None and video is not None
    assert audio.payload_types == OfferConfig().payload_types("audio")
    assert audio.sources == [
        Source(4000001, owner="jvb",
               parameters=[Parameter("msid", "mixedmslabel mixedlabelaudio0")]),
        Source(1111, owner=BOB, parameters=[Parameter("msid", "st-a tr-a")])]
    assert video.sources[0] == Source(
        4000002, owner="jvb", parameters=[Parameter("msid", "mixedmslabel mixedlabelvideo0")])
    assert [(s.ssrc, s.owner, s.msid) for s in video.sources[1:]] == [
        (ssrc, BOB, "st-1 tr-1") for ssrc in (1001, 1002, 1003, 2001, 2002, 2003)]
    assert video.groups == [
        SourceGroup("SIM", [1001, 1002, 1003]), SourceGroup("FID", [1001, 2001]),
        SourceGroup("FID", [1002, 2002]), SourceGroup("FID", [1003, 2003])]
    assert wire_round_trip(offer) == offer
    # Alice's offer does not carry her own sources; a newcomer's carries Bob's only.
    assert not [s for s in video.sources if s.owner == ALICE]


def test_session_initiate_as_the_client_reads_it() -> None:
    offer = session_initiate(OfferConfig(), "a1b2", FOCUS, bridge_transport(),
                             sources_with_bob().others(ALICE), bridge_sources())
    for text in wire_texts(offer):
        assert_literal_xmlns(text)
        session, media = ljm_sdp(text)
        assert session == ["a=group:BUNDLE audio video"]
        audio, video = media["audio"], media["video"]
        assert audio[0] == "m=audio 9 UDP/TLS/RTP/SAVPF 111"
        assert video[0] == "m=video 9 UDP/TLS/RTP/SAVPF 100 96"
        for lines in (audio, video):
            assert "a=rtcp-mux" in lines and "a=sendrecv" in lines
            assert "a=setup:actpass" in lines
            assert "a=fingerprint:sha-256 1F:2E:3D" in lines
            assert ("a=candidate:2 1 udp 1694498815 203.0.113.9 10000 typ srflx raddr 192.0.2.7 "
                    "rport 10000 generation 0") in lines
            assert "(web-socket wss://example/colibri-ws/jvb1/c9/a0a0a0a0?pwd=3kh1)" in lines
        assert audio[audio.index("a=mid:audio") + 1:] == [
            "a=rtcp-mux", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10; useinbandfec=1",
            "a=rtcp-fb:111 transport-cc", f"a=extmap:1 {AUDIO_LEVEL_URI}",
            f"a=extmap:5 {TRANSPORT_CC_URI}",
            "a=ssrc:4000001 msid:mixedmslabel mixedlabelaudio0 (owner jvb)",
            f"a=ssrc:1111 msid:st-a tr-a (owner {BOB})"]
        assert video[video.index("a=rtpmap:100 VP8/90000"):][:7] == [
            "a=rtpmap:100 VP8/90000", "a=rtcp-fb:100 ccm fir", "a=rtcp-fb:100 nack",
            "a=rtcp-fb:100 nack pli", "a=rtcp-fb:100 transport-cc", "a=rtpmap:96 rtx/90000",
            "a=fmtp:96 apt=100"]
        assert "a=ssrc-group:SIM 1001 1002 1003" in video
        assert "a=ssrc-group:FID 1003 2003" in video
        ssrc_lines = [line for line in video if line.startswith("a=ssrc:")]
        assert ssrc_lines[0] == "a=ssrc:4000002 msid:mixedmslabel mixedlabelvideo0 (owner jvb)"
        assert len(ssrc_lines) == 7


def test_transport_replace_has_the_same_body() -> None:
    args = (OfferConfig(), "a1b2", FOCUS, bridge_transport(), sources_with_bob().others(ALICE),
            bridge_sources(), "bs-2")
    replaced = transport_replace(*args)
    initiated = session_initiate(*args)
    assert replaced.action == "transport-replace"
    initiated.action = "transport-replace"
    assert replaced == initiated


def test_first_participant_gets_only_the_bridge_sources() -> None:
    offer = session_initiate(OfferConfig(), "s", FOCUS, bridge_transport(), {}, [])
    for content in offer.contents:
        assert content.description is not None and content.description.sources == []
    offer = session_initiate(OfferConfig(), "s", FOCUS, bridge_transport(), {}, bridge_sources())
    assert [[s.owner for s in c.description.sources] for c in offer.contents
            if c.description is not None] == [["jvb"], ["jvb"]]


# -- relaying sources ---------------------------------------------------------------------------

def test_session_accept_goes_to_the_others_and_the_bridge() -> None:
    sources = ConferenceSources()
    added = sources.add(BOB, jingle_of(SESSION_ACCEPT).contents)
    assert list(added) == [BOB] and list(added[BOB]) == ["audio", "video"]
    assert sources.owners() == [BOB]
    update = source_add("alice-sid", added)
    assert (update.action, update.sid) == ("source-add", "alice-sid")
    assert [c.name for c in update.contents] == ["audio", "video"]
    video = update.contents[1].description
    assert video is not None and video.media == "video" and not video.payload_types
    assert {s.owner for s in video.sources} == {BOB}
    assert {s.msid for s in video.sources} == {"st-1 tr-1"}
    for text in wire_texts(update):
        assert_literal_xmlns(text)
    # The bridge gets SSRCs and groups only (cf. tests/e2e/test_bridge_media.answer_to_endpoint).
    assert sources.media_sources(BOB, "b0b0b0b0") == [
        MediaSource("audio", "b0b0b0b0-a0", [Source(1111)]),
        MediaSource("video", "b0b0b0b0-v0",
                    [Source(s) for s in (1001, 1002, 1003, 2001, 2002, 2003)],
                    [SourceGroup("SIM", [1001, 1002, 1003]), SourceGroup("FID", [1001, 2001]),
                     SourceGroup("FID", [1002, 2002]), SourceGroup("FID", [1003, 2003])])]


def group_lines(jingle: Jingle) -> list[str]:
    """The ``a=ssrc-group`` lines the client derives from a source-add or source-remove."""
    found = []
    for text in wire_texts(jingle)[:1]:
        (node,) = children(dom(text), "jingle", JINGLE_NS)
        for content in children(node, "content"):
            for description in children(content, "description"):
                found += [f"a=ssrc-group:{g.getAttribute('semantics')} "
                          + " ".join(s.getAttribute("ssrc") for s in children(g, "source"))
                          for g in children(description, "ssrc-group", SSMA_NS)]
    return found


def test_remove_repeats_the_groups_exactly() -> None:
    sources = sources_with_bob()
    added = sources.add(BOB, jingle_of(SOURCE_ADD).contents)
    assert added == {BOB: {"video": MediaSources(
        [Source(3001, parameters=[Parameter("msid", "st-2 tr-2")]),
         Source(3002, parameters=[Parameter("msid", "st-2 tr-2")])],
        [SourceGroup("FID", [3001, 3002])])}}
    removed = sources.remove(BOB, jingle_of(SOURCE_REMOVE).contents)
    assert removed == added
    assert group_lines(source_remove("s", removed)) == group_lines(source_add("s", added)) == [
        "a=ssrc-group:FID 3001 3002"]
    description = source_remove("s", removed).contents[0].description
    assert description is not None and description.sources == [
        Source(3001, owner=BOB, parameters=[Parameter("msid", "st-2 tr-2")]),
        Source(3002, owner=BOB, parameters=[Parameter("msid", "st-2 tr-2")])]
    assert 3001 not in sources.of(BOB)["video"].ssrcs


def test_removing_sources_removes_their_groups() -> None:
    """The client may list only the sources; the groups holding them go too, as added."""
    sources = sources_with_bob()
    removed = sources.remove(BOB, [content("video", [1001, 1002, 1003, 2001, 2002, 2003],
                                           msid=None)])
    assert [g.semantics for g in removed[BOB]["video"].groups] == ["SIM", "FID", "FID", "FID"]
    assert "video" not in sources.of(BOB)
    # Removing part of a simulcast stream would leave its layers as unrelated streams with one
    # msid, which Jicofo refuses too.
    sources = sources_with_bob()
    with pytest.raises(ValueError, match="msid 'st-1 tr-1' is used by unrelated video sources"):
        sources.remove(BOB, [content("video", [1003, 2003])])


def test_remove_owner_and_reuse() -> None:
    sources = sources_with_bob()
    removed = sources.remove_owner(BOB)
    assert list(removed[BOB]) == ["audio", "video"]
    assert [s.ssrc for s in removed[BOB]["audio"].sources] == [1111]
    assert sources.owners() == [] and sources.others(ALICE) == {}
    assert sources.remove_owner(BOB) == {}
    assert sources.add(CAROL, jingle_of(SESSION_ACCEPT).contents)  # the SSRCs are free again


def test_removing_everything_forgets_the_owner() -> None:
    sources = ConferenceSources()
    sources.add(BOB, [content("audio", [5])])
    assert sources.remove(BOB, [content("audio", [5])]) == {
        BOB: {"audio": MediaSources([Source(5, parameters=[Parameter("msid", "m t")])])}}
    assert sources.owners() == [] and sources.media_sources(BOB, "b") == []


def test_copies_are_returned() -> None:
    sources = sources_with_bob()
    sources.of(BOB)["video"].sources.clear()
    sources.others(ALICE)[BOB]["audio"].sources[0].parameters.clear()
    sources.media_sources(BOB, "b")[1].groups[0].ssrcs.append(7)
    assert len(sources.of(BOB)["video"].sources) == 6
    assert sources.of(BOB)["audio"].sources[0].msid == "st-a tr-a"
    assert sources.of(BOB)["video"].groups[0] == SourceGroup("SIM", [1001, 1002, 1003])


def test_nothing_new_changes_nothing() -> None:
    sources = ConferenceSources()
    assert sources.add(BOB, []) == {}
    assert sources.add(BOB, [Content("audio", description=RtpDescription("audio"))]) == {}
    sources.add(BOB, [content("video", [1, 2], [("FID", [1, 2])])])
    # A group signalled again is ignored (as Jicofo does); an empty group too.
    assert sources.add(BOB, [content("video", [], [("FID", [1, 2]), ("SIM", [])])]) == {}
    assert sources.remove(BOB, []) == {}


# -- validation ---------------------------------------------------------------------------------

def content(media: str, ssrcs: list[int], groups: Sequence[tuple[str, list[int]]] = (),
            msid: str | None = "m t") -> Content:
    parameters = [] if msid is None else [Parameter("msid", msid)]
    return Content(media, description=RtpDescription(
        media, sources=[Source(s, parameters=list(parameters)) for s in ssrcs],
        groups=[SourceGroup(semantics, members) for semantics, members in groups]))


@pytest.mark.parametrize(("contents", "message"), [
    ([content("audio", [0])], "invalid SSRC: 0"),
    ([content("audio", [5, 5])], "SSRC 5 is already used"),
    ([content("audio", [5]), content("video", [5], msid="v t")], "SSRC 5 is already used"),
    ([content("audio", [1111])], "SSRC 1111 is already used by another participant"),
    ([content("audio", [4000001])], "SSRC 4000001 is already used by another participant"),
    ([content("audio", [7], msid="st-a tr-a")], "msid 'st-a tr-a' is used by another"),
    ([content("video", [7], [("FID", [7, 8])])], "ssrc-group FID has SSRC 8, which is not"),
    ([content("video", [7], [("FID", [7, 1001])])], "ssrc-group FID has SSRC 1001"),
    ([content("audio", [8]), content("video", [7], [("FID", [7, 8])])],
     "ssrc-group FID has SSRC 8, which is not one of the sender's video sources"),
    ([content("video", [7, 8, 9], [("FID", [7, 8, 9])])], "FID group without exactly 2"),
    ([content("video", [7, 8], [("SIM", [7, 7])])], "ssrc-group SIM repeats an SSRC"),
    ([content("video", [7, 8, 9], [("FID", [7, 8]), ("FID", [7, 9])])],
     "SSRC 7 is in two FID groups"),
    ([content("video", [7, 8], [("FID", [7, 8])], msid=None)], "grouped SSRC 7 has no msid"),
    ([content("video", [7], msid="a b\r\na=ssrc:1 cname:x")], "SSRC 7 has an invalid msid"),
    ([content("video", [7], msid="a b c")], "SSRC 7 has an invalid msid"),
    ([content("video", [7], msid="")], "SSRC 7 has an invalid msid"),
    ([content("video", [7], msid="mixedmslabel t")], "SSRC 7 has the bridge's msid"),
    ([content("video", [7, 8], [("FID x", [7, 8])])], "invalid ssrc-group semantics"),
    ([content("application", [7])], "sources for media 'application'"),
    ([content("video", list(range(1, 22)))], "more than 20 video sources"),
    ([content("video", [7]), content("video", [8])], "msid 'm t' is used by unrelated video"),
])
def test_invalid_additions(contents: list[Content], message: str) -> None:
    sources = sources_with_bob()
    sources.reserve("jvb", bridge_sources())
    before = (sources.owners(), sources.of(BOB), sources.of(ALICE))
    with pytest.raises(ValueError) as info:
        sources.add(ALICE, contents)
    assert str(info.value).startswith(message)
    assert (sources.owners(), sources.of(BOB), sources.of(ALICE)) == before


def test_group_limit_and_msid_mismatch() -> None:
    sources = ConferenceSources(max_sources=50, max_groups=2)
    with pytest.raises(ValueError, match="more than 2 video ssrc-groups"):
        sources.add(BOB, [content("video", [1, 2, 3, 4, 5, 6], [
            ("FID", [1, 2]), ("FID", [3, 4]), ("FID", [5, 6])])])
    mixed = content("video", [1, 2], [("FID", [1, 2])])
    assert mixed.description is not None
    mixed.description.sources[1].parameters = [Parameter("msid", "other t")]
    with pytest.raises(ValueError, match=r"ssrc-group FID mixes msids: \[1, 2\]"):
        sources.add(BOB, [mixed])


def test_limits_count_what_is_already_there() -> None:
    sources = ConferenceSources(max_sources=3)
    sources.add(BOB, [content("audio", [1, 2], msid=None)])
    with pytest.raises(ValueError, match="more than 3 audio sources"):
        sources.add(BOB, [content("audio", [3, 4], msid=None)])
    assert sources.add(BOB, [content("audio", [3], msid=None)])
    # A later group may tie together sources from earlier signalling.
    sources.add(BOB, [content("video", [10], msid="v t")])
    assert sources.add(BOB, [content("video", [11], [("FID", [10, 11])], msid="v t")]) == {
        BOB: {"video": MediaSources([Source(11, parameters=[Parameter("msid", "v t")])],
                                    [SourceGroup("FID", [10, 11])])}}


@pytest.mark.parametrize(("contents", "message"), [
    ([content("audio", [9999])], "no such audio source: 9999"),
    ([content("audio", [1001])], "no such audio source: 1001"),
    ([content("video", [], [("FID", [1001, 2002])])], "no such video ssrc-group: FID"),
    ([content("video", [0])], "invalid SSRC: 0"),
    # Bob's simulcast streams would be left ungrouped with one msid.
    ([content("video", [], [("SIM", [1001, 1002, 1003])])], "msid 'st-1 tr-1' is used by"),
])
def test_invalid_removals(contents: list[Content], message: str) -> None:
    sources = sources_with_bob()
    before = sources.of(BOB)
    with pytest.raises(ValueError) as info:
        sources.remove(BOB, contents)
    assert str(info.value).startswith(message)
    assert sources.of(BOB) == before
    with pytest.raises(ValueError, match="no such audio source"):
        sources.remove(ALICE, [content("audio", [1111])])


ops = st.lists(st.tuples(
    st.sampled_from(["add", "remove", "leave"]), st.sampled_from([ALICE, BOB, CAROL]),
    st.sampled_from(["audio", "video"]), st.lists(st.integers(1, 12), max_size=4),
    st.lists(st.tuples(st.sampled_from(["FID", "SIM"]), st.lists(st.integers(1, 12), min_size=1,
                                                                   max_size=3)), max_size=2),
    st.sampled_from(["m t", "n t", None])), max_size=25)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_bookkeeping_invariants(operations: list[tuple]) -> None:
    """Whatever clients signal, every SSRC has one owner and every group its owner's SSRCs; a
    failed operation changes nothing."""
    sources = ConferenceSources(max_sources=6, max_groups=3)
    for op, owner, media, ssrcs, groups, msid in operations:
        before = {o: sources.of(o) for o in (ALICE, BOB, CAROL)}
        try:
            if op == "add":
                sources.add(owner, [content(media, ssrcs, groups, msid)])
            elif op == "remove":
                sources.remove(owner, [content(media, ssrcs, groups, msid)])
            else:
                sources.remove_owner(owner)
        except ValueError:
            assert {o: sources.of(o) for o in (ALICE, BOB, CAROL)} == before
        seen: set[int] = set()
        for o in sources.owners():
            for kept in sources.of(o).values():
                assert not seen.intersection(kept.ssrcs)
                seen.update(kept.ssrcs)
                assert len(kept.sources) <= 6 and len(kept.groups) <= 3
                for group in kept.groups:
                    assert set(group.ssrcs) <= set(kept.ssrcs)


# -- the client's transport ---------------------------------------------------------------------

def test_client_transport_from_session_accept() -> None:
    transport = client_transport(jingle_of(SESSION_ACCEPT))
    assert transport == IceUdpTransport(
        "cU1x", "cPcPcPcPcPcPcPcPcPcPcPcP",
        [Fingerprint("sha-256", "active", "12:34:56:78:9A:BC:DE:F0")])


def test_client_transport_from_transport_info() -> None:
    transport = client_transport(jingle_of(TRANSPORT_INFO))
    assert transport.fingerprints == [Fingerprint("sha-256", "active", "12:34:56:78:9A:BC:DE:F0")]
    (candidate,) = transport.candidates
    assert candidate.ip.endswith(".local") and candidate.port == 54321


def ice_content(name: str, ufrag: str | None = "u", setup: str | None = None,
                candidates: Sequence[Candidate] = ()) -> Content:
    return Content(name, transport=IceUdpTransport(
        ufrag, "p", [Fingerprint("sha-256", setup, "AA")], list(candidates)))


def test_client_transport_merges_contents() -> None:
    host = Candidate(component=1, foundation="1", ip="192.0.2.1", port=5000, priority=1,
                     protocol="udp", type="host")
    relay = Candidate(component=1, foundation="2", ip="198.51.100.1", port=3478, priority=0,
                      protocol="udp", type="relay")
    jingle = Jingle("transport-info", "s", contents=[
        ice_content("0", candidates=[host, host]), ice_content("1", None, "passive", [relay, host]),
        Content("2")])
    assert client_transport(jingle) == IceUdpTransport(
        "u", "p", [Fingerprint("sha-256", "active", "AA"), Fingerprint("sha-256", "passive", "AA")],
        [host, relay])
    assert client_transport(Jingle("transport-info", "s", contents=[
        ice_content("0", setup="actpass")])).fingerprints[0].setup == "active"


def test_client_transport_errors() -> None:
    with pytest.raises(ValueError, match="session-accept carries no ICE-UDP transport"):
        client_transport(Jingle("session-accept", "s", contents=[Content("audio")]))
    with pytest.raises(ValueError, match="different ICE credentials"):
        client_transport(Jingle("transport-info", "s", contents=[
            ice_content("0", "u1"), ice_content("1", "u2")]))
