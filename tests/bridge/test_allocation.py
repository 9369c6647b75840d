"""Colibri2 on the bridge: allocation, updates, expiry and errors, as IQs in and out."""

from __future__ import annotations

import pytest
from twisted.words.xish.domish import Element

from tests.xmpp.helpers import xml
from vw.bridge import colibri2
from vw.bridge.allocation import Allocations
from vw.bridge.bridge import Bridge
from vw.rtp.certificate import DtlsCertificate

MEETING = "4b0f2f5e-1111-2222-3333-444455556666"


@pytest.fixture
def bridge() -> Bridge:
    return Bridge("b1", DtlsCertificate.generate(), lambda data, address: None,
                  [("127.0.0.1", 10000)], "wss://meet.example", lambda: 100.0,
                  advertised=("198.51.100.7", 10000))


def iq(payload: colibri2.ConferenceModify) -> Element:
    element = xml("<iq type='get' id='c1' from='focus@auth.localhost/f' to='jvb.localhost'/>")
    element.addChild(payload.toElement())
    return element


def ask(bridge: Bridge, payload: colibri2.ConferenceModify) -> Element:
    reply = Allocations(bridge).handle_iq(iq(payload))
    assert reply is not None
    return reply


def reason(reply: Element) -> str:
    assert reply["type"] == "error"
    error = colibri2.Colibri2Error.fromStanza(reply)
    return error.reason if error else ""


def create(bridge: Bridge, *names: str) -> colibri2.ConferenceModified:
    reply = ask(bridge, colibri2.ConferenceModify(
        meeting_id=MEETING, name="room@conference.localhost", create=True,
        endpoints=[colibri2.Endpoint(id=n, create=True, stats_id=n.title(),
                                     transport=colibri2.Transport(ice_controlling=True))
                   for n in names]))
    assert reply["type"] == "result" and reply["to"] == "focus@auth.localhost/f"
    return colibri2.ConferenceModified.fromElement(reply.firstChildElement())


def test_create_answers_the_bridge_transport(bridge: Bridge) -> None:
    answer = create(bridge, "alice")
    ice = answer.endpoint("alice").transport.ice_udp
    endpoint = bridge.find_endpoint(MEETING, "alice")
    assert (ice.ufrag, ice.pwd) == (endpoint.ice.local_ufrag, endpoint.ice.local_pwd)
    assert ice.fingerprint.setup == "actpass"
    assert ice.fingerprint.value == bridge.transport.certificate.fingerprint
    assert [(c.ip, c.port, c.type) for c in ice.candidates] == [
        ("127.0.0.1", 10000, "host"), ("198.51.100.7", 10000, "srflx")]
    assert ice.rtcp_mux
    assert ice.web_socket_url == (f"wss://meet.example/colibri-ws/b1/{MEETING}/alice"
                                  f"?pwd={endpoint.channel_pwd}")
    assert [s.id for s in answer.sources] == ["jvb-a0", "jvb-v0"]
    assert endpoint.ice.controlling


def test_update_sets_transport_and_sources(bridge: Bridge) -> None:
    create(bridge, "alice", "bob")
    sources = [colibri2.MediaSource(type="video", id="alice-v0",
                                    sources=[colibri2.Source(ssrc=s) for s in (1, 2, 3, 11)],
                                    groups=[colibri2.SourceGroup("SIM", [1, 2, 3]),
                                            colibri2.SourceGroup("FID", [1, 11])])]
    fingerprint = colibri2.Fingerprint(hash="sha-256", setup="active", value="AB:CD")
    candidate = colibri2.Candidate(component=1, foundation="1", ip="127.0.0.1", port=5000,
                                   priority=1, protocol="udp", type="host")
    ice = colibri2.IceUdpTransport(ufrag="cu", pwd="cp" * 11, fingerprints=[fingerprint],
                                   candidates=[candidate])
    reply = ask(bridge, colibri2.ConferenceModify(meeting_id=MEETING, endpoints=[
        colibri2.Endpoint(id="alice", sources=sources,
                          transport=colibri2.Transport(ice_udp=ice))]))
    assert reply["type"] == "result"
    alice = bridge.find_endpoint(MEETING, "alice")
    assert (alice.ice.remote_ufrag, alice.remote_setup) == ("cu", "active")
    assert alice.remote_fingerprints == [("sha-256", "AB:CD")]
    (source,) = alice.sources
    assert source.layers == (1, 2, 3) and source.rtx == {1: 11}
    conference = bridge.conferences[MEETING]
    assert {ssrc: e.id for ssrc, e in conference.owners.items()} == {
        1: "alice", 2: "alice", 3: "alice", 11: "alice"}
    # Bob cannot claim Alice's SSRCs.
    ask(bridge, colibri2.ConferenceModify(meeting_id=MEETING, endpoints=[
        colibri2.Endpoint(id="bob", sources=[colibri2.MediaSource(
            type="video", id="bob-v0", sources=[colibri2.Source(ssrc=2)])])]))
    assert conference.owners[2].id == "alice"
    assert bridge.find_endpoint(MEETING, "bob").sources == []


def test_expire_endpoint_and_conference(bridge: Bridge) -> None:
    create(bridge, "alice")
    reply = ask(bridge, colibri2.ConferenceModify(meeting_id=MEETING, endpoints=[
        colibri2.Endpoint(id="alice", expire=True)]))
    assert reply["type"] == "result"
    assert bridge.find_endpoint(MEETING, "alice") is None
    ask(bridge, colibri2.ConferenceModify(meeting_id=MEETING, expire=True))
    assert MEETING not in bridge.conferences


def test_errors(bridge: Bridge) -> None:
    assert reason(ask(bridge, colibri2.ConferenceModify(meeting_id="nope"))) == \
        "conference_not_found"
    create(bridge, "alice")
    assert reason(ask(bridge, colibri2.ConferenceModify(meeting_id=MEETING, create=True))) == \
        "conference_already_exists"
    assert reason(ask(bridge, colibri2.ConferenceModify(meeting_id=MEETING, endpoints=[
        colibri2.Endpoint(id="ghost", sources=[])]))) == "unknown_endpoint"
    bridge.draining = True
    assert reason(ask(bridge, colibri2.ConferenceModify(meeting_id="other", create=True))) == \
        "graceful_shutdown"


def test_malformed_request_is_a_bad_request(bridge: Bridge) -> None:
    element = xml("<iq type='set' id='m' from='f@auth.localhost/x' to='jvb.localhost'>"
                  "<conference-modify xmlns='jitsi:colibri2'><endpoint/></conference-modify></iq>")
    reply = Allocations(bridge).handle_iq(element)
    assert reply["type"] == "error"
    assert reply.error.firstChildElement().name == "bad-request"


def test_results_are_not_answered(bridge: Bridge) -> None:
    assert Allocations(bridge).handle_iq(xml("<iq type='result' id='r'/>")) is None


def test_only_the_focus_may_allocate(bridge: Bridge) -> None:
    request = iq(colibri2.ConferenceModify(meeting_id="m9", create=True))
    request["from"] = "mallory@localhost/x"
    allocations = Allocations(bridge, frozenset({"focus@auth.localhost"}))
    reply = allocations.handle_iq(request)
    assert reply["type"] == "error" and reply.error.firstChildElement().name == "forbidden"
    assert "m9" not in bridge.conferences
    request["from"] = "focus@auth.localhost/focus"
    assert allocations.handle_iq(request)["type"] == "result"
