"""One TOML file, read into typed sections; no file means the embedded defaults."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ConfigError(Exception):
    """A configuration problem, worded as one line naming file, key and problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


@dataclass(frozen=True)
class GeneralConfig:
    #: The XMPP domain; the usual Jitsi sub-domains hang off it.
    domain: str = "localhost"
    #: Where generated TLS material, the database and secrets live.
    state_dir: str = "var"
    #: Address every listener binds to.
    bind: str = "127.0.0.1"
    #: "text" or "json" (one JSON object per line).
    log_format: str = "text"


@dataclass(frozen=True)
class TLSConfig:
    #: PEM certificate chain; empty means generate one under state_dir/tls.
    certificate: str = ""
    #: PEM private key for ``certificate``.
    key: str = ""
    #: Extra names for the generated certificate (the domain's names are always in).
    extra_names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TokenConfig:
    #: Shared secret (HS256) or empty to turn token authentication off.
    app_secret: str = ""
    #: Expected ``iss``; also accepted as ``aud`` per Jitsi convention.
    app_id: str = ""
    #: Accepted audiences; empty accepts ``app_id`` and "*".
    audiences: list[str] = field(default_factory=list)
    #: "HS256" or "RS256"; only this one is accepted.
    algorithm: str = "HS256"
    #: Directory of PEM public keys named ``sha256(kid).pem`` for RS256.
    public_key_dir: str = ""
    #: Allow guests without a token when token authentication is on.
    allow_anonymous: bool = False


#: The transports XEP-0215 can offer for vw-turn, in the order offered.
TURN_TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True)
class TurnServiceConfig:
    #: REST shared secret; empty means one generated once under state_dir.
    secret: str = ""
    #: Host name handed to clients; empty means the domain.
    host: str = ""
    port: int = 3478
    tls_port: int = 5349
    #: Lifetime of the handed-out credentials in seconds.
    credential_ttl: int = 86400
    #: What is offered: "udp" (STUN and TURN over UDP on port), "tcp" (TURN over TCP on port),
    #: "tls" (TURNS over TLS on tls_port); e.g. ["tcp", "tls"] where UDP is blocked.
    transports: list[str] = field(default_factory=lambda: list(TURN_TRANSPORTS))

    def __post_init__(self) -> None:
        unknown = [t for t in self.transports if t not in TURN_TRANSPORTS]
        if unknown:
            raise ConfigError("xmpp.turn.transports", "",
                              f"must list only {', '.join(TURN_TRANSPORTS)}, not {unknown[0]!r}")


@dataclass(frozen=True)
class XMPPConfig:
    c2s_port: int = 5222
    http_port: int = 5280
    component_port: int = 5347
    #: Refuse authentication before STARTTLS on TCP streams.
    require_starttls: bool = True
    #: Domains on which SASL ANONYMOUS is offered (guests).
    anonymous_domains: list[str] = field(default_factory=lambda: ["localhost"])
    #: Largest stanza accepted, in bytes.
    max_stanza_bytes: int = 262144
    #: Deepest element nesting accepted inside a stanza.
    max_depth: int = 48
    #: Sustained bytes per second a connection may send; bursts up to 4x.
    rate_bytes_per_second: int = 262144
    #: Seconds of silence before a connection is closed.
    idle_timeout: int = 600
    #: Seconds between whitespace keepalives on idle TCP streams.
    keepalive_interval: int = 60
    #: Seconds a XEP-0198 session waits for resumption.
    resume_timeout: int = 300
    #: Treat WebSocket and BOSH as secure (TLS ends at the balancer in front), as Jitsi does.
    http_considered_secure: bool = True
    #: Seconds of silence before a BOSH session ends.
    bosh_inactivity: int = 60
    #: Shared secrets of XEP-0114 components, by component domain.
    components: dict[str, str] = field(default_factory=dict)
    #: SQLAlchemy URL; empty means SQLite under state_dir.
    database: str = ""
    #: Extra MUC domains (the conference and internal brewery ones are always served).
    muc_domains: list[str] = field(default_factory=list)
    #: Most messages of history a room keeps.
    muc_history: int = 20
    #: Bare JIDs owning every room, besides the focus account focus@auth.DOMAIN.
    muc_admins: list[str] = field(default_factory=list)
    #: Addresses (CIDR) that may ask GET /about/rooms/NAME (the balancers, for drain).
    room_queries_from: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    #: Proxies (CIDR) whose PROXY header (v1 or v2) names the client on the c2s and HTTP
    #: ports, such as vw-balancer or HAProxy; empty: none.
    trusted_proxies: list[str] = field(default_factory=list)
    token: TokenConfig = field(default_factory=TokenConfig)
    turn: TurnServiceConfig = field(default_factory=TurnServiceConfig)

    def __post_init__(self) -> None:
        _check_networks("xmpp.room_queries_from", self.room_queries_from)
        _check_networks("xmpp.trusted_proxies", self.trusted_proxies)


