"""Bridge selection for the focus: the brewery's bridges, their health, where endpoints go.

Sans-IO, in the manner of Jicofo's BridgeSelector. The focus feeds in brewery presences
(:meth:`BridgeRegistry.presence_received`), health-check results and the clock; it asks
:meth:`BridgeRegistry.select` for a bridge and records what it allocated with
:meth:`BridgeRegistry.place`. Whenever a bridge is lost (unavailable presence, no presence for
``presence_timeout`` seconds, failed health check) the registry hands back the endpoints that
were on it, by conference, for the focus to re-invite elsewhere.

**Stats parsing rule.** Only the stats below are read; stats with other names, or with no name,
are ignored, and when a name repeats the last one wins. A known stat with no ``value``, a number
that is not finite and >= 0, or a flag other than true/false/1/0 raises ValueError naming the
stat, and the whole presence is rejected: the registry keeps what it knew, and a bridge that
never sends good stats never becomes selectable (or expires). A known stat that is absent takes
its default (stress 0, not draining, no region, counts 0).

**Selection rules**, common to every strategy:

- Only *operational* bridges are considered: presence seen less than ``presence_timeout``
  seconds ago, healthy, and at least ``failure_reset`` seconds past the last failed check.
- A bridge draining (``graceful_shutdown``, ``drain`` or ``shutting_down``) is never given a
  conference it is not already hosting; one it hosts may keep growing there, as vw's bridge
  refuses only new conferences while draining.
- A bridge holding ``max_participants_per_bridge`` endpoints of the conference is not chosen for
  it again; the conference then spans bridges.
- Load is the reported ``stress_level`` plus ``average_participant_stress`` for every endpoint the
  focus placed there since that bridge's last stats, so a burst of joins is spread out.
  A bridge is *overloaded* when that load is >= ``stress_threshold``.

Strategies (``SelectionConfig.strategy``):

- ``single``: the configured ``single_bridge`` (nothing if it cannot be used), else the
  conference's first bridge, else the first bridge to have joined the brewery.
- ``least-loaded``: the conference's least-loaded bridge, else the least-loaded bridge.
- ``region``: with R the participant's region (or ``local_region``), the first non-empty of:
  the conference's bridges in R not overloaded; bridges in R not overloaded; the conference's
  bridges in R; bridges in R; the conference's bridges not overloaded; bridges in the regions of
  the conference's bridges not overloaded; any bridge. The least loaded of it wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from twisted.words.xish.domish import Element

COLIBRI_NS = "http://jitsi.org/protocol/colibri"
MUC_USER_NS = "http://jabber.org/protocol/muc#user"

#: Stats that put a bridge in drain (jvb: graceful_shutdown; newer ones also drain, shutting_down).
DRAIN_STATS = ("graceful_shutdown", "drain", "shutting_down")
_KNOWN_STATS = frozenset(
    ("stress_level", "region", "relay_id", "version", "conferences", "participants")
    + DRAIN_STATS
)


def _number(values: dict[str, str], name: str) -> float:
    if name not in values:
        return 0.0
    try:
        number = float(values[name])
    except ValueError:
        raise ValueError(f"stat {name!r}: {values[name]!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"stat {name!r}: {values[name]!r} is not a finite number >= 0")
    return number


def _count(values: dict[str, str], name: str) -> int:
    if name not in values:
        return 0
    try:
        count = int(values[name])
    except ValueError:
        raise ValueError(f"stat {name!r}: {values[name]!r} is not an integer") from None
    if count < 0:
        raise ValueError(f"stat {name!r}: {values[name]!r} is negative")
    return count


def _flag(values: dict[str, str], name: str) -> bool:
    value = values.get(name, "false").strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise ValueError(f"stat {name!r}: {values[name]!r} is not true or false")


def _text(values: dict[str, str], name: str) -> str | None:
    return values.get(name) or None


@dataclass(frozen=True)
class BridgeStats:
    """What a bridge reports in its brewery presence (see the module's parsing rule)."""

    stress_level: float = 0.0
    #: Any of DRAIN_STATS is true: no new conferences.
    draining: bool = False
    region: str | None = None
    relay_id: str | None = None
    version: str | None = None
    conferences: int = 0
    participants: int = 0

    @classmethod
    def fromElement(cls, element: Element) -> BridgeStats:
        """Parse a colibri ``<stats>`` element, or the presence carrying one."""
        if element.uri == COLIBRI_NS and element.name == "stats":
            stats = element
        else:
            found = next(element.elements(COLIBRI_NS, "stats"), None)
            if found is None:
                raise ValueError(f"no <stats xmlns={COLIBRI_NS!r}> in <{element.name}>")
            stats = found
        values: dict[str, str] = {}
        for stat in stats.elements(COLIBRI_NS, "stat"):
            name = stat.getAttribute("name")
            if name not in _KNOWN_STATS:
                continue
            value = stat.getAttribute("value")
            if value is None:
                raise ValueError(f"stat {name!r} has no value")
            values[name] = value
        drain_flags = [_flag(values, name) for name in DRAIN_STATS]
        return cls(
            stress_level=_number(values, "stress_level"),
            draining=any(drain_flags),
            region=_text(values, "region"),
            relay_id=_text(values, "relay_id"),
            version=_text(values, "version"),
            conferences=_count(values, "conferences"),
            participants=_count(values, "participants"),
        )


@dataclass(frozen=True)
class BreweryPresence:
    """A brewery occupant's presence: its nick, real JID and stats (None when it left)."""

    nick: str
    jid: str | None
    stats: Element | None

    @classmethod
    def fromElement(cls, presence: Element) -> BreweryPresence:
        """Split a MUC presence from ``jvbbrewery@…/NICK``; the JID is the muc#user item's."""
        sender = presence.getAttribute("from") or ""
        nick = sender.partition("/")[2]
        if not nick:
            raise ValueError(f"presence from {sender!r} names no occupant")
        item = next((child for x in presence.elements(MUC_USER_NS, "x")
                     for child in x.elements(MUC_USER_NS, "item")), None)
        jid = item.getAttribute("jid") if item is not None else None
        kind = presence.getAttribute("type")
        if kind == "unavailable":
            return cls(nick, jid or None, None)
        if kind is not None:
            raise ValueError(f"presence of type {kind!r} from {sender!r}")
        if not jid:
            raise ValueError(f"presence from {sender!r} has no muc#user item jid")
        stats = next(presence.elements(COLIBRI_NS, "stats"), None)
        if stats is None:
            raise ValueError(f"presence from {sender!r} carries no colibri stats")
        return cls(nick, jid, stats)


@dataclass
class BridgeState:
    """One bridge as the focus knows it."""

    #: Where the focus sends Colibri2 IQs (the occupant's real JID).
    jid: str
    #: Its nick in the brewery.
    nick: str
    stats: BridgeStats
    first_seen: float
    last_seen: float
    #: False from a failed health check until a passing one.
    healthy: bool = True
    failed_at: float | None = None
    #: (conference, endpoint) the focus placed here.
    endpoints: set[tuple[str, str]] = field(default_factory=set)
    #: Of those, the ones placed since the bridge's last stats.
    recent: set[tuple[str, str]] = field(default_factory=set)

    @property
    def region(self) -> str | None:
        return self.stats.region

    @property
    def stress(self) -> float:
        return self.stats.stress_level

    @property
    def draining(self) -> bool:
        return self.stats.draining

    @property
    def placed(self) -> int:
        """Endpoints on this bridge as counted by the focus itself."""
        return len(self.endpoints)

    def corrected_stress(self, per_participant: float) -> float:
        """Reported stress plus ``per_participant`` for each endpoint placed since."""
        return self.stress + per_participant * len(self.recent)


@dataclass(frozen=True)
class SelectionConfig:
    """Knobs of bridge selection (Jicofo's names in brackets where it has one)."""

    #: "single", "least-loaded" or "region" [selection-strategy].
    strategy: str = "least-loaded"
    #: Seconds without a brewery presence after which a bridge counts as gone.
    presence_timeout: float = 30.0
    #: Most endpoints of one conference on one bridge; 0 = no limit [max-bridge-participants].
    max_participants_per_bridge: int = 0
    #: Stress assumed per endpoint placed since the last stats [average-participant-stress].
    average_participant_stress: float = 0.01
    #: Load at or above which a bridge is overloaded [stress-threshold].
    stress_threshold: float = 0.8
    #: Seconds after a failed health check before the bridge may be chosen again
    #: [failure-reset-threshold].
    failure_reset: float = 60.0
    #: For "single": the bridge JID to use; empty = the first bridge to join.
    single_bridge: str = ""
    #: For "region": the region assumed for participants that report none; empty = none.
    local_region: str = ""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown bridge selection strategy {self.strategy!r}; "
                             f"expected one of {', '.join(STRATEGIES)}")
        for name in ("presence_timeout", "average_participant_stress", "stress_threshold",
                     "failure_reset"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.presence_timeout == 0:
            raise ValueError("presence_timeout must be > 0")
        if self.max_participants_per_bridge < 0:
            raise ValueError("max_participants_per_bridge must be >= 0 (0 = no limit), "
                             f"not {self.max_participants_per_bridge!r}")


@dataclass(frozen=True)
class _Candidates:
    """What a strategy chooses from."""

    #: Bridges that may take the endpoint, in the order they joined.
    bridges: list[BridgeState]
    #: Those already hosting the conference.
    current: list[BridgeState]
    #: The participant's region (or the local one).
    region: str | None
    #: Regions of every bridge hosting the conference.
    conference_regions: frozenset[str]
    config: SelectionConfig

    def load(self, bridge: BridgeState) -> float:
        return bridge.corrected_stress(self.config.average_participant_stress)

    def overloaded(self, bridge: BridgeState) -> bool:
        return self.load(bridge) >= self.config.stress_threshold

    def least_loaded(self, bridges: Iterable[BridgeState]) -> BridgeState | None:
        return min(bridges, key=lambda b: (self.load(b), b.placed, b.first_seen, b.jid),
                   default=None)


def _single(c: _Candidates) -> BridgeState | None:
    if c.config.single_bridge:
        return next((b for b in c.bridges if b.jid == c.config.single_bridge), None)
    return next(iter(c.current or c.bridges), None)


def _least_loaded(c: _Candidates) -> BridgeState | None:
    return c.least_loaded(c.current) or c.least_loaded(c.bridges)


def _region(c: _Candidates) -> BridgeState | None:
    current = {b.jid for b in c.current}
    tiers: list[Callable[[BridgeState], bool]] = []
    if c.region is not None:
        local = c.region
        tiers += [
            lambda b: b.region == local and b.jid in current and not c.overloaded(b),
            lambda b: b.region == local and not c.overloaded(b),
            lambda b: b.region == local and b.jid in current,
            lambda b: b.region == local,
        ]
    tiers += [
        lambda b: b.jid in current and not c.overloaded(b),
        lambda b: b.region in c.conference_regions and not c.overloaded(b),
        lambda b: True,
    ]
    for tier in tiers:
        choice = c.least_loaded(b for b in c.bridges if tier(b))
        if choice is not None:
            return choice
    return None


STRATEGIES: dict[str, Callable[[_Candidates], BridgeState | None]] = {
    "single": _single,
    "least-loaded": _least_loaded,
    "region": _region,
}


class BridgeRegistry:
    """The brewery's bridges and the focus's placements of endpoints on them."""

    def __init__(self, config: SelectionConfig | None = None) -> None:
        self.config = config or SelectionConfig()
        self._strategy = STRATEGIES[self.config.strategy]
        self._bridges: dict[str, BridgeState] = {}
        #: Brewery nick -> bridge JID.
        self._nicks: dict[str, str] = {}
        #: Conference -> endpoint -> bridge JID.
        self._placements: dict[str, dict[str, str]] = {}

    # -- bridges ---------------------------------------------------------------------------

    @property
    def bridges(self) -> list[BridgeState]:
        """Every known bridge, operational or not, in the order they joined."""
        return sorted(self._bridges.values(), key=lambda b: (b.first_seen, b.jid))

    def get(self, jid: str) -> BridgeState | None:
        return self._bridges.get(jid)

    def presence_received(self, nick: str, jid: str | None, stats: Element | None,
                          now: float) -> dict[str, list[str]]:
        """A brewery presence: ``stats`` None means the occupant ``nick`` left (``jid`` unused).

        Returns the endpoints to move, by conference: those of a bridge that left, or of the
        bridge that held ``nick`` before another JID took it. Raises ValueError on bad stats or
        a missing JID, leaving the registry unchanged.
        """
        if stats is None:
            gone = self._nicks.get(nick)
            return self._forget(gone) if gone is not None else {}
        if not jid:
            raise ValueError(f"presence of brewery occupant {nick!r} has no real JID")
        parsed = BridgeStats.fromElement(stats)
        previous = self._nicks.get(nick)
        moved = self._forget(previous) if previous is not None and previous != jid else {}
        bridge = self._bridges.get(jid)
        if bridge is None:
            self._bridges[jid] = BridgeState(jid, nick, parsed, first_seen=now, last_seen=now)
        else:
            if bridge.nick != nick and self._nicks.get(bridge.nick) == jid:
                del self._nicks[bridge.nick]
            bridge.nick = nick
            bridge.stats = parsed
            bridge.last_seen = now
            bridge.recent.clear()
        self._nicks[nick] = jid
        return moved

    def health_failed(self, jid: str, now: float) -> dict[str, list[str]]:
        """A failed health check: not chosen again for ``failure_reset`` s; its endpoints move.

        An unknown JID (the bridge already left) is ignored.
        """
        bridge = self._bridges.get(jid)
        if bridge is None:
            return {}
        bridge.healthy = False
        bridge.failed_at = now
        return self.bridge_lost(jid)

    def health_ok(self, jid: str) -> None:
        """A passing health check (selectable again once ``failure_reset`` has passed)."""
        bridge = self._bridges.get(jid)
        if bridge is not None:
            bridge.healthy = True

    def expire(self, now: float) -> dict[str, dict[str, list[str]]]:
        """Forget bridges silent for ``presence_timeout`` s: bridge JID -> endpoints to move."""
        timeout = self.config.presence_timeout
        stale = [jid for jid, b in self._bridges.items() if now - b.last_seen >= timeout]
        return {jid: self._forget(jid) for jid in stale}

    def is_operational(self, bridge: BridgeState, now: float) -> bool:
        """Fresh presence, healthy, and past ``failure_reset`` since the last failed check."""
        config = self.config
        return (now - bridge.last_seen < config.presence_timeout and bridge.healthy
                and (bridge.failed_at is None or now - bridge.failed_at >= config.failure_reset))

    def operational(self, now: float) -> list[BridgeState]:
        """Bridges that may be used (draining ones included), in the order they joined."""
        return [b for b in self.bridges if self.is_operational(b, now)]

    def _forget(self, jid: str) -> dict[str, list[str]]:
        moved = self.bridge_lost(jid)
        bridge = self._bridges.pop(jid)
        if self._nicks.get(bridge.nick) == jid:
            del self._nicks[bridge.nick]
        return moved

    # -- selection -------------------------------------------------------------------------

    def select(self, conference_id: str, participant_region: str | None,
               now: float) -> BridgeState | None:
        """The bridge for a new endpoint of ``conference_id``, or None if none may take it."""
        cap = self.config.max_participants_per_bridge
        hosting = self.conference_bridges(conference_id)
        eligible = [
            b for b in self.operational(now)
            if (b.jid in hosting and (cap == 0 or hosting[b.jid] < cap))
            or (b.jid not in hosting and not b.draining)
        ]
        regions = frozenset(self._bridges[jid].region or "" for jid in hosting) - {""}
        candidates = _Candidates(
            bridges=eligible,
            current=[b for b in eligible if b.jid in hosting],
            region=participant_region or self.config.local_region or None,
            conference_regions=regions,
            config=self.config,
        )
        return self._strategy(candidates)

    # -- placements ------------------------------------------------------------------------

    def place(self, conference_id: str, endpoint_id: str, jid: str) -> None:
        """Record that the endpoint was allocated on bridge ``jid`` (moving it if elsewhere)."""
        bridge = self._bridges.get(jid)
        if bridge is None:
            raise ValueError(f"unknown bridge {jid!r}")
        if not bridge.healthy:
            raise ValueError(f"bridge {jid!r} failed its health check")
        if self.bridge_of(conference_id, endpoint_id) == jid:
            return
        self.remove(conference_id, endpoint_id)
        self._placements.setdefault(conference_id, {})[endpoint_id] = jid
        bridge.endpoints.add((conference_id, endpoint_id))
        bridge.recent.add((conference_id, endpoint_id))

    def remove(self, conference_id: str, endpoint_id: str) -> str | None:
        """Forget an endpoint's placement; returns the bridge JID it was on, if any."""
        endpoints = self._placements.get(conference_id)
        if endpoints is None or endpoint_id not in endpoints:
            return None
        jid = endpoints.pop(endpoint_id)
        if not endpoints:
            del self._placements[conference_id]
        bridge = self._bridges[jid]
        bridge.endpoints.discard((conference_id, endpoint_id))
        bridge.recent.discard((conference_id, endpoint_id))
        return jid

    def bridge_lost(self, jid: str) -> dict[str, list[str]]:
        """Drop every placement on ``jid``; returns them (conference -> endpoints) to move.

        This does not stop the bridge being chosen: see :meth:`health_failed` for that.
        """
        bridge = self._bridges.get(jid)
        if bridge is None:
            return {}
        moved: dict[str, list[str]] = {}
        for conference_id, endpoint_id in sorted(bridge.endpoints):
            moved.setdefault(conference_id, []).append(endpoint_id)
            self.remove(conference_id, endpoint_id)
        return moved

    def bridge_of(self, conference_id: str, endpoint_id: str) -> str | None:
        return self._placements.get(conference_id, {}).get(endpoint_id)

    def conference_bridges(self, conference_id: str) -> dict[str, int]:
        """Bridge JID -> how many of the conference's endpoints are on it."""
        counts: dict[str, int] = {}
        for jid in self._placements.get(conference_id, {}).values():
            counts[jid] = counts.get(jid, 0) + 1
        return counts

    def counts(self) -> dict[str, int]:
        """Bridge JID -> endpoints the focus placed on it, for every known bridge."""
        return {b.jid: b.placed for b in self.bridges}
