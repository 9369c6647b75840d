"""Per-receiver video allocation: which sources, at which simulcast layer (sans-IO, pure).

A simplified Jitsi Videobridge BandwidthAllocator:

1. **Order** the candidate sources: on-stage endpoints first (in the receiver's order), then
   selected endpoints (in its order), then by dominant-speaker recency (``is_speaker_rank``,
   0 = current speaker), then the rest in the given order.
2. **Constraints.** A source's endpoint has a max height (``max_height_by_endpoint``, else
   ``default_max_height``; negative = unlimited, 0 = off). A layer is allowed if it is active and
   its height <= max height. If max height > 0 but *no* layer is that small (a single-layer 720p
   camera shown as a thumbnail), the lowest active layer is allowed, as in JVB, rather than
   showing nothing. Sources with ``video_type == "none"`` or no layers get nothing.
3. **Last-N.** Walking the ordered sources, only the first ``last_n`` endpoints that have an
   allowed layer get video (negative = all, 0 = none); endpoints whose video is off don't use up
   a slot.
4. **Bandwidth.** Greedily, in order, each source gets its lowest allowed layer if it fits in what
   is left of ``estimate_bps``. Then the *priority* sources (the on-stage ones, or, with nothing
   on stage, the first forwarded source) each jump to the highest allowed layer that fits. Then
   all forwarded sources are upgraded one allowed layer at a time, round-robin in order, while
   the upgrade fits.
5. **Oversending rule.** If even the lowest allowed layer of the *first* eligible source exceeds
   the whole estimate, that one layer is forwarded anyway (so the speaker or on-stage video never
   freezes entirely) and nothing else is; the total then equals that layer's bitrate. Otherwise
   the total never exceeds the estimate. ``oversend_first=False`` disables this.

Layer bitrates come from :class:`LayerInfo`; when unknown they are assumed from the height
(180p 150 kbps, 360p 500 kbps, 720p 2.5 Mbps); unknown heights are 180p doubling per layer.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vw.bridge.channel import ReceiverVideoConstraints

#: The default max height until a receiver says otherwise (JVB's thumbnail-max-height-px).
DEFAULT_MAX_HEIGHT = 180
#: The height of layer 0 when a source doesn't say; each further layer doubles it.
BASE_HEIGHT = 180
#: Not forwarded.
NO_LAYER = -1


@dataclass(frozen=True)
class LayerInfo:
    """One simulcast layer of a source (lowest first); None = unknown."""

    height: int | None = None
    bitrate_bps: float | None = None
    #: False when the sender currently doesn't send this layer.
    active: bool = True


@dataclass(frozen=True)
class CandidateSource:
    """A remote video source that a receiver could be sent."""

    endpoint_id: str
    key: Hashable
    layers: Sequence[LayerInfo]
    #: 0 = dominant speaker, 1 = previous speaker, …; None = has not spoken.
    is_speaker_rank: int | None = None
    video_type: str = "camera"


@dataclass(frozen=True)
class ReceiverState:
    """What one receiver asked for (ReceiverVideoConstraints)."""

    last_n: int = -1
    selected_endpoints: tuple[str, ...] = ()
    on_stage_endpoints: tuple[str, ...] = ()
    default_max_height: int = DEFAULT_MAX_HEIGHT
    max_height_by_endpoint: Mapping[str, int] = field(default_factory=dict)

    def max_height(self, endpoint_id: str) -> int:
        """The max height for an endpoint's video (negative = unlimited, 0 = off)."""
        return self.max_height_by_endpoint.get(endpoint_id, self.default_max_height)


def receiver_state(constraints: ReceiverVideoConstraints) -> ReceiverState:
    """The ReceiverState for a client's ReceiverVideoConstraints message."""
    default = constraints.default_constraints
    return ReceiverState(
        last_n=constraints.last_n,
        selected_endpoints=tuple(constraints.selected_endpoints),
        on_stage_endpoints=tuple(constraints.on_stage_endpoints),
        default_max_height=default.max_height if default is not None else DEFAULT_MAX_HEIGHT,
        max_height_by_endpoint={endpoint: c.max_height
                                for endpoint, c in constraints.constraints.items()})


def default_bitrate(height: int) -> float:
    """The assumed bitrate of a layer of this height, in bits per second."""
    if height <= 180:
        return 150_000.0
    if height <= 360:
        return 500_000.0
    if height <= 720:
        return 2_500_000.0
    return 2_500_000.0 * (height / 720) ** 2


def layer_height(source: CandidateSource, index: int) -> int:
    """A layer's height, assumed (180p doubling) when unknown."""
    height = source.layers[index].height
    return height if height is not None and height > 0 else BASE_HEIGHT << index


def layer_bitrate(source: CandidateSource, index: int) -> float:
    """A layer's bitrate, assumed from its height when unknown."""
    bitrate = source.layers[index].bitrate_bps
    if bitrate is None or not math.isfinite(bitrate) or bitrate < 0:
        return default_bitrate(layer_height(source, index))
    return float(bitrate)