def _check_networks(key: str, cidrs: list[str]) -> None:
    """Raise a ConfigError naming ``key`` unless every entry is an address or network."""
    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise ConfigError(key, "", f"{cidr!r} is not an address or network") from None


@dataclass(frozen=True)
class BridgeConfig:
    #: The one UDP port every endpoint's media uses.
    udp_port: int = 10000
    #: /colibri-ws, /colibri/stats, /about/health and /metrics.
    http_port: int = 9090
    #: This bridge's id in the brewery and in colibri-ws URLs; empty: derived from the host name.
    bridge_id: str = ""
    #: Addresses (IP) offered as host candidates; empty: general.bind, if not a wildcard.
    local_addresses: list[str] = field(default_factory=list)
    #: A public address in front of a 1:1 NAT, offered as a server-reflexive candidate.
    advertised_address: str = ""
    #: The URL clients open for the bridge channel; empty: ws://BIND:HTTP_PORT.
    websocket_base_url: str = ""
    #: Region reported to the focus for region-based bridge selection.
    region: str = ""
    #: Seconds an allocated endpoint may take to connect (ICE and DTLS) before it is expired.
    endpoint_timeout: int = 60
    #: The XMPP server's component port the bridge connects to (XEP-0114).
    xmpp_host: str = "127.0.0.1"
    xmpp_port: int = 5347
    #: The bridge's component domain; empty: jvb.DOMAIN.
    component_domain: str = ""
    #: Its shared secret (as in xmpp.components); empty: generated once under state_dir.
    component_secret: str = ""
    #: The brewery room; empty: jvbbrewery@internal.auth.DOMAIN.
    brewery: str = ""


@dataclass(frozen=True)
class FocusConfig:
    #: /about/health, /about/stats, /metrics and conference-request/v1.
    http_port: int = 8888
    #: The XMPP server's client port the focus logs in on, as focus@auth.DOMAIN.
    xmpp_host: str = "127.0.0.1"
    xmpp_port: int = 5222
    #: focus@auth.DOMAIN's password; empty: generated once under state_dir (the all-in-one
    #: creates the account with it).
    password: str = ""
    #: Who is made a moderator: "all", "first" (the first to join, then whoever is oldest
    #: when the moderators leave) or "token" (the JWT's moderator claim only).
    moderators: str = "all"
    #: Rooms wait for an authenticated (non-anonymous) participant before guests can start.
    require_authenticated_host: bool = False
    #: "least-loaded", "single" or "region".
    bridge_selection: str = "least-loaded"
    #: The bridge's JID for the "single" strategy; empty: the first to join the brewery.
    single_bridge: str = ""
    #: Endpoints of one conference on one bridge before it spans another (0: no limit).
    max_participants_per_bridge: int = 0
    #: The region of participants that report none, for region-based selection.
    region: str = ""
    #: Seconds a bridge may go without a brewery presence before it counts as gone.
    bridge_timeout: int = 30


