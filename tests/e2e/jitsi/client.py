"""A Jitsi conference participant in Python: lib-jitsi-meet's signalling, aiortc's media.

The flow is PROTOCOL.md's, as an unmodified lib-jitsi-meet runs it:

1. XMPP over WebSocket to ``SERVICE_URL?room=ROOM[&token=JWT]``, SASL ANONYMOUS, bind
   (:class:`~tests.e2e.jitsi.xmpp.XMPPClient`); then, in the background, the XEP-0215 services
   and disco#info requests to the domain, and an XMPP ping every 10 s.
2. The focus ``conference`` IQ to ``focus.DOMAIN``, re-sent after 1, 2, 4 … s until the
   answer says ``ready="true"``; its ``focusjid`` is how the focus is recognised.
3. The MUC join presence (``<x xmlns=muc/>``, stats-id, caps, codec type, display name); the
   join completes on the self-presence (``from`` = ``ROOM/NICK``). The nick is the first 8
   characters of the bound JID's node when they are hex, as lib-jitsi-meet picks it.
4. Jingle IQs are taken only from ``ROOM/focus`` whose presence carries the ``focusjid`` real
   JID; they are acknowledged at once and applied in order by one worker task:
   ``session-initiate`` builds an aiortc peer connection from the offer (unified plan, see
   :mod:`tests.e2e.jitsi.sdp`), answers with ``session-accept`` (sources with msid, FID
   groups, ``setup="active"``) and then one ``transport-info`` per local candidate; the focus
   stays the offerer, so ``source-add``/``source-remove`` update the remote source set, build
   the next offer and answer it locally. Removed streams' tracks end (``readyState ==
   "ended"``, ``recv()`` raises ``MediaStreamError``). ``session-terminate`` drops the session
   until the next ``session-initiate``; ``transport-replace`` is refused with
   ``transport-reject`` (aiortc cannot restart ICE). :meth:`JitsiClient.terminate` ends the
   session from our side, with ``restart=True`` the way lib-jitsi-meet asks for a new one
   after an ICE failure.
5. The bridge channel (colibri-ws, the transport's first ``web-socket`` URL) is opened right
   after session-initiate; it sends ``VideoTypeMessage`` and keeps every message received.
6. :meth:`JitsiClient.leave` sends unavailable presence, closes the media and the stream.

Remote tracks are exposed by owner endpoint (the resource of the source's ``ssrc-info``
owner, i.e. the owner's nick): :attr:`JitsiClient.remote_tracks` holds one
:class:`RemoteTrack` per live remote m-line, :meth:`JitsiClient.tracks_of` gives an endpoint's
by media type, and :attr:`JitsiClient.removed_tracks` those whose sources were removed.
Local media is an aiortc ``MediaPlayer`` on lavfi ``testsrc`` (of ``video_size``) and ``sine``
(at ``audio_frequency``), relayed to each session's peer connection, unless ``tracks`` are
given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer, MediaRelay
from twisted.words.xish.domish import Element

from tests.e2e.jitsi.sdp import (
    RemoteOffer,
    UnifiedPlan,
    local_candidates,
    session_accept,
    transport_info,
)
from tests.e2e.jitsi.xmpp import (
    CLIENT_FEATURES,
    WebSocket,
    WebSocketClosed,
    XMPPClient,
    XMPPError,
    child,
    run_quietly,
    stanza,
)
from vw.bridge.colibri2 import Candidate
from vw.focus.jingle import JINGLE_ERRORS_NS, JINGLE_NS, BridgeSession, Jingle, Reason

log = logging.getLogger(__name__)

FOCUS_NS = "http://jitsi.org/protocol/focus"
MUC_NS = "http://jabber.org/protocol/muc"
MUC_USER_NS = "http://jabber.org/protocol/muc#user"
NICK_NS = "http://jabber.org/protocol/nick"
CAPS_NS = "http://jabber.org/protocol/caps"
EXTDISCO_NS = "urn:xmpp:extdisco:2"
DISCO_INFO_NS = "http://jabber.org/protocol/disco#info"
MUTE_NS = {"audio": "http://jitsi.org/jitmeet/audio", "video": "http://jitsi.org/jitmeet/video"}
#: The focus's nick in every room (hard-coded in lib-jitsi-meet).
FOCUS_NICK = "focus"
#: Jingle actions this client acts on or acknowledges (others get bad-request).
ACTIONS = frozenset({"session-initiate", "session-terminate", "source-add", "source-remove",
                     "transport-info", "transport-replace", "session-info",
                     "description-info"})


def ipv4_udp(candidate: Candidate) -> bool:
    """The default candidate filter: IPv4 UDP (the bridge learns the rest as peer-reflexive)."""
    try:
        return candidate.protocol == "udp" and ipaddress.ip_address(candidate.ip).version == 4
    except ValueError:
        return False


def caps_ver(features: Iterable[str]) -> str:
    """XEP-0115 verification string of this client's identity and features."""
    text = "client/web//lib-jitsi-meet<" + "".join(f + "<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(text.encode()).digest()).decode()


@dataclass
class Occupant:
    """A room occupant as its latest presence shows it."""

    nick: str
    jid: str
    affiliation: str | None
    role: str | None
    display_name: str | None
    presence: Element

    def element_text(self, name: str) -> str | None:
        found = child(self.presence, None, name)
        return None if found is None else str(found).strip()


@dataclass
class RemoteTrack:
    """One remote stream: its owner, its SSRCs, the m-line and the aiortc track."""

    endpoint: str
    owner: str
    media: str
    msid: str
    ssrcs: tuple[int, ...]
    mid: str
    track: MediaStreamTrack


class JitsiClient:
    """One participant. ``service_url`` is ``ws://HOST:PORT/xmpp-websocket`` (lib-jitsi-meet's
    ``serviceUrl``; ``?room=ROOM`` is added); ``room`` the room's name (node)."""

    def __init__(self, service_url: str, room: str, *, domain: str = "localhost",
                 muc_domain: str | None = None, focus: str | None = None,
                 token: str | None = None, display_name: str | None = None,
                 nick: str | None = None, video_size: tuple[int, int] = (320, 240),
                 video_rate: int = 15, audio_frequency: int = 440, audio: bool = True,
                 video: bool = True, tracks: list[MediaStreamTrack] | None = None,
                 bridge_channel: bool = True,
                 keep_candidate: Callable[[Candidate], bool] = ipv4_udp) -> None:
        self.domain = domain
        self.room_jid = f"{room}@{muc_domain or 'conference.' + domain}".lower()
        self.focus_jid = focus or f"focus.{domain}"
        separator = "&" if "?" in service_url else "?"
        self.service_url = f"{service_url}{separator}room={room.lower()}"
        self.token = token
        self.display_name = display_name
        self.nick = nick
        self.video_size = video_size
        self.video_rate = video_rate
        self.audio_frequency = audio_frequency
        self.send_audio = audio
        self.send_video = video
        self.bridge_channel = bridge_channel
        self.keep_candidate = keep_candidate
        self.machine_uid = secrets.token_hex(16)
        self.stats_id = f"{display_name or 'Guest'}-{secrets.token_hex(2)}"

        self.xmpp: XMPPClient | None = None
        #: The focus's bare real JID (the conference answer's ``focusjid``).
        self.focus_real_jid: str | None = None
        #: The conference answer's properties (``authentication``, …).
        self.conference_properties: dict[str, str] = {}
        #: Other occupants (the focus included) by nick; ``me`` is our own.
        self.occupants: dict[str, Occupant] = {}
        self.me: Occupant | None = None
        #: The session Jingle is accepted for (None before the first offer, after an end).
        self.sid: str | None = None
        #: The offer's ``<bridge-session id/>``, echoed when asking for a restart.
        self.bridge_session: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.offer: RemoteOffer | None = None
        self.layout: UnifiedPlan | None = None
        #: True once the focus acknowledged our session-accept.
        self.accepted = False
        #: Live remote streams by m-line, and those that were removed, in order.
        self.remote_tracks: dict[str, RemoteTrack] = {}
        self.removed_tracks: list[RemoteTrack] = []
        #: Endpoints whose sources came before their presence: lib-jitsi-meet would make no
        #: track for them (PROTOCOL.md §4: send source-add after the owner's presence).
        self.sources_before_presence: list[str] = []
        #: Every Jingle action received, in order; and those refused (action, condition).
        self.jingle_actions: list[str] = []
        self.refused_jingle: list[tuple[str, str]] = []
        #: Mute requests from the focus, by media type.
        self.mute_requests: dict[str, bool] = {}
        #: Bridge channel messages received (decoded JSON).
        self.bridge_messages: list[dict] = []
        #: The XEP-0215 services answer, if any.
        self.services: Element | None = None
        #: Failures in the Jingle worker and the bridge channel (a healthy run has none).
        self.errors: list[BaseException] = []

        self._players: list[MediaPlayer] = []
        #: Each session's peer connection gets its own relay of the local tracks (aiortc stops
        #: a sender's track when the connection closes; a restarted session needs them still).
        self._relay = MediaRelay()
        self._local: list[MediaStreamTrack] | None = tracks
        self._own_tracks = tracks is None
        self._actions: asyncio.Queue[Jingle] = asyncio.Queue()
        #: The session the worker has set up (the peer connection's).
        self._session_sid: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._session_tasks: list[asyncio.Task[None]] = []
        self._bridge: WebSocket | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._joined: asyncio.Future[None] | None = None
        self._left = False

    def __repr__(self) -> str:
        return f"<JitsiClient {self.display_name or ''} {self.nick} in {self.room_jid}>"

    # -- conditions ----------------------------------------------------------------------

    def _changed(self, *_: object) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        """Wait until ``predicate()`` holds (checked after every change); TimeoutError with
        ``what`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    if self._waiter is None:
                        self._waiter = asyncio.get_running_loop().create_future()
                    await asyncio.wait({self._waiter})
        except TimeoutError:
            raise TimeoutError(f"{self!r}: timed out waiting for {what}") from None

    # -- joining -------------------------------------------------------------------------

    async def join(self, timeout: float = 20.0) -> None:
        """Connect, ask the focus for the conference, join the room (self-presence seen)."""
        async with asyncio.timeout(timeout):
            self.xmpp = XMPPClient(self.service_url, self.domain, self.token)
            jid = await self.xmpp.connect()
            self.xmpp.on_presence(self._presence)
            self.xmpp.on_iq(JINGLE_NS, "jingle", self._jingle_iq)
            for media, namespace in MUTE_NS.items():
                self.xmpp.on_iq(namespace, "mute", lambda iq, media=media: self._mute(iq, media))
            self._tasks.append(asyncio.create_task(self._work()))
            self._tasks.append(asyncio.create_task(self._discover()))
            if self.nick is None:
                node = jid.partition("@")[0][:8].lower()
                self.nick = node if re.fullmatch(r"[0-9a-f]{8}", node) else secrets.token_hex(4)
            await self._request_conference()
            self._joined = asyncio.get_running_loop().create_future()
            self.xmpp.send(self._presence_stanza(join=True))
            await self._joined

    async def _discover(self) -> None:
        """XEP-0215 services and disco#info of the domain; failures are only logged."""
        services = stanza("iq", type="get", to=self.domain)
        services.addElement((EXTDISCO_NS, "services"))
        info = stanza("iq", type="get", to=self.domain)
        info.addElement((DISCO_INFO_NS, "query"))
        try:
            self.services = await self.xmpp.request(services, timeout=5)
        except (XMPPError, TimeoutError, ConnectionError) as error:
            log.info("%r: extdisco failed: %s", self, error)
        await run_quietly(self.xmpp.request(info, timeout=5), "disco#info")

    async def _request_conference(self) -> None:
        delay = 1.0
        while True:
            iq = stanza("iq", type="set", to=self.focus_jid)
            conference = iq.addElement((FOCUS_NS, "conference"))
            conference["room"] = self.room_jid
            conference["machine-uid"] = self.machine_uid
            for name, value in (("disableRtx", "false"), ("rtcstatsEnabled", "false"),
                                ("callstatsEnabled", "false")):
                prop = conference.addElement("property")
                prop["name"] = name
                prop["value"] = value
            try:
                reply = await self.xmpp.request(iq, timeout=15)
            except XMPPError as error:
                if error.condition in ("not-authorized", "not-allowed", "bad-request",
                                       "graceful-shutdown", "reservation-error"):
                    raise
                log.info("%r: conference request failed (%s); retrying", self, error)
            else:
                answer = child(reply, FOCUS_NS, "conference")
                if answer is not None and answer.getAttribute("ready") == "true":
                    self.focus_real_jid = answer.getAttribute("focusjid")
                    self.conference_properties = {
                        p.getAttribute("name", ""): p.getAttribute("value", "")
                        for p in answer.elements() if p.name == "property"}
                    return
            await asyncio.sleep(delay)
            delay *= 2

    def _presence_stanza(self, join: bool = False) -> Element:
        presence = stanza("presence", to=f"{self.room_jid}/{self.nick}")
        if join:
            presence.addElement((MUC_NS, "x"))
        presence.addElement("stats-id", content=self.stats_id)
        caps = presence.addElement((CAPS_NS, "c"))
        caps["hash"] = "sha-1"
        caps["node"] = "https://jitsi.org/jitsi-meet"
        caps["ver"] = caps_ver(CLIENT_FEATURES)
        presence.addElement("jitsi_participant_codecType", content="vp8")
        if self.display_name:
            presence.addElement((NICK_NS, "nick"), content=self.display_name)
        if self.accepted:
            presence.addElement("audiomuted", content="false" if self.send_audio else "true")
            presence.addElement("videomuted", content="false" if self.send_video else "true")
        return presence

    def _presence(self, presence: Element) -> None:
        bare, _, nick = presence.getAttribute("from", "").partition("/")
        if bare.lower() != self.room_jid or not nick:
            return
        kind = presence.getAttribute("type")
        if kind == "error":
            if nick == self.nick and self._joined is not None and not self._joined.done():
                self._joined.set_exception(XMPPError.from_stanza(presence))
            return
        if kind == "unavailable":
            self.occupants.pop(nick, None)
            self._changed()
            return
        x = child(presence, MUC_USER_NS, "x")
        item = None if x is None else child(x, None, "item")
        real_jid = None if item is None else item.getAttribute("jid")
        if real_jid is None:
            return  # lib-jitsi-meet ignores an occupant without a real JID entirely
        name = child(presence, NICK_NS, "nick")
        occupant = Occupant(nick, real_jid, item.getAttribute("affiliation"),
                            item.getAttribute("role"),
                            None if name is None else str(name), presence)
        if nick == self.nick:
            self.me = occupant
            if self._joined is not None and not self._joined.done():
                self._joined.set_result(None)
        else:
            self.occupants[nick] = occupant
        self._changed()

    @property
    def participants(self) -> dict[str, Occupant]:
        """The other participants (the focus left out), by nick (= endpoint id)."""
        return {n: o for n, o in self.occupants.items() if not self._is_focus(n)}

    @property
    def focus_properties(self) -> dict[str, str]:
        """The focus presence's ``<conference-properties>`` (``key`` -> ``value``), where
        lib-jitsi-meet learns ``support-terminate-restart``."""
        focus = self.occupants.get(FOCUS_NICK)
        found = None if focus is None else child(focus.presence, FOCUS_NS,
                                                 "conference-properties")
        if found is None:
            return {}
        return {p.getAttribute("key", ""): p.getAttribute("value", "")
                for p in found.elements() if p.name == "property"}

    def _is_focus(self, nick: str) -> bool:
        occupant = self.occupants.get(nick)
        return (nick == FOCUS_NICK and occupant is not None and self.focus_real_jid is not None
                and occupant.jid.startswith(self.focus_real_jid + "/"))

    def _mute(self, iq: Element, media: str) -> None:
        if iq.getAttribute("from") != f"{self.room_jid}/{FOCUS_NICK}":
            raise XMPPError("not-allowed")
        self.mute_requests[media] = str(iq.firstChildElement()).strip() == "true"
        self._changed()

    # -- Jingle --------------------------------------------------------------------------

    def _jingle_iq(self, iq: Element) -> None:
        """Acknowledge at once (or refuse); the worker applies it later, in order."""
        payload = iq.firstChildElement()
        action = payload.getAttribute("action", "")
        try:
            if iq.getAttribute("type") != "set":
                raise XMPPError("bad-request", "Jingle is set")
            sender = iq.getAttribute("from", "")
            if sender != f"{self.room_jid}/{FOCUS_NICK}" or not self._is_focus(FOCUS_NICK):
                raise XMPPError("not-allowed", "Jingle is only taken from the focus")
            try:
                jingle = Jingle.fromElement(payload)
            except ValueError as error:
                raise XMPPError("bad-request", str(error)[:200]) from None
            if jingle.action not in ACTIONS:
                raise XMPPError("bad-request", f"unsupported action {jingle.action}")
            if jingle.action == "session-initiate":
                self.sid = jingle.sid
            elif jingle.sid != self.sid:
                raise XMPPError("item-not-found", "unknown session",
                                extra=[Element((JINGLE_ERRORS_NS, "unknown-session"),
                                               defaultUri=JINGLE_ERRORS_NS)])
            elif jingle.action == "session-terminate":
                self.sid = None
        except XMPPError as error:
            self.refused_jingle.append((action, error.condition))
            raise
        self.jingle_actions.append(jingle.action)
        if jingle.action in ("session-initiate", "source-add"):
            for content in jingle.contents:
                for source in content.description.sources if content.description else []:
                    owner = (source.owner or "").partition("/")[2]
                    if owner and owner not in self.occupants:
                        self.sources_before_presence.append(owner)
        self._actions.put_nowait(jingle)
        self._changed()

    async def _work(self) -> None:
        handlers = {"session-initiate": self._session_initiate,
                    "source-add": self._source_add, "source-remove": self._source_remove,
                    "session-terminate": self._session_terminate,
                    "transport-replace": self._transport_replace}
        while True:
            jingle = await self._actions.get()
            handler = handlers.get(jingle.action)
            if handler is None or (jingle.action != "session-initiate"
                                   and jingle.sid != self._session_sid):
                continue  # for a session already replaced or ended
            try:
                await handler(jingle)
            except Exception as error:  # recorded: a healthy conference has none
                log.exception("%r: %s failed", self, jingle.action)
                self.errors.append(error)
            self._changed()

    async def _send_jingle(self, jingle: Jingle, timeout: float = 10.0) -> Element:
        iq = stanza("iq", type="set", to=f"{self.room_jid}/{FOCUS_NICK}")
        iq.addChild(jingle.toElement())
        return await self.xmpp.request(iq, timeout=timeout)

    def _local_tracks(self) -> list[MediaStreamTrack]:
        if self._local is None:
            self._local = []
            if self.send_audio:
                player = MediaPlayer(f"sine=frequency={self.audio_frequency}:sample_rate=48000",
                                     format="lavfi")
                self._players.append(player)
                self._local.append(player.audio)
            if self.send_video:
                width, height = self.video_size
                player = MediaPlayer(f"testsrc=size={width}x{height}:rate={self.video_rate}",
                                     format="lavfi")
                self._players.append(player)
                self._local.append(player.video)
        return self._local

    async def _session_initiate(self, jingle: Jingle) -> None:
        await self._close_session()
        self._session_sid = jingle.sid
        self.bridge_session = jingle.bridge_session.id if jingle.bridge_session else None
        self.offer = RemoteOffer(jingle)
        self.layout = UnifiedPlan()
        url = self.offer.transport.web_socket_url
        if self.bridge_channel and url:
            self._session_tasks.append(asyncio.create_task(self._bridge_channel(url)))
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.pc.on("connectionstatechange", self._changed)
        for track in self._local_tracks():
            self.pc.addTrack(self._relay.subscribe(track, buffered=False))
        await self._negotiate()
        answer = self.pc.localDescription.sdp
        await self._send_jingle(session_accept(answer, self.offer, jingle.sid,
                                               f"{self.room_jid}/{FOCUS_NICK}", self.xmpp.jid))
        self.accepted = True
        content = self.layout.mlines[0].mid
        await asyncio.gather(*(
            self._send_jingle(transport_info(answer, jingle.sid, content, [candidate]))
            for candidate in local_candidates(answer, self.keep_candidate)))
        self.xmpp.send(self._presence_stanza())  # now with audiomuted/videomuted

    async def _negotiate(self) -> None:
        """Offer aiortc the current remote sources and answer it; update the remote tracks."""
        added, retired = self.layout.update(self.offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(self.layout.offer(self.offer),
                                                                 "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        transceivers = {t.mid: t for t in self.pc.getTransceivers()}
        for mline in retired:
            await self._end(mline.mid, transceivers.get(mline.mid))
        for mline in added:
            stream = mline.stream
            transceiver = transceivers[mline.mid]
            self.remote_tracks[mline.mid] = RemoteTrack(
                stream.endpoint or "", stream.owner or "", stream.media, stream.msid,
                stream.ssrcs, mline.mid, transceiver.receiver.track)
        self._changed()

    async def _end(self, mid: str, transceiver: RTCRtpTransceiver | None) -> None:
        remote = self.remote_tracks.pop(mid, None)
        if transceiver is not None:
            await transceiver.receiver.stop()
        if remote is not None:
            remote.track.stop()
            queue = getattr(remote.track, "_queue", None)
            if queue is not None:  # wake a consumer blocked in recv(): it sees the end
                queue.put_nowait(None)
            self.removed_tracks.append(remote)

    async def _connected(self, timeout: float = 10.0) -> None:
        """Renegotiate only once the first connection is up (aiortc starts the receivers of
        new m-lines only on a connected transport)."""
        with contextlib.suppress(TimeoutError):
            await self.wait_for(lambda: self.pc is None or self.pc.connectionState in (
                "connected", "failed", "closed"), timeout, "the media connection")

    async def _source_add(self, jingle: Jingle) -> None:
        await self._connected()
        self.offer.add_sources(jingle.contents)
        await self._negotiate()

    async def _source_remove(self, jingle: Jingle) -> None:
        await self._connected()
        self.offer.remove_sources(jingle.contents)
        await self._negotiate()

    async def _session_terminate(self, jingle: Jingle) -> None:
        await self._close_session()
        self._session_sid = None

    async def _transport_replace(self, jingle: Jingle) -> None:
        await self._send_jingle(Jingle("transport-reject", jingle.sid, contents=[]))

    async def _close_session(self) -> None:
        for task in self._session_tasks:
            task.cancel()
        self._session_tasks.clear()
        if self._bridge is not None:
            await self._bridge.close()
            self._bridge = None
        if self.pc is not None:
            transceivers = {t.mid: t for t in self.pc.getTransceivers()}
            for mid in list(self.remote_tracks):
                await self._end(mid, transceivers.get(mid))
            await self.pc.close()
            self.pc = None
        self.accepted = False

    # -- the bridge channel --------------------------------------------------------------

    async def _bridge_channel(self, url: str) -> None:
        try:
            self._bridge = await WebSocket.connect(url)
            self._bridge.send(json.dumps({"colibriClass": "VideoTypeMessage",
                                          "videoType": "camera" if self.send_video else "none"}))
            while True:
                text = await self._bridge.receive()
                try:
                    self.bridge_messages.append(json.loads(text))
                except ValueError:
                    continue
                self._changed()
        except WebSocketClosed:
            pass
        except Exception as error:  # recorded: the channel should open
            log.warning("%r: bridge channel failed: %s", self, error)
            self.errors.append(error)

    def send_endpoint_message(self, payload: object, to: str = "") -> None:
        """An EndpointMessage over the bridge channel (``to=""`` is everyone else)."""
        if self._bridge is None:
            raise ConnectionError("no bridge channel")
        self._bridge.send(json.dumps({"colibriClass": "EndpointMessage", "to": to,
                                      "msgPayload": payload}))

    # -- what the test looks at ----------------------------------------------------------

    def tracks_of(self, endpoint: str) -> dict[str, RemoteTrack]:
        """``endpoint``'s live remote tracks by media type (the first of each)."""
        found: dict[str, RemoteTrack] = {}
        for remote in self.remote_tracks.values():
            if remote.endpoint == endpoint:
                found.setdefault(remote.media, remote)
        return found

    def describe(self) -> str:
        """A summary of the client's state, for failure reports."""
        state = self.pc.connectionState if self.pc is not None else "no peer connection"
        tracks = sorted(f"{r.endpoint}/{r.media}@{r.mid}" for r in self.remote_tracks.values())
        removed = sorted(f"{r.endpoint}/{r.media}@{r.mid}" for r in self.removed_tracks)
        return (f"{self!r}: sid={self.sid} accepted={self.accepted} media={state} "
                f"jingle={self.jingle_actions} refused={self.refused_jingle} "
                f"occupants={sorted(self.occupants)} tracks={tracks} removed={removed} "
                f"errors={self.errors!r}")

    @property
    def endpoint_id(self) -> str:
        """Our endpoint id on the bridge: the nick."""
        assert self.nick is not None
        return self.nick

    async def wait_connected(self, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self.accepted and self.pc is not None
                            and self.pc.connectionState == "connected", timeout,
                            "the session to connect")

    async def wait_for_tracks(self, endpoints: Iterable[str],
                              media: Iterable[str] = ("audio", "video"),
                              timeout: float = 10.0) -> dict[str, dict[str, RemoteTrack]]:
        """Wait until every endpoint has a live track of every media type; returns them."""
        endpoints, media = list(endpoints), list(media)
        await self.wait_for(lambda: all(set(media) <= set(self.tracks_of(e))
                                        for e in endpoints), timeout,
                            f"{media} tracks of {endpoints}")
        return {e: self.tracks_of(e) for e in endpoints}

    async def wait_removed(self, endpoint: str, timeout: float = 10.0) -> list[RemoteTrack]:
        """Wait until ``endpoint`` has no live track left (after it had some); returns its
        removed tracks."""
        await self.wait_for(lambda: not self.tracks_of(endpoint) and any(
            r.endpoint == endpoint for r in self.removed_tracks), timeout,
            f"the tracks of {endpoint} to go")
        return [r for r in self.removed_tracks if r.endpoint == endpoint]

    # -- leaving -------------------------------------------------------------------------

    async def leave(self, timeout: float = 5.0) -> None:
        """Leave the room, end the session and the XMPP stream; stop the local media."""
        if self._left:
            return
        self._left = True
        try:
            if self.xmpp is not None and not self.xmpp.closed.is_set() and self.nick:
                with contextlib.suppress(ConnectionError):
                    self.xmpp.send(stanza("presence", type="unavailable",
                                          to=f"{self.room_jid}/{self.nick}"))
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(BaseException):
                    await task
            async with asyncio.timeout(timeout):
                await self._close_session()
        finally:
            if self._own_tracks:
                for track in self._local or []:
                    track.stop()
            if self.xmpp is not None:
                await self.xmpp.close()

    async def terminate(self, restart: bool = False) -> None:
        """End the Jingle session from our side, staying in the room. With ``restart`` it is
        lib-jitsi-meet's ICE-failure request (``connectivity-error``, "ICE FAILED", and
        ``<bridge-session id restart="true"/>``), after which the focus invites again."""
        if self.sid is None:
            return
        if restart:
            terminate = Jingle("session-terminate", self.sid,
                               reason=Reason("connectivity-error", "ICE FAILED"),
                               bridge_session=BridgeSession(self.bridge_session or "",
                                                            restart=True))
        else:
            terminate = Jingle("session-terminate", self.sid, reason=Reason("success"))
        # Ended here first: a new offer (after a restart) is queued after this.
        self._actions.put_nowait(Jingle("session-terminate", self.sid))
        self.sid = None
        await self._send_jingle(terminate)