def allowed_layers(source: CandidateSource, max_height: int) -> list[int]:
    """The layer indices a max height allows, lowest first (see the module docstring)."""
    if max_height == 0 or source.video_type == "none":
        return []
    active = [i for i, layer in enumerate(source.layers) if layer.active]
    if max_height < 0:
        return active
    fitting = [i for i in active if layer_height(source, i) <= max_height]
    return fitting or active[:1]


def prioritize(receiver: ReceiverState,
               sources: Iterable[CandidateSource]) -> list[CandidateSource]:
    """Sources in allocation order: on-stage, selected, by speech recency, the rest."""
    on_stage = {e: i for i, e in reversed(list(enumerate(receiver.on_stage_endpoints)))}
    selected = {e: i for i, e in reversed(list(enumerate(receiver.selected_endpoints)))}

    def rank(source: CandidateSource) -> tuple[int, int]:
        endpoint = source.endpoint_id
        if endpoint in on_stage:
            return 0, on_stage[endpoint]
        if endpoint in selected:
            return 1, selected[endpoint]
        if source.is_speaker_rank is not None:
            return 2, source.is_speaker_rank
        return 3, 0

    return sorted(sources, key=rank)


def allocate(receiver: ReceiverState, sources: list[CandidateSource], estimate_bps: float, *,
             oversend_first: bool = True) -> dict[Hashable, int]:
    """The layer index to forward for each source's key (NO_LAYER = -1: not forwarded)."""
    result: dict[Hashable, int] = {source.key: NO_LAYER for source in sources}
    budget = estimate_bps if estimate_bps > 0 else 0.0  # NaN and negatives: nothing
    # (source, allowed layer indices, bitrates by layer index), in order, within last-N.
    plans: list[tuple[CandidateSource, list[int], list[float]]] = []
    endpoints: set[str] = set()
    for source in prioritize(receiver, sources):
        allowed = allowed_layers(source, receiver.max_height(source.endpoint_id))
        if not allowed:
            continue
        if source.endpoint_id not in endpoints:
            if 0 <= receiver.last_n <= len(endpoints):
                continue
            endpoints.add(source.endpoint_id)
        bitrates = [layer_bitrate(source, i) for i in range(len(source.layers))]
        plans.append((source, allowed, bitrates))
    if not plans:
        return result

    chosen: list[int] = [NO_LAYER] * len(plans)  # position in `allowed`, -1 = nothing
    remaining = budget
    for n, (_, allowed, bitrates) in enumerate(plans):
        cost = bitrates[allowed[0]]
        if cost <= remaining or (n == 0 and oversend_first):
            chosen[n] = 0
            remaining -= cost

    def upgrade(n: int, highest: bool) -> bool:
        """Move plan n up to the highest (or the next) allowed layer that fits."""
        nonlocal remaining
        _, allowed, bitrates = plans[n]
        current = chosen[n]
        if current < 0:
            return False
        now = bitrates[allowed[current]]
        steps = range(len(allowed) - 1, current, -1) if highest else range(current + 1,
                                                                            len(allowed))
        for step in steps:
            extra = bitrates[allowed[step]] - now
            if extra <= remaining:
                chosen[n] = step
                remaining -= extra
                return True
        return False

    on_stage = set(receiver.on_stage_endpoints)
    priority = [n for n, plan in enumerate(plans) if plan[0].endpoint_id in on_stage] or [0]
    for n in priority:
        upgrade(n, highest=True)
    changed = True
    while changed:
        changed = False
        for n in range(len(plans)):
            changed = upgrade(n, highest=False) or changed

    for n, (source, allowed, _) in enumerate(plans):
        if chosen[n] >= 0:
            result[source.key] = allowed[chosen[n]]
    return result


def allocated_bitrate(sources: Iterable[CandidateSource],
                      allocation: Mapping[Hashable, int]) -> float:
    """The total bitrate of an allocation, in bits per second."""
    return sum(layer_bitrate(s, allocation[s.key]) for s in sources
               if allocation.get(s.key, NO_LAYER) >= 0)


def forwarded_sources(receiver: ReceiverState, sources: Iterable[CandidateSource],
                      allocation: Mapping[Hashable, int]) -> list[Hashable]:
    """Keys of the forwarded sources, in priority order (for ForwardedSources)."""
    return [s.key for s in prioritize(receiver, sources) if allocation.get(s.key, NO_LAYER) >= 0]


def forwarded_endpoints(receiver: ReceiverState, sources: Iterable[CandidateSource],
                        allocation: Mapping[Hashable, int]) -> list[str]:
    """Endpoints with at least one forwarded source, in priority order
    (for LastNEndpointsChangeEvent)."""
    endpoints: list[str] = []
    for source in prioritize(receiver, sources):
        if allocation.get(source.key, NO_LAYER) >= 0 and source.endpoint_id not in endpoints:
            endpoints.append(source.endpoint_id)
    return endpoints