@dataclass(frozen=True)
class TurnConfig:
    #: STUN/TURN over UDP, TCP and TLS.
    udp_port: int = 3478
    tcp_port: int = 3478
    tls_port: int = 5349
    #: More TLS ports, such as 443 for clients behind firewalls that allow only HTTPS.
    extra_tls_ports: list[int] = field(default_factory=list)
    #: The address relays are opened on and announced with; empty: general.bind.
    relay_address: str = ""
    #: An IPv6 address for relays asked with REQUESTED-ADDRESS-FAMILY (RFC 6156); empty: none.
    relay_address_ipv6: str = ""
    #: The IPv4 address clients are told to reach relays at when the relay address sits
    #: behind a one-to-one NAT, as on most cloud VMs (coturn's external-ip); empty: the relay
    #: address itself. With it, relay_address may be the wildcard 0.0.0.0.
    external_address: str = ""
    #: RFC 6062 TCP allocations, whose relays connect to peers over TCP; false answers them
    #: 442, as coturn's no-tcp-relay (media needs UDP relays only).
    tcp_relays: bool = True
    #: The range relay ports are picked from, first and last.
    relay_ports: list[int] = field(default_factory=lambda: [49152, 65535])
    #: /about/health and /metrics (bound to loopback).
    http_port: int = 8478
    #: The realm of long-term credentials; empty: the domain.
    realm: str = ""
    #: Static long-term users, username -> password (the REST secret is xmpp.turn.secret).
    users: dict[str, str] = field(default_factory=dict)
    #: REST secrets still accepted while clients' credentials under them expire (rotation:
    #: the new one goes to xmpp.turn.secret, the old one here).
    previous_secrets: list[str] = field(default_factory=list)
    #: Peer ranges (CIDR) allowed although denied by default, such as "127.0.0.1/32" in tests.
    allowed_peers: list[str] = field(default_factory=list)
    #: Peer ranges denied besides the defaults (they win over allowed_peers).
    denied_peers: list[str] = field(default_factory=list)
    max_allocations_per_user: int = 10
    max_allocations: int = 1000
    #: Bind channel numbers up to 0x7FFF as RFC 5766 allowed (coturn's clients use them), not
    #: only RFC 8656's 0x4000-0x4FFF.
    rfc5766_channels: bool = False
    #: Over UDP, answers to requests without valid credentials are at most this many times
    #: their request's size (QUIC's limit before address validation). 3 lets a browser's
    #: 28-byte first Allocate get its challenge with a realm of up to 20 bytes; 1 (never
    #: larger) leaves browsers and coturn's clients unanswered over UDP, so they use TCP/TLS.
    amplification_limit: float = 3.0
    #: Requests without valid credentials per second from one IP address (bursts 4x).
    unauthenticated_rate: float = 20.0
    #: Bytes per second one allocation may relay, both ways together (0: no cap).
    max_bandwidth: int = 0
    #: Peer addresses one allocation may hold permissions for (508 beyond).
    max_permissions: int = 64
    #: A SOFTWARE attribute in every answer; empty (the default): none, revealing nothing.
    software: str = ""
    #: Seconds SIGTERM waits for allocations to end before closing them.
    drain_seconds: int = 10
    #: Log each allocation as it is made and as it ends (client, user, relay, how long and
    #: why), as coturn logs its sessions. Off by default: a log line costs about a fifth of
    #: the CPU of an allocation.
    log_allocations: bool = False
    #: Proxies (CIDR) whose PROXY header (v1 or v2) names the client on the TCP and TLS
    #: ports, such as vw-balancer or HAProxy; empty: none.
    trusted_proxies: list[str] = field(default_factory=list)
    #: Relay media over UDP (ChannelData, Send and Data indications) and answer the 401 that
    #: starts each allocation in compiled code where it is built (vw/turn/_channelrelay.c);
    #: false keeps every datagram in Python.
    compiled_relay: bool = True

    def __post_init__(self) -> None:
        _check_networks("turn.trusted_proxies", self.trusted_proxies)


