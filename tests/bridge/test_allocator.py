"""Per-receiver video allocation: ordering, last-N, constraints, bandwidth."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from vw.bridge.allocator import (
    CandidateSource,
    LayerInfo,
    ReceiverState,
    allocate,
    allocated_bitrate,
    allowed_layers,
    default_bitrate,
    forwarded_endpoints,
    forwarded_sources,
    layer_bitrate,
    prioritize,
    receiver_state,
)
from vw.bridge.channel import ReceiverVideoConstraints, VideoConstraints, parse_message

SIMULCAST = (LayerInfo(180, 150_000), LayerInfo(360, 500_000), LayerInfo(720, 2_500_000))
PLENTY = 100e6


def camera(endpoint: str, rank: int | None = None, layers=SIMULCAST) -> CandidateSource:
    return CandidateSource(endpoint, f"{endpoint}-v0", layers, rank)


def test_default_bitrates_and_heights() -> None:
    source = camera("a", layers=(LayerInfo(), LayerInfo(), LayerInfo()))
    assert [layer_bitrate(source, i) for i in range(3)] == [150_000, 500_000, 2_500_000]
    assert default_bitrate(1080) > default_bitrate(720)
    assert allowed_layers(source, 360) == [0, 1]


def test_everything_fits_with_unlimited_constraints() -> None:
    state = ReceiverState(default_max_height=-1)
    result = allocate(state, [camera("a"), camera("b")], PLENTY)
    assert result == {"a-v0": 2, "b-v0": 2}


def test_constraint_180_vs_720_picks_layers_0_and_2() -> None:
    state = ReceiverState(on_stage_endpoints=("b",), default_max_height=180,
                          max_height_by_endpoint={"b": 720})
    result = allocate(state, [camera("a"), camera("b"), camera("c")], PLENTY)
    assert result == {"a-v0": 0, "b-v0": 2, "c-v0": 0}


def test_max_height_zero_disables() -> None:
    state = ReceiverState(default_max_height=0, max_height_by_endpoint={"b": 360})
    assert allocate(state, [camera("a"), camera("b")], PLENTY) == {"a-v0": -1, "b-v0": 1}
    state = ReceiverState(default_max_height=-1, max_height_by_endpoint={"a": 0})
    assert allocate(state, [camera("a"), camera("b")], PLENTY) == {"a-v0": -1, "b-v0": 2}


def test_video_type_none_and_inactive_layers() -> None:
    state = ReceiverState(default_max_height=-1)
    muted = CandidateSource("a", "a-v0", SIMULCAST, None, "none")
    top_off = camera("b", layers=SIMULCAST[:2] + (LayerInfo(720, 0, active=False),))
    assert allocate(state, [muted, top_off], PLENTY) == {"a-v0": -1, "b-v0": 1}


def test_single_layer_above_the_constraint_still_shows() -> None:
    big = camera("a", layers=(LayerInfo(720, 1_500_000),))
    assert allocate(ReceiverState(default_max_height=180), [big], PLENTY) == {"a-v0": 0}


def test_ordering() -> None:
    state = ReceiverState(selected_endpoints=("s2", "s1"), on_stage_endpoints=("st",))
    sources = [camera("x"), camera("s1"), camera("old", 3), camera("st"), camera("s2"),
               camera("speaker", 0), camera("y")]
    assert [s.endpoint_id for s in prioritize(state, sources)] == [
        "st", "s2", "s1", "speaker", "old", "x", "y"]


def test_last_n_cut() -> None:
    sources = [camera("x"), camera("b", 1), camera("a", 0), camera("y")]
    result = allocate(ReceiverState(last_n=2), sources, PLENTY)
    assert result == {"x-v0": -1, "b-v0": 0, "a-v0": 0, "y-v0": -1}
    assert forwarded_endpoints(ReceiverState(last_n=2), sources, result) == ["a", "b"]
    assert allocate(ReceiverState(last_n=0), sources, PLENTY) == dict.fromkeys(result, -1)
    assert all(v == 0 for v in allocate(ReceiverState(last_n=-1), sources, PLENTY).values())


def test_last_n_counts_endpoints_not_sources_and_skips_disabled() -> None:
    state = ReceiverState(last_n=2, max_height_by_endpoint={"a": 0})
    sources = [camera("a", 0), CandidateSource("b", "b-v0", SIMULCAST, 1),
               CandidateSource("b", "b-v1", SIMULCAST, 1, "desktop"), camera("c", 2),
               camera("d", 3)]
    result = allocate(state, sources, PLENTY)
    assert result == {"a-v0": -1, "b-v0": 0, "b-v1": 0, "c-v0": 0, "d-v0": -1}
    assert forwarded_sources(state, sources, result) == ["b-v0", "b-v1", "c-v0"]


def test_on_stage_priority_under_last_n() -> None:
    state = ReceiverState(last_n=1, on_stage_endpoints=("z",))
    result = allocate(state, [camera("a", 0), camera("z")], PLENTY)
    assert result == {"a-v0": -1, "z-v0": 0}


def test_bandwidth_limited_gives_base_layers_first() -> None:
    state = ReceiverState(on_stage_endpoints=("a",), default_max_height=-1)
    sources = [camera("a"), camera("b", 0), camera("c", 1)]
    # Three base layers (450k) fit; the on-stage source then gets 360p (+350k), not 720p.
    assert allocate(state, sources, 900_000) == {"a-v0": 1, "b-v0": 0, "c-v0": 0}
    # Only two base layers fit: the third (lowest priority) gets nothing.
    assert allocate(state, sources, 350_000) == {"a-v0": 0, "b-v0": 0, "c-v0": -1}
    # With 720p affordable for the on-stage source it goes first, before others leave 180p.
    assert allocate(state, sources, 3_000_000) == {"a-v0": 2, "b-v0": 0, "c-v0": 0}
    # Then the others go up one layer at a time, in order.
    assert allocate(state, sources, 3_400_000) == {"a-v0": 2, "b-v0": 1, "c-v0": 0}


def test_round_robin_upgrades_without_on_stage() -> None:
    state = ReceiverState(default_max_height=360)
    sources = [camera("a", 0), camera("b", 1), camera("c", 2)]
    # Nothing on stage: the first source (the speaker) is the priority one.
    assert allocate(state, sources, 850_000) == {"a-v0": 1, "b-v0": 0, "c-v0": 0}
    assert allocate(state, sources, 1_200_000) == {"a-v0": 1, "b-v0": 1, "c-v0": 0}


def test_oversending_rule_for_the_first_source() -> None:
    state = ReceiverState(default_max_height=-1)
    sources = [camera("a", 0), camera("b", 1)]
    assert allocate(state, sources, 100_000) == {"a-v0": 0, "b-v0": -1}
    assert allocate(state, sources, 100_000, oversend_first=False) == {"a-v0": -1, "b-v0": -1}
    assert allocate(state, sources, 0) == {"a-v0": 0, "b-v0": -1}
    assert allocate(state, sources, math.nan) == {"a-v0": 0, "b-v0": -1}
    # A cheap later source is not sent alongside an oversent first one.
    cheap = camera("c", 2, layers=(LayerInfo(180, 50_000),))
    assert allocate(state, [*sources, cheap], 100_000) == {"a-v0": 0, "b-v0": -1, "c-v0": -1}
    # But when the first fits, a cheaper later one may still fit where a dearer one didn't.
    assert allocate(state, [*sources, cheap], 200_000) == {"a-v0": 0, "b-v0": -1, "c-v0": 0}


def test_receiver_state_from_constraints() -> None:
    message = parse_message(
        '{"colibriClass":"ReceiverVideoConstraints","lastN":3,"selectedEndpoints":["s"],'
        '"onStageEndpoints":["b0b0b0b0"],"defaultConstraints":{"maxHeight":180},'
        '"constraints":{"b0b0b0b0":{"maxHeight":720}}}')
    assert isinstance(message, ReceiverVideoConstraints)
    state = receiver_state(message)
    assert state == ReceiverState(3, ("s",), ("b0b0b0b0",), 180, {"b0b0b0b0": 720})
    assert state.max_height("b0b0b0b0") == 720 and state.max_height("x") == 180
    bare = receiver_state(ReceiverVideoConstraints())
    assert bare.last_n == -1 and bare.default_max_height == 180
    unlimited = receiver_state(ReceiverVideoConstraints(
        default_constraints=VideoConstraints(-1)))
    assert unlimited.max_height("x") == -1


layers = st.lists(st.builds(
    LayerInfo,
    height=st.one_of(st.none(), st.sampled_from([90, 180, 270, 360, 540, 720, 1080])),
    bitrate_bps=st.one_of(st.none(), st.floats(0, 5e6)),
    active=st.booleans()), max_size=4)
endpoint_ids = st.sampled_from(["a", "b", "c", "d", "e", "f"])
heights = st.sampled_from([-1, 0, 90, 180, 360, 720, 1080])


@st.composite
def scenarios(draw):
    count = draw(st.integers(0, 8))
    sources = [CandidateSource(draw(endpoint_ids), f"s{i}", draw(layers),
                               draw(st.one_of(st.none(), st.integers(0, 6))),
                               draw(st.sampled_from(["camera", "desktop", "none"])))
               for i in range(count)]
    state = ReceiverState(
        last_n=draw(st.integers(-1, 5)),
        selected_endpoints=tuple(draw(st.lists(endpoint_ids, max_size=3))),
        on_stage_endpoints=tuple(draw(st.lists(endpoint_ids, max_size=2))),
        default_max_height=draw(heights),
        max_height_by_endpoint=draw(st.dictionaries(endpoint_ids, heights, max_size=3)))
    estimate = draw(st.one_of(st.floats(0, 2e7), st.just(math.inf), st.just(-1.0)))
    return state, sources, estimate


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_allocation_properties(scenario) -> None:
    state, sources, estimate = scenario
    result = allocate(state, sources, estimate)
    assert set(result) == {s.key for s in sources}
    for source in sources:
        index = result[source.key]
        assert index == -1 or index in allowed_layers(source, state.max_height(source.endpoint_id))
    total = allocated_bitrate(sources, result)
    forwarded = forwarded_sources(state, sources, result)
    if total > max(estimate, 0):
        # The only exception: the first eligible source alone, at its lowest allowed layer.
        assert state.last_n != 0
        first = next(s for s in prioritize(state, sources)
                     if allowed_layers(s, state.max_height(s.endpoint_id)))
        lowest = layer_bitrate(first, allowed_layers(first, state.max_height(first.endpoint_id))[0])
        assert forwarded == [first.key] and total <= lowest and lowest > max(estimate, 0)
    if state.last_n >= 0:
        assert len(forwarded_endpoints(state, sources, result)) <= state.last_n
    strict = allocate(state, sources, estimate, oversend_first=False)
    assert allocated_bitrate(sources, strict) <= max(estimate, 0)
