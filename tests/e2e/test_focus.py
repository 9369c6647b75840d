"""The focus against slixmpp clients speaking the Jitsi protocol: the conference request, the
room, Jingle offers with the bridge's transport, sources relayed between participants, and
hostile signalling refused while the conference goes on."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from xml.etree import ElementTree

import slixmpp
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.e2e.conftest import Stack
from tests.e2e.slix import connect, disconnect
from tests.xmpp.helpers import xml
from vw.bridge import colibri2
from vw.focus.jingle import JINGLE_NS, Content, Jingle, RtpDescription

FOCUS_NS = "http://jitsi.org/protocol/focus"
ROOM = "focustest@conference.localhost"
FINGERPRINT = ":".join(["AB"] * 32)


class JitsiClient:
    """A guest that asks the focus for the conference, joins the room and answers Jingle."""

    def __init__(self, client: slixmpp.ClientXMPP, nick: str) -> None:
        self.client = client
        self.nick = nick
        self.jingle: asyncio.Queue[Jingle] = asyncio.Queue()
        self.sid: str | None = None
        client.register_handler(Callback("jingle", MatchXPath(
            f"{{jabber:client}}iq/{{{JINGLE_NS}}}jingle"), self._jingle))

    def _jingle(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        jingle = Jingle.fromElement(xml(str(iq)).firstChildElement())
        assert iq["from"].full == f"{ROOM}/focus"
        iq.reply().send()
        self.jingle.put_nowait(jingle)

    async def next_jingle(self, action: str) -> Jingle:
        async with asyncio.timeout(15):
            while True:
                jingle = await self.jingle.get()
                if jingle.action == action:
                    return jingle

    async def request_conference(self, room: str = ROOM) -> ElementTree.Element:
        iq = self.client.make_iq_set(ito="focus.localhost")
        request = ElementTree.Element(f"{{{FOCUS_NS}}}conference", room=room)
        iq.xml.append(request)
        reply = await iq.send(timeout=15)
        return reply.xml.find(f"{{{FOCUS_NS}}}conference")

    async def join(self) -> Jingle:
        answer = await self.request_conference()
        assert answer.get("ready") == "true" and answer.get("focusjid") == "focus@auth.localhost"
        presence = self.client.make_presence(pto=f"{ROOM}/{self.nick}")
        ElementTree.SubElement(presence.xml, "{http://jabber.org/protocol/muc}x")
        presence.send()
        offer = await self.next_jingle("session-initiate")
        self.sid = offer.sid
        return offer

    async def send(self, jingle: Jingle) -> slixmpp.Iq:
        iq = self.client.make_iq_set(ito=f"{ROOM}/focus")
        iq.xml.append(ElementTree.fromstring(jingle.toElement().toXml()))
        return await iq.send(timeout=15)


def sources_content(media: str, ssrc: int, owner: str) -> Content:
    source = colibri2.Source(ssrc=ssrc, parameters=[colibri2.Parameter(
        "msid", f"{owner}-stream {owner}-{media}")])
    return Content(media, creator="responder", description=RtpDescription(media, sources=[source]))


def accept(client: JitsiClient, audio: int, video: int) -> Jingle:
    transport = colibri2.IceUdpTransport(
        ufrag=f"u{client.nick}", pwd="p" * 22,
        fingerprints=[colibri2.Fingerprint(hash="sha-256", setup="active", value=FINGERPRINT)])
    contents = [sources_content("audio", audio, client.nick),
                sources_content("video", video, client.nick)]
    contents[0].transport = transport
    return Jingle("session-accept", client.sid, contents=contents)


def bridge_stats(stack: Stack) -> dict:
    url = f"http://127.0.0.1:{stack.bridge_http_port}/colibri/stats"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def owners(jingle: Jingle, media: str) -> dict[int, str | None]:
    content = next(c for c in jingle.contents if c.name == media)
    return {s.ssrc: s.owner for s in content.description.sources}


def test_focus_runs_a_conference_for_jitsi_clients(stack: Stack) -> None:
    async def scenario() -> None:
        clients = {}
        for nick in ("alice", "bob"):
            client = await connect("localhost", "", stack.c2s_port, stack.ca, "ANONYMOUS")
            clients[nick] = JitsiClient(client, nick)
        alice, bob = clients["alice"], clients["bob"]

        offer = await alice.join()
        assert [c.name for c in offer.contents] == ["audio", "video"]
        assert offer.bundle is not None and offer.bundle.contents == ["audio", "video"]
        transport = offer.contents[0].transport
        assert transport.candidates and transport.fingerprints[0].setup == "actpass"
        assert transport.web_sockets[0].url.startswith("ws://")
        assert set(owners(offer, "audio").values()) == {"jvb"}  # only the bridge's so far
        await alice.send(accept(alice, 1111, 2222))

        offer = await bob.join()
        assert owners(offer, "video")[2222] == f"{ROOM}/alice"  # alice's sources, her owner
        await bob.send(accept(bob, 3333, 4444))
        added = await alice.next_jingle("source-add")
        assert {ssrc: owner for content in added.contents
                for ssrc, owner in owners(added, content.name).items()} == {
            3333: f"{ROOM}/bob", 4444: f"{ROOM}/bob"}
        assert bridge_stats(stack)["endpoints"] >= 2

        # Hostile signalling, each refused while the conference goes on.
        unknown = Jingle("source-add", "no-such-session", contents=[
            sources_content("audio", 5555, "bob")])
        try:
            await bob.send(unknown)
            raise AssertionError("a Jingle for an unknown session was accepted")
        except IqError as error:
            assert error.condition == "item-not-found"
        stolen = Jingle("source-add", bob.sid, contents=[sources_content("video", 2222, "bob")])
        try:
            await bob.send(stolen)
            raise AssertionError("bob claimed alice's SSRC")
        except IqError as error:
            assert error.condition == "bad-request"
        stranger = JitsiClient(await connect("localhost", "", stack.c2s_port, stack.ca,
                                             "ANONYMOUS"), "eve")
        try:
            await stranger.send(Jingle("transport-info", alice.sid, contents=[
                Content("audio", transport=colibri2.IceUdpTransport(ufrag="x", pwd="y" * 22))]))
            raise AssertionError("a non-participant's transport-info was accepted")
        except IqError as error:
            assert error.condition in ("not-acceptable", "item-not-found")
        try:
            await stranger.request_conference("elsewhere@conference.example.org")
            raise AssertionError("a conference on another domain was accepted")
        except IqError as error:
            assert error.condition == "bad-request"

        # Bob leaves: alice is told his sources are gone, his endpoint is expired.
        bob.client.send_presence(pto=f"{ROOM}/bob", ptype="unavailable")
        removed = await alice.next_jingle("source-remove")
        assert {s for c in removed.contents for s in owners(removed, c.name)} == {3333, 4444}
        await asyncio.sleep(0.5)
        assert bridge_stats(stack)["endpoints"] == 1
        await disconnect(alice.client, bob.client, stranger.client)

    asyncio.run(scenario())