@dataclass(frozen=True)
class PortalConfig:
    #: The portal's pages, /api/v1, /about/health and /metrics.
    http_port: int = 8000
    #: Processes serving http_port (the kernel spreads connections over them): one per core
    #: for a busy portal. The first starts the others, restarts them and runs the purges.
    workers: int = 1
    #: SQLAlchemy URL; empty means SQLite at state_dir/portal.sqlite.
    database: str = ""
    #: Who may create an account: "open", "invite" (with an invitation code) or "closed".
    signup: str = "invite"
    #: The role of accounts made by "open" sign-up (invitations carry their own).
    signup_role: str = "host"
    #: The portal as its users reach it, for links in mail and invitations.
    public_url: str = "http://localhost:8000"
    #: The meeting page: joining redirects to {meeting_base_url}/{room}?jwt=...
    meeting_base_url: str = "http://localhost:5280"
    #: The XMPP WebSocket handed to apps; empty: ws://localhost:{xmpp.http_port}/xmpp-websocket.
    websocket_url: str = ""
    #: Signs API access tokens; empty: generated once under state_dir (set it when several
    #: portals share one database).
    secret: str = ""
    #: Seconds a join token (the JWT for one room) is valid.
    join_token_ttl: int = 300
    #: Seconds an API access token is valid.
    access_token_ttl: int = 900
    #: Seconds an API refresh token is valid.
    refresh_token_ttl: int = 2592000
    #: Seconds a browser session lasts after sign-in.
    session_ttl: int = 43200
    #: Failed sign-ins allowed per account, and per address, in any hour.
    max_failures_per_hour: int = 100
    #: Password reset mails per account, and reset requests per address, in any hour.
    max_resets_per_hour: int = 5
    #: Proxies (the balancer) whose X-Forwarded-For names the client address.
    trusted_proxies: list[str] = field(default_factory=list)
    #: SMTP relay for password reset mail; empty: the links are logged instead.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    #: Sender of the portal's mail; empty: noreply@DOMAIN.
    mail_from: str = ""
    #: Where the admin page of services finds them (HTTP base addresses); empty: this
    #: configuration's ports on general.bind (loopback when it is a wildcard).
    xmpp_url: str = ""
    focus_url: str = ""
    bridge_urls: list[str] = field(default_factory=list)
    turn_url: str = ""


@dataclass(frozen=True)
class ShardConfig:
    #: A stable name: it is hashed with the room, so every balancer must use the same one.
    name: str = ""
    #: host:port of the shard's XMPP HTTP port (WebSocket, BOSH, meeting pages, health).
    address: str = ""
    #: Share of the rooms, relative to the other shards.
    weight: float = 1.0
    #: Clients of this region (see ``regions``) go to its shards first.
    region: str = ""
    #: Keep the rooms it has, send it no new ones.
    drain: bool = False


@dataclass(frozen=True)
class ForwardConfig:
    #: A name for the stats and the logs.
    name: str = ""
    #: The TCP port (on general.bind) whose connections are passed through unparsed.
    port: int = 0
    #: host:port of each target. A client goes to the one rendezvous hashing picks for its
    #: address (so it comes back to the same one), and to the next when that one fails.
    targets: list[str] = field(default_factory=list)
    #: PROXY protocol version sent to the targets: 0 (none), 1 or 2.
    proxy_protocol: int = 0


