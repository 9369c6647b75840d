"""Bridge selection: brewery stats, health, expiry, strategies and placements."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.words.xish.domish import Element

from vw.bridge.signaling import stats_presence
from vw.focus.bridges import (
    COLIBRI_NS,
    MUC_USER_NS,
    BreweryPresence,
    BridgeRegistry,
    BridgeStats,
    SelectionConfig,
)

BREWERY = "jvbbrewery@internal.auth.localhost"


def stats(**values: object) -> Element:
    element = Element((COLIBRI_NS, "stats"))
    for name, value in values.items():
        stat = element.addElement("stat")
        stat["name"] = name
        stat["value"] = str(value)
    return element


def registry(**config: object) -> BridgeRegistry:
    return BridgeRegistry(SelectionConfig(**config))  # type: ignore[arg-type]


def announce(reg: BridgeRegistry, name: str, now: float = 0.0, stress: float = 0.0,
             region: str = "", draining: bool = False) -> dict[str, list[str]]:
    """Bridge ``name`` (nick) at JID ``name.localhost`` sends its stats."""
    values: dict[str, object] = {"stress_level": stress,
                                 "graceful_shutdown": "true" if draining else "false"}
    if region:
        values["region"] = region
    return reg.presence_received(name, f"{name}.localhost", stats(**values), now)


def chosen(reg: BridgeRegistry, conference: str = "c", region: str | None = None,
           now: float = 0.0) -> str | None:
    bridge = reg.select(conference, region, now)
    return None if bridge is None else bridge.jid


def join(reg: BridgeRegistry, conference: str, endpoint: str, region: str | None = None,
         now: float = 0.0) -> str:
    """Select and place, as the focus does; returns the bridge JID."""
    jid = chosen(reg, conference, region, now)
    assert jid is not None
    reg.place(conference, endpoint, jid)
    return jid


# -- stats ---------------------------------------------------------------------------------


class FakeBridge:
    id = "jvb1"

    def stats(self) -> dict[str, object]:
        return {"endpoints": 50, "conferences": 3, "graceful_shutdown": True,
                "version": "vw-0.1", "stress_level": 0.1}


def test_parses_what_vw_bridge_sends() -> None:
    presence = stats_presence(FakeBridge(), "jvb.localhost", f"{BREWERY}/jvb1",  # type: ignore
                              "eu-west")
    parsed = BridgeStats.fromElement(presence)
    assert parsed == BridgeStats(stress_level=0.1, draining=True, region="eu-west",
                                 relay_id="jvb1", version="vw-0.1", conferences=3,
                                 participants=50)


def test_stats_element_directly_unknown_ignored_defaults_and_last_wins() -> None:
    element = stats(stress_level="0.5", bit_rate_download="12", region="us")
    element.addElement("stat")["value"] = "nameless"
    extra = element.addElement("stat")
    extra["name"], extra["value"] = "stress_level", "0.25"
    parsed = BridgeStats.fromElement(element)
    assert parsed == BridgeStats(stress_level=0.25, region="us")
    assert BridgeStats.fromElement(stats()) == BridgeStats()


@pytest.mark.parametrize("name", ["drain", "shutting_down", "graceful_shutdown"])
def test_each_drain_stat_drains(name: str) -> None:
    assert BridgeStats.fromElement(stats(**{name: "TRUE"})).draining
    assert not BridgeStats.fromElement(stats(**{name: "0"})).draining


@pytest.mark.parametrize(("name", "value", "message"), [
    ("stress_level", "high", "not a number"),
    ("stress_level", "nan", "finite"),
    ("stress_level", "inf", "finite"),
    ("stress_level", "-0.1", "finite"),
    ("participants", "1.5", "not an integer"),
    ("conferences", "-2", "negative"),
    ("graceful_shutdown", "yes", "not true or false"),
    ("drain", "", "not true or false"),
])
def test_bad_known_stats_raise(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BridgeStats.fromElement(stats(**{name: value}))


def test_known_stat_without_value_and_missing_stats_raise() -> None:
    element = Element((COLIBRI_NS, "stats"))
    element.addElement("stat")["name"] = "stress_level"
    with pytest.raises(ValueError, match="has no value"):
        BridgeStats.fromElement(element)
    with pytest.raises(ValueError, match="no <stats"):
        BridgeStats.fromElement(Element(("jabber:client", "presence")))


# -- brewery presence ----------------------------------------------------------------------


def muc_presence(nick: str, jid: str | None, kind: str | None = None,
                 with_stats: bool = True) -> Element:
    presence = Element(("jabber:client", "presence"))
    presence["from"] = f"{BREWERY}/{nick}"
    if kind:
        presence["type"] = kind
    x = presence.addElement((MUC_USER_NS, "x"))
    item = x.addElement("item")
    item["affiliation"], item["role"] = "none", "participant"
    if jid:
        item["jid"] = jid
    if with_stats:
        presence.addChild(stats(stress_level="0.1"))
    return presence


def test_brewery_presence_available_and_unavailable() -> None:
    got = BreweryPresence.fromElement(muc_presence("jvb1", "jvb.localhost"))
    assert (got.nick, got.jid) == ("jvb1", "jvb.localhost")
    assert got.stats is not None and BridgeStats.fromElement(got.stats).stress_level == 0.1
    gone = BreweryPresence.fromElement(muc_presence("jvb1", None, "unavailable", False))
    assert gone == BreweryPresence("jvb1", None, None)


@pytest.mark.parametrize(("presence", "message"), [
    (muc_presence("jvb1", None), "no muc#user item jid"),
    (muc_presence("jvb1", "jvb.localhost", with_stats=False), "no colibri stats"),
    (muc_presence("jvb1", "jvb.localhost", kind="error"), "type 'error'"),
    (muc_presence("", "jvb.localhost"), "names no occupant"),
])
def test_brewery_presence_rejects(presence: Element, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreweryPresence.fromElement(presence)


# -- registry: presence, expiry, health ----------------------------------------------------


def test_presence_adds_and_updates() -> None:
    reg = registry()
    assert announce(reg, "a", now=1.0, stress=0.2, region="eu") == {}
    bridge = reg.get("a.localhost")
    assert bridge is not None
    assert (bridge.nick, bridge.stress, bridge.region, bridge.first_seen) == ("a", 0.2, "eu", 1.0)
    announce(reg, "a", now=11.0, stress=0.4, draining=True)
    assert (bridge.stress, bridge.region, bridge.draining) == (0.4, None, True)
    assert (bridge.first_seen, bridge.last_seen) == (1.0, 11.0)
    assert [b.jid for b in reg.operational(11.0)] == ["a.localhost"]


def test_bad_presence_leaves_registry_unchanged() -> None:
    reg = registry()
    announce(reg, "a", stress=0.2)
    with pytest.raises(ValueError, match="stress_level"):
        reg.presence_received("a", "a.localhost", stats(stress_level="oops"), 5.0)
    with pytest.raises(ValueError, match="no real JID"):
        reg.presence_received("b", None, stats(), 5.0)
    bridge = reg.get("a.localhost")
    assert bridge is not None and (bridge.stress, bridge.last_seen) == (0.2, 0.0)
    assert reg.get("b") is None and len(reg.bridges) == 1


def test_unavailable_returns_endpoints_to_move() -> None:
    reg = registry()
    announce(reg, "a")
    reg.place("c1", "e1", "a.localhost")
    reg.place("c1", "e2", "a.localhost")
    reg.place("c2", "e3", "a.localhost")
    moved = reg.presence_received("a", None, None, 3.0)
    assert moved == {"c1": ["e1", "e2"], "c2": ["e3"]}
    assert reg.bridges == [] and reg.bridge_of("c1", "e1") is None
    assert reg.presence_received("a", None, None, 4.0) == {}
    assert reg.select("c1", None, 4.0) is None


def test_nick_taken_by_another_jid_loses_the_old_bridge() -> None:
    reg = registry()
    announce(reg, "a")
    reg.place("c", "e1", "a.localhost")
    moved = reg.presence_received("a", "other.localhost", stats(), 1.0)
    assert moved == {"c": ["e1"]}
    assert [b.jid for b in reg.bridges] == ["other.localhost"]
    assert reg.presence_received("a", None, None, 2.0) == {}
    assert reg.bridges == []


def test_same_jid_new_nick_keeps_placements() -> None:
    reg = registry()
    announce(reg, "a")
    reg.place("c", "e1", "a.localhost")
    assert reg.presence_received("a2", "a.localhost", stats(), 1.0) == {}
    assert reg.presence_received("a", None, None, 2.0) == {}
    assert reg.counts() == {"a.localhost": 1}
    assert reg.presence_received("a2", None, None, 3.0) == {"c": ["e1"]}


def test_expiry_after_timeout() -> None:
    reg = registry(presence_timeout=30)
    announce(reg, "a", now=0.0)
    announce(reg, "b", now=10.0)
    reg.place("c", "e1", "a.localhost")
    assert reg.expire(29.9) == {}
    assert chosen(reg, "c", now=29.9) == "a.localhost"
    # Stale bridges are not chosen even before expire() runs.
    assert chosen(reg, "c", now=30.0) == "b.localhost"
    assert reg.expire(30.0) == {"a.localhost": {"c": ["e1"]}}
    assert reg.expire(40.0) == {"b.localhost": {}}
    assert reg.bridges == []


def test_health_failure_moves_endpoints_and_blocks_until_reset() -> None:
    reg = registry(failure_reset=60)
    announce(reg, "a", stress=0.0)
    announce(reg, "b", stress=0.5)
    reg.place("c", "e1", "a.localhost")
    reg.place("d", "e2", "a.localhost")
    assert reg.health_failed("a.localhost", 100.0) == {"c": ["e1"], "d": ["e2"]}
    assert reg.counts() == {"a.localhost": 0, "b.localhost": 0}
    with pytest.raises(ValueError, match="failed its health check"):
        reg.place("c", "e1", "a.localhost")
    reg.health_ok("a.localhost")
    for now in (100.0, 159.0):
        announce(reg, "a", now=now)
        announce(reg, "b", now=now, stress=0.5)
        assert chosen(reg, "c", now=now) == "b.localhost"
    assert [b.jid for b in reg.operational(159.0)] == ["b.localhost"]
    announce(reg, "a", now=160.0)
    announce(reg, "b", now=160.0, stress=0.5)
    assert chosen(reg, "c", now=160.0) == "a.localhost"


def test_health_still_failing_after_reset_stays_out() -> None:
    reg = registry(failure_reset=10)
    announce(reg, "a")
    reg.health_failed("a.localhost", 0.0)
    announce(reg, "a", now=20.0)
    assert reg.select("c", None, 20.0) is None
    assert reg.health_failed("gone.localhost", 20.0) == {}
    reg.health_ok("gone.localhost")


# -- strategies ----------------------------------------------------------------------------


def test_single_uses_first_bridge_to_join() -> None:
    reg = registry(strategy="single")
    announce(reg, "b", now=0.0, stress=0.9)
    announce(reg, "a", now=1.0, stress=0.0)
    assert join(reg, "c1", "e1", now=1.0) == "b.localhost"
    assert join(reg, "c2", "e1", now=1.0) == "b.localhost"
    reg.presence_received("b", None, None, 2.0)
    assert chosen(reg, "c1", now=2.0) == "a.localhost"


def test_single_configured_bridge_only() -> None:
    reg = registry(strategy="single", single_bridge="a.localhost")
    announce(reg, "b", now=0.0)
    assert reg.select("c", None, 0.0) is None
    announce(reg, "a", now=0.0, stress=0.99)
    assert chosen(reg) == "a.localhost"


def test_single_spills_over_cap() -> None:
    reg = registry(strategy="single", max_participants_per_bridge=2)
    announce(reg, "a", now=0.0)
    announce(reg, "b", now=1.0)
    assert [join(reg, "c", f"e{i}", now=1.0) for i in range(4)] == [
        "a.localhost", "a.localhost", "b.localhost", "b.localhost"]
    assert reg.select("c", None, 1.0) is None
    assert chosen(reg, "other", now=1.0) == "a.localhost"


def test_least_loaded_picks_lowest_stress() -> None:
    reg = registry()
    announce(reg, "a", stress=0.5)
    announce(reg, "b", stress=0.2)
    announce(reg, "c", stress=0.3)
    assert chosen(reg, "conf") == "b.localhost"


def test_least_loaded_spreads_a_burst_until_stats_arrive() -> None:
    reg = registry(average_participant_stress=0.01)
    announce(reg, "a", stress=0.10)
    announce(reg, "b", stress=0.12)
    picks = [join(reg, f"conf{i}", "e", now=1.0) for i in range(6)]
    # Each placement adds 0.01 to a bridge's load, so the joins alternate once a reaches b.
    assert picks.count("a.localhost") == 4 and picks.count("b.localhost") == 2
    bridge_a = reg.get("a.localhost")
    assert bridge_a is not None and bridge_a.corrected_stress(0.01) == pytest.approx(0.14)
    # Fresh stats already count those endpoints: the correction starts again from zero.
    announce(reg, "a", now=2.0, stress=0.14)
    assert bridge_a.corrected_stress(0.01) == pytest.approx(0.14)
    assert bridge_a.placed == 4
    reg.remove("conf0", "e")
    assert bridge_a.placed == 3


def test_conference_sticks_to_its_bridge() -> None:
    reg = registry()
    announce(reg, "a", stress=0.1)
    announce(reg, "b", stress=0.2)
    assert join(reg, "c", "e1") == "a.localhost"
    announce(reg, "a", now=1.0, stress=0.9)
    assert join(reg, "c", "e2", now=1.0) == "a.localhost"
    assert chosen(reg, "new", now=1.0) == "b.localhost"


def test_drain_blocks_new_conferences_but_not_hosted_ones() -> None:
    reg = registry()
    announce(reg, "a", stress=0.0)
    announce(reg, "b", stress=0.5)
    assert join(reg, "c", "e1") == "a.localhost"
    announce(reg, "a", now=1.0, draining=True)
    assert chosen(reg, "new", now=1.0) == "b.localhost"
    assert join(reg, "c", "e2", now=1.0) == "a.localhost"
    reg.presence_received("b", None, None, 2.0)
    assert reg.select("new", None, 2.0) is None


def test_cap_spills_to_another_bridge_not_a_draining_one() -> None:
    reg = registry(max_participants_per_bridge=2)
    announce(reg, "a", stress=0.0)
    announce(reg, "b", stress=0.9, draining=True)
    announce(reg, "c", stress=0.5)
    assert [join(reg, "conf", f"e{i}") for i in range(4)] == [
        "a.localhost", "a.localhost", "c.localhost", "c.localhost"]
    assert reg.conference_bridges("conf") == {"a.localhost": 2, "c.localhost": 2}
    assert reg.select("conf", None, 0.0) is None
    reg.remove("conf", "e0")
    assert chosen(reg, "conf") == "a.localhost"


def test_region_prefers_participant_region() -> None:
    reg = registry(strategy="region")
    announce(reg, "eu1", stress=0.5, region="eu")
    announce(reg, "us1", stress=0.1, region="us")
    assert join(reg, "c", "e1", region="eu") == "eu1.localhost"
    assert join(reg, "c", "e2", region="us") == "us1.localhost"
    # No bridge in the participant's region: stay on the conference's bridges (least loaded).
    assert join(reg, "c", "e3", region="ap") == "us1.localhost"
    assert chosen(reg, "new", region=None) == "us1.localhost"


def test_region_falls_back_to_conference_region_then_anywhere() -> None:
    reg = registry(strategy="region", max_participants_per_bridge=1)
    announce(reg, "eu1", stress=0.3, region="eu")
    announce(reg, "eu2", stress=0.4, region="eu")
    announce(reg, "us1", stress=0.1, region="us")
    assert join(reg, "c", "e1", region="eu") == "eu1.localhost"
    # eu1 is full for this conference; the participant (no known region) goes near it.
    assert join(reg, "c", "e2", region="ap") == "eu2.localhost"
    assert join(reg, "c", "e3", region="ap") == "us1.localhost"
    assert reg.select("c", "ap", 0.0) is None


def test_region_overloaded_bridges() -> None:
    reg = registry(strategy="region", stress_threshold=0.8)
    announce(reg, "eu1", stress=0.85, region="eu")
    announce(reg, "eu2", stress=0.95, region="eu")
    announce(reg, "us1", stress=0.1, region="us")
    # Every eu bridge is overloaded: the least loaded of them still beats another region.
    assert join(reg, "c", "e1", region="eu") == "eu1.localhost"
    announce(reg, "eu3", stress=0.2, region="eu")
    # Not-overloaded in region beats the conference's overloaded bridge there.
    assert join(reg, "c", "e2", region="eu") == "eu3.localhost"
    # Unknown region: the conference's not-overloaded bridge.
    assert join(reg, "c", "e3", region="ap") == "eu3.localhost"


def test_region_local_region_for_participants_without_one() -> None:
    reg = registry(strategy="region", local_region="eu")
    announce(reg, "eu1", stress=0.5, region="eu")
    announce(reg, "us1", stress=0.1, region="us")
    assert chosen(reg, region=None) == "eu1.localhost"
    assert chosen(reg, region="us") == "us1.localhost"


def test_no_bridges() -> None:
    for strategy in ("single", "least-loaded", "region"):
        assert registry(strategy=strategy).select("c", "eu", 0.0) is None


# -- placements ----------------------------------------------------------------------------


def test_place_remove_and_counts() -> None:
    reg = registry()
    announce(reg, "a")
    announce(reg, "b")
    reg.place("c", "e1", "a.localhost")
    reg.place("c", "e1", "a.localhost")
    reg.place("c", "e2", "a.localhost")
    assert reg.counts() == {"a.localhost": 2, "b.localhost": 0}
    reg.place("c", "e2", "b.localhost")
    assert reg.bridge_of("c", "e2") == "b.localhost"
    assert reg.conference_bridges("c") == {"a.localhost": 1, "b.localhost": 1}
    assert reg.remove("c", "e2") == "b.localhost"
    assert reg.remove("c", "e2") is None
    assert reg.remove("nope", "e2") is None
    assert reg.bridge_lost("a.localhost") == {"c": ["e1"]}
    assert reg.bridge_lost("a.localhost") == {}
    assert reg.bridge_lost("unknown") == {}
    assert reg.counts() == {"a.localhost": 0, "b.localhost": 0}
    # bridge_lost only drops placements: the bridge may still be chosen.
    assert chosen(reg) == "a.localhost"
    with pytest.raises(ValueError, match="unknown bridge 'x'"):
        reg.place("c", "e1", "x")


@pytest.mark.parametrize(("config", "message"), [
    ({"strategy": "random"}, "unknown bridge selection strategy 'random'"),
    ({"presence_timeout": 0}, "presence_timeout must be > 0"),
    ({"presence_timeout": float("inf")}, "presence_timeout must be a finite"),
    ({"stress_threshold": -1}, "stress_threshold must be a finite"),
    ({"max_participants_per_bridge": -1}, "max_participants_per_bridge must be >= 0"),
])
def test_config_validation(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SelectionConfig(**config)  # type: ignore[arg-type]


# -- hostile input -------------------------------------------------------------------------

KNOWN = ["stress_level", "graceful_shutdown", "drain", "shutting_down", "region", "relay_id",
         "version", "conferences", "participants"]
stat_names = st.one_of(st.sampled_from(KNOWN), st.text(max_size=20))
stat_values = st.one_of(
    st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**6, max_value=10**6).map(str),
    st.sampled_from(["true", "false", "TRUE", "1", "0", "", " 0.5 ", "1e999", "-0", "0x10"]),
)
stat_lists = st.lists(st.tuples(stat_names, st.one_of(st.none(), stat_values)), max_size=12)


def hostile_stats(items: list[tuple[str, str | None]]) -> Element:
    element = Element((COLIBRI_NS, "stats"))
    for name, value in items:
        stat = element.addElement("stat")
        stat["name"] = name
        if value is not None:
            stat["value"] = value
    return element


@settings(max_examples=300, deadline=None)
@given(stat_lists)
def test_hostile_stats_only_raise_value_error(items: list[tuple[str, str | None]]) -> None:
    try:
        parsed = BridgeStats.fromElement(hostile_stats(items))
    except ValueError:
        return
    assert parsed.stress_level >= 0 and parsed.participants >= 0 and parsed.conferences >= 0


@settings(max_examples=200, deadline=None)
@given(
    strategy=st.sampled_from(["single", "least-loaded", "region"]),
    cap=st.integers(min_value=0, max_value=3),
    events=st.lists(st.tuples(
        st.sampled_from(["presence", "leave", "health_failed", "health_ok", "join", "remove",
                         "expire"]),
        st.integers(min_value=0, max_value=3),
        stat_lists,
        st.one_of(st.none(), st.sampled_from(["eu", "us", ""]), st.text(max_size=5)),
    ), max_size=40),
)
def test_hostile_sequences_never_crash_selection(strategy: str, cap: int, events: list) -> None:
    reg = registry(strategy=strategy, max_participants_per_bridge=cap, failure_reset=5.0)
    placed: set[tuple[str, str]] = set()
    for step, (kind, n, items, region) in enumerate(events):
        now = float(step)
        nick, jid, conference = f"b{n}", f"b{n}.localhost", f"c{n % 2}"
        moved: dict[str, list[str]] = {}
        if kind == "presence":
            try:
                moved = reg.presence_received(nick, jid, hostile_stats(items), now)
            except ValueError:
                pass
        elif kind == "leave":
            moved = reg.presence_received(nick, None, None, now)
        elif kind == "health_failed":
            moved = reg.health_failed(jid, now)
        elif kind == "health_ok":
            reg.health_ok(jid)
        elif kind == "expire":
            for lost in reg.expire(now).values():
                for conf, endpoints in lost.items():
                    placed -= {(conf, e) for e in endpoints}
        elif kind == "remove":
            reg.remove(conference, f"e{step - n}")
            placed.discard((conference, f"e{step - n}"))
        else:
            bridge = reg.select(conference, region, now)
            if bridge is not None:
                assert bridge is reg.get(bridge.jid) and reg.is_operational(bridge, now)
                hosting = reg.conference_bridges(conference)
                assert bridge.jid in hosting or not bridge.draining
                assert cap == 0 or hosting.get(bridge.jid, 0) < cap
                reg.place(conference, f"e{step}", bridge.jid)
                placed.add((conference, f"e{step}"))
        for conf, endpoints in moved.items():
            placed -= {(conf, e) for e in endpoints}
        assert sum(reg.counts().values()) == len(placed)
        assert all(reg.bridge_of(c, e) is not None for c, e in placed)
