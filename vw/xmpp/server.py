"""The XMPP server's shared state: hosts, router, presence, storage, components, metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish.domish import Element

from vw.common.state import persistent_secret
from vw.config import Config
from vw.xmpp import storage
from vw.xmpp.errors import ReservationError, StanzaError
from vw.xmpp.features import Identity, ServerFeatures, TurnOffer
from vw.xmpp.lobby import Lobbies, visible
from vw.xmpp.muc import MUCService, RoomDefaults, RoomHint
from vw.xmpp.presence import Presence
from vw.xmpp.proxy import ClientProxy
from vw.xmpp.roster import ROSTER_NS, MemoryRosterStore, Rosters
from vw.xmpp.router import Router
from vw.xmpp.session import Session
from vw.xmpp.stanzas import parse_jid
from vw.xmpp.token import TokenIdentity, TokenVerifier

log = Logger()

FOCUS_NS = "http://jitsi.org/protocol/focus"

#: Jitsi's presence element carrying the token's user (mod_presence_identity).
IDENTITY = "identity"


class XMPPMetrics:
    def __init__(self, registry: CollectorRegistry, server: XMPPServer) -> None:
        self.logins = Counter("vw_xmpp_logins", "Successful SASL authentications",
                              registry=registry)
        self.auth_failures = Counter("vw_xmpp_auth_failures", "Refused authentications",
                                     ["kind"], registry=registry)
        self.stream_errors = Counter("vw_xmpp_stream_errors", "Stream errors sent",
                                     ["condition"], registry=registry)
        sessions = Gauge("vw_xmpp_sessions", "Bound client sessions", registry=registry)
        sessions.set_function(server.router.session_count)
        routed = Gauge("vw_xmpp_stanzas_routed", "Stanzas routed since start", registry=registry)
        routed.set_function(lambda: server.router.stanzas_routed)
        occupants = Gauge("vw_xmpp_muc_occupants", "Occupants of all rooms", registry=registry)
        occupants.set_function(lambda: sum(s.occupant_count() for s in server.muc_services))
        bugs = Gauge("vw_xmpp_muc_internal_errors", "MUC stanzas that hit a bug (should be 0)",
                     registry=registry)
        bugs.set_function(lambda: sum(s.internal_errors for s in server.muc_services))


class XMPPServer:
    """Everything the streams of one XMPP server share."""

    def __init__(self, config: Config, clock: IReactorTime,
                 registry: CollectorRegistry | None = None) -> None:
        self.full_config = config
        self.config = config.xmpp
        self.clock = clock
        self.domain = config.general.domain
        self.hosts = {self.domain, config.auth_domain}
        self.anonymous_hosts = {h for h in config.xmpp.anonymous_domains if h in self.hosts}
        self.registry = registry or CollectorRegistry()
        database = config.xmpp.database or f"sqlite:///{config.state_dir / 'xmpp.sqlite'}"
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.engine = storage.open_database(database)
        self.accounts = storage.AccountStore(self.engine)
        self.router = Router(self.hosts)
        self.router.account_exists = self.accounts.exists
        self.volatile_rosters = MemoryRosterStore()
        self.rosters = Rosters(storage.SQLRosterStore(self.engine), self.volatile_rosters,
                               self._is_account, self.router.resources)
        self.router.account_iq[ROSTER_NS] = self.rosters.handle_iq
        self.presence = Presence(self.router, self.rosters)
        self.token_verifier = TokenVerifier(config.xmpp.token, clock.seconds)
        self.features = ServerFeatures(self.router, self.domain, self._turn_offer(config),
                                       clock.seconds)
        # lib-jitsi-meet looks for the lobby component by this identity.
        self.features.identities.append(Identity("component", "lobbyrooms",
                                                  config.lobby_domain))
        self.resumable: dict[str, Session] = {}
        self._expiry: dict[str, IDelayedCall] = {}
        self.muc_domains = [config.conference_domain, config.internal_muc_domain,
                            *config.xmpp.muc_domains, config.lobby_domain]
        rooms = storage.SQLRoomStore(self.engine)
        admins = [f"focus@{config.auth_domain}", *config.xmpp.muc_admins]
        defaults = RoomDefaults(history_size=config.xmpp.muc_history)
        lobbies = Lobbies()
        self.muc_services = [
            MUCService(domain, self.router.route, clock=clock.seconds, defaults=defaults,
                       store=rooms, affiliation_hint=self._token_affiliation,
                       room_hint=self._token_room, admins=admins,
                       lobby=lobbies if domain == config.conference_domain else None)
            for domain in self.muc_domains[:-1]]
        #: The conference rooms' MUC service.
        self.conference_rooms = lobbies.rooms = self.muc_services[0]
        lobbies.lobbies = MUCService(config.lobby_domain, self.router.route,
                                     clock=clock.seconds, defaults=defaults,
                                     affiliation_hint=lobbies.affiliation, visibility=visible,
                                     creates_rooms=False, info_nodes=["lobbyrooms"],
                                     admins=admins)
        self.muc_services.append(lobbies.lobbies)
        for service in self.muc_services:
            self.router.register_component(service.domain, service)
        self.focus_proxy = ClientProxy(self.router, config.focus_domain,
                                       f"focus@{config.auth_domain}")
        self.router.register_component(config.focus_domain, self.focus_proxy)
        self.metrics = XMPPMetrics(self.registry, self)

    @staticmethod
    def _turn_offer(config: Config) -> TurnOffer:
        turn = config.xmpp.turn
        secret = turn.secret or persistent_secret(config.state_dir, "turn-secret")
        return TurnOffer(host=turn.host or config.general.domain, port=turn.port,
                         tls_port=turn.tls_port, secret=secret, ttl=turn.credential_ttl,
                         transports=tuple(turn.transports))

    def _is_account(self, bare: str) -> bool:
        jid = parse_jid(bare)
        return self.accounts.exists(jid.host, jid.user or "")

    def credentials_for(self, host: str) -> storage.HostCredentials:
        return storage.HostCredentials(self.accounts, host)

    # -- session lifecycle ---------------------------------------------------------

    def bind(self, session: Session) -> None:
        session.on_overflow = lambda s: self.end_session(s)
        self.router.bind(session)

    def detach(self, session: Session) -> None:
        """The connection is gone: keep a resumable session for a while, else end it."""
        if session.sm_id not in self.resumable:
            self.end_session(session)
            return
        session.sink = None
        self._expiry[session.sm_id] = self.clock.callLater(
            self.config.resume_timeout, self._expire, session)

    def resumed(self, session: Session) -> None:
        timer = self._expiry.pop(session.sm_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _expire(self, session: Session) -> None:
        self._expiry.pop(session.sm_id, None)
        if session.sink is None:
            self.end_session(session)

    def end_session(self, session: Session) -> None:
        self.resumable.pop(session.sm_id, None)
        timer = self._expiry.pop(session.sm_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        self.router.unbind(session)
        self.presence.session_ended(session)
        if session.anonymous and not self.router.resources(session.bare):
            self.volatile_rosters.forget(session.bare)

    # -- client stanzas ------------------------------------------------------------------

    def handle_client_stanza(self, session: Session, stanza: Element) -> None:
        """A stanza from a bound client, with ``from`` already stamped."""
        try:
            to = stanza.getAttribute("to")
            target = parse_jid(to) if to else None
            self.focus_proxy.answering(session, stanza)
            if target is not None and target.host == self.focus_proxy.domain:
                self._check_conference_request(session, stanza)
            if stanza.name == "presence":
                if target is not None and target.host in self.muc_domains:
                    self._prepare_room_presence(session, target, stanza)
                self.presence.outbound(session, stanza)
            else:
                self.router.route(stanza, session)
        except StanzaError as error:
            self.router.bounce(stanza, error)

    def _check_conference_request(self, session: Session, stanza: Element) -> None:
        """A token names the rooms its holder may ask the focus for, as it does for joins."""
        if session.token is None or stanza.name != "iq":
            return
        request = next((c for c in stanza.elements()
                        if (c.uri, c.name) == (FOCUS_NS, "conference")), None)
        if request is None:
            return
        room = parse_jid(request.getAttribute("room", "") or self.domain)
        if not self.token_verifier.room_allowed(session.token, room.user or ""):
            raise ReservationError(403, "the token does not allow this room")

    def _prepare_room_presence(self, session: Session, room: JID, presence: Element) -> None:
        for child in list(presence.elements()):
            if child.name == IDENTITY:
                presence.children.remove(child)
        token = session.token
        if token is None:
            return
        joining = presence.getAttribute("type") is None
        if joining and not self.token_verifier.room_allowed(token, room.user or ""):
            raise StanzaError("not-allowed", text="the token does not allow this room")
        if token.user:
            identity = presence.addElement(IDENTITY)
            user = identity.addElement("user")
            for key in ("id", "name", "email", "avatar"):
                if key in token.user:
                    user.addElement(key, content=token.user[key])

    def _token(self, real_jid: JID) -> TokenIdentity | None:
        session = self.router.sessions.get(real_jid.userhost(), {}).get(real_jid.resource or "")
        return None if session is None else session.token

    def _token_affiliation(self, real_jid: JID, room: str) -> str | None:
        token = self._token(real_jid)
        return "owner" if token is not None and token.moderator else None

    def _token_room(self, real_jid: JID, room: str) -> RoomHint:
        """The meeting's settings, as the joining user's token says."""
        token = self._token(real_jid)
        if token is None:
            return RoomHint()
        return RoomHint(max_occupants=token.max_participants, lobby=token.lobby)