@dataclass(frozen=True)
class BalancerConfig:
    #: TLS (HTTP/1.1 and WebSocket, certificate of [tls]) and plain HTTP listeners.
    tls_port: int = 8443
    http_port: int = 8080
    #: Stats, /metrics, /about/health and the admin API, on loopback.
    admin_port: int = 8081
    #: The admin API takes "Authorization: Bearer TOKEN" or basic auth as admin:PASSWORD;
    #: with neither set it refuses every request.
    admin_token: str = ""
    admin_password: str = ""
    #: The shards; empty: one shard, "local", on this machine's xmpp.http_port.
    shards: list[ShardConfig] = field(default_factory=list)
    #: host:port of each bridge's HTTP port by bridge id, for /colibri-ws/{id}/...;
    #: empty: every id goes to this machine's bridge.http_port.
    bridges: dict[str, str] = field(default_factory=dict)
    #: host:port of the portal; empty: this machine's portal.http_port.
    portal: str = ""
    #: Paths (prefixes) served by the portal.
    portal_prefixes: list[str] = field(default_factory=lambda: [
        "/api/", "/signin", "/signup", "/signout", "/password/", "/profile", "/meetings",
        "/m/", "/admin/"])
    #: Client regions by CIDR; the longest prefix wins.
    regions: dict[str, str] = field(default_factory=dict)
    #: A MaxMind database (needs the maxminddb package) and its country or continent codes
    #: mapped to regions, for addresses no CIDR matches.
    geoip_database: str = ""
    geoip_regions: dict[str, str] = field(default_factory=dict)
    #: Peers (CIDR) whose PROXY header and X-Forwarded-For are believed, such as HAProxy.
    trusted_proxies: list[str] = field(default_factory=list)
    #: PROXY protocol version sent to backends: 0 (none), 1 or 2.
    backend_proxy_protocol: int = 0
    #: Response header naming the shard that answered ("" for none).
    shard_header: str = "X-VW-Shard"
    #: More certificates chosen by SNI: server name -> [certificate PEM, key PEM].
    sni_certificates: dict[str, list[str]] = field(default_factory=dict)
    max_connections: int = 10000
    #: New connections per second from one address (bursts up to connection_burst).
    connection_rate: float = 50.0
    connection_burst: int = 200
    #: Seconds to receive a request head (slowloris), and between requests on a connection.
    header_timeout: float = 10.0
    #: Seconds of silence before a connection is closed; longer for WebSocket tunnels.
    idle_timeout: float = 120.0
    tunnel_timeout: float = 3600.0
    #: Seconds to connect to a backend.
    connect_timeout: float = 5.0
    #: Times a request goes to the room's next shard when the connection to its shard
    #: fails (refused or timed out, nothing sent yet); then 503.
    connect_retries: int = 2
    #: Largest request or response head, and most header fields.
    max_header_bytes: int = 16384
    max_headers: int = 100
    #: Health checks (GET /about/health): every interval seconds, up after rise successes,
    #: down after fall failures (failed proxied connections count as failures).
    health_interval: float = 2.0
    health_timeout: float = 2.0
    health_rise: int = 2
    health_fall: int = 2
    #: Seconds a draining shard remembers a room after its last request.
    room_memory: float = 86400.0
    #: Plain TCP listeners passed through to their targets (XMPP c2s, TURN over TCP).
    forwards: list[ForwardConfig] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.backend_proxy_protocol not in (0, 1, 2):
            raise ConfigError("balancer.backend_proxy_protocol", "", "must be 0, 1 or 2")
        if self.connect_retries < 0:
            raise ConfigError("balancer.connect_retries", "", "must not be negative")
        names = [shard.name for shard in self.shards]
        if len(set(names)) != len(names) or "" in names:
            raise ConfigError("balancer.shards", "", "every shard needs a distinct name")
        for shard in self.shards:
            if shard.weight <= 0:
                raise ConfigError(f"balancer.shards.{shard.name}.weight", "",
                                  "must be positive")
        forwards = [forward.name for forward in self.forwards]
        if len(set(forwards)) != len(forwards) or "" in forwards:
            raise ConfigError("balancer.forwards", "", "every forward needs a distinct name")
        for forward in self.forwards:
            key = f"balancer.forwards.{forward.name}"
            if not 0 < forward.port < 65536:
                raise ConfigError(f"{key}.port", "", "must be a port number (1-65535)")
            if not forward.targets:
                raise ConfigError(f"{key}.targets", "", "needs at least one host:port")
            if forward.proxy_protocol not in (0, 1, 2):
                raise ConfigError(f"{key}.proxy_protocol", "", "must be 0, 1 or 2")
        for key, address in [*((f"shards.{s.name}", s.address) for s in self.shards),
                             *((f"bridges.{i}", a) for i, a in self.bridges.items()),
                             *([("portal", self.portal)] if self.portal else []),
                             *((f"forwards.{f.name}.targets", target) for f in self.forwards
                               for target in f.targets)]:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"balancer.{key}", "", f"{address!r} is not host:port")


@dataclass(frozen=True)
class Config:
    general: GeneralConfig = field(default_factory=GeneralConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    xmpp: XMPPConfig = field(default_factory=XMPPConfig)
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    focus: FocusConfig = field(default_factory=FocusConfig)
    turn: TurnConfig = field(default_factory=TurnConfig)
    portal: PortalConfig = field(default_factory=PortalConfig)
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    #: The file this came from, or "<defaults>".
    source: str = "<defaults>"

    @property
    def state_dir(self) -> Path:
        return Path(self.general.state_dir)

    @property
    def conference_domain(self) -> str:
        return f"conference.{self.general.domain}"

    @property
    def lobby_domain(self) -> str:
        return f"lobby.{self.general.domain}"

    @property
    def focus_domain(self) -> str:
        return f"focus.{self.general.domain}"

    @property
    def auth_domain(self) -> str:
        return f"auth.{self.general.domain}"

    @property
    def internal_muc_domain(self) -> str:
        return f"internal.auth.{self.general.domain}"

    @property
    def bridge_domain(self) -> str:
        return self.bridge.component_domain or f"jvb.{self.general.domain}"

    @property
    def brewery(self) -> str:
        return self.bridge.brewery or f"jvbbrewery@{self.internal_muc_domain}"


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", float: "a finite number"}


def _check(value: Any, kind: Any, source: str, key: str) -> Any:
    """Return ``value`` converted to ``kind`` or raise a ConfigError naming ``key``."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(source, key, "must be a table")
        return _build(kind, value, source, key + ".")
    origin = typing.get_origin(kind)
    if origin is list:
        (item,) = typing.get_args(kind)
        if not isinstance(value, list):
            raise ConfigError(source, key, "must be an array")
        return [_check(v, item, source, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(kind)
        if not isinstance(value, dict):
            raise ConfigError(source, key, "must be a table")
        return {k: _check(v, item, source, f"{key}.{k}") for k, v in value.items()}
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:  # TOML writes whole numbers without a point: 2 means 2.0
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and math.isfinite(value))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(source, key, f"must be {_TYPE_NAMES.get(kind, kind)}, not {value!r}")
    return value


def _build(cls: type, table: dict[str, Any], source: str, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(source, prefix + key, "unknown key")
        values[key] = _check(value, hints[key], source, prefix + key)
    return cls(**values)


def load(path: str | None) -> Config:
    """Read ``path`` (or nothing, for the embedded defaults) into a Config."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(path, "", "no such file") from None
    except OSError as e:
        raise ConfigError(path, "", e.strerror or str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "", f"invalid TOML: {e}") from None
    config = _build(Config, table, path)
    _validate(config, path)
    return dataclasses.replace(config, source=path)


def _validate(config: Config, source: str) -> None:
    if config.general.log_format not in ("text", "json"):
        raise ConfigError(source, "general.log_format", 'must be "text" or "json"')
    if config.xmpp.token.algorithm not in ("HS256", "RS256"):
        raise ConfigError(source, "xmpp.token.algorithm", 'must be "HS256" or "RS256"')
    ports = [("xmpp", key) for key in ("c2s_port", "http_port", "component_port")]
    ports += [("bridge", key) for key in ("udp_port", "http_port", "xmpp_port")]
    ports += [("turn", key) for key in ("udp_port", "tcp_port", "tls_port", "http_port")]
    for section, key in ports:
        if not 0 <= getattr(getattr(config, section), key) < 65536:
            raise ConfigError(source, f"{section}.{key}", "must be a port number (0-65535)")
    relay_ports = config.turn.relay_ports
    if len(relay_ports) != 2 or not 1024 <= relay_ports[0] <= relay_ports[1] < 65536:
        raise ConfigError(source, "turn.relay_ports", "must be [first, last] within 1024-65535")
    for key, version in (("relay_address", 0), ("relay_address_ipv6", 6),
                         ("external_address", 4)):
        host = getattr(config.turn, key)
        if not host:
            continue
        address = ip_address_of(source, f"turn.{key}", host)
        if version and address.version != version:
            raise ConfigError(source, f"turn.{key}", f"{host!r} is not an IPv{version} address")


def ip_address_of(source: str, key: str, host: str) -> IPAddress:
    """``host``, the value of ``key`` in ``source``, as an IP address; ConfigError if it is not
    one."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(source, key, f"{host!r} is not an IP address") from None

