"""Rendezvous hashing, health counting, regions and drain."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from vw.balancer.geo import Geo, open_database
from vw.balancer.health import Health
from vw.balancer.rendezvous import choose
from vw.balancer.shards import Shard, ShardSet
from vw.config import BalancerConfig

ROOMS = [f"room{i}" for i in range(2000)]


@dataclass
class Node:
    name: str
    weight: float = 1.0


def shard(name: str, region: str = "", weight: float = 1.0) -> Shard:
    return Shard(name, "127.0.0.1", 1, Health(2.0, 2, 3), weight, region)


def test_rendezvous_is_stable_and_balanced() -> None:
    nodes = [Node(f"s{i}") for i in range(4)]
    first = [choose(room, nodes).name for room in ROOMS]
    assert first == [choose(room, list(reversed(nodes))).name for room in ROOMS]
    counts = Counter(first)
    assert set(counts) == {"s0", "s1", "s2", "s3"}
    assert all(400 < count < 600 for count in counts.values())


def test_removing_a_node_moves_only_its_keys() -> None:
    nodes = [Node(f"s{i}") for i in range(4)]
    before = {room: choose(room, nodes).name for room in ROOMS}
    after = {room: choose(room, nodes[:3]).name for room in ROOMS}
    moved = [room for room in ROOMS if before[room] != after[room]]
    assert moved and all(before[room] == "s3" for room in moved)


def test_weights_share_keys_in_proportion() -> None:
    counts = Counter(choose(room, [Node("a", 3.0), Node("b", 1.0)]).name for room in ROOMS)
    assert 0.7 < counts["a"] / len(ROOMS) < 0.8


def test_no_candidates() -> None:
    assert choose("room", []) is None


@given(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
       st.text(max_size=20))
def test_the_choice_does_not_depend_on_order(names: list[str], key: str) -> None:
    nodes = [Node(name) for name in names]
    assert choose(key, nodes) is choose(key, nodes[::-1])


def test_health_rise_and_fall() -> None:
    health = Health(interval=2.0, rise=2, fall=3)
    assert health.up
    assert [health.record(False) for _ in range(3)] == [False, False, True]
    assert not health.up
    assert [health.record(True), health.record(False), health.record(True),
            health.record(True)] == [False, False, False, True]
    assert health.up


def test_by_default_a_dead_shard_leaves_within_two_failed_checks() -> None:
    defaults = BalancerConfig()
    health = Health(defaults.health_interval, defaults.health_rise, defaults.health_fall)
    assert [health.record(False) for _ in range(2)] == [False, True] and not health.up


def test_health_checks_are_due_every_interval() -> None:
    health = Health(interval=2.0, rise=1, fall=1)
    assert health.due(0.0)
    health.begin(0.0)
    assert not health.due(5.0)
    assert health.finish(False) and not health.due(1.9) and health.due(2.0)


def test_a_dead_shard_loses_only_its_rooms() -> None:
    shards = ShardSet([shard("a"), shard("b"), shard("c")], room_memory=60)
    before = {room: shards.pick(room, "", 0).name for room in ROOMS}
    for _ in range(3):
        shards.shards["b"].health.record(False)
    after = {room: shards.pick(room, "", 0).name for room in ROOMS}
    assert {room for room in ROOMS if before[room] != after[room]} == {
        room for room in ROOMS if before[room] == "b"}


def test_an_excluded_shard_is_passed_over_like_a_dead_one() -> None:
    shards = ShardSet([shard("a"), shard("b"), shard("c")], room_memory=60)
    b = shards.shards["b"]
    excluded = {room: shards.pick(room, "", 0, exclude=[b]).name for room in ROOMS}
    assert set(excluded.values()) == {"a", "c"}
    for _ in range(3):
        b.health.record(False)
    assert excluded == {room: shards.pick(room, "", 0).name for room in ROOMS}


def test_excluding_other_shards_keeps_the_choice() -> None:
    shards = ShardSet([shard("a"), shard("b"), shard("c")], room_memory=60)
    for room in ROOMS[:200]:
        chosen = shards.pick(room, "", 0)
        others = [s for s in shards.shards.values() if s is not chosen]
        assert shards.pick(room, "", 0, exclude=others[:1]) is chosen
        assert shards.pick(room, "", 0, exclude=others) is chosen
        assert shards.pick(room, "", 0, exclude=[*others, chosen]) is None


def test_exclusion_falls_back_from_the_region_then_leaves_drained_shards_out() -> None:
    shards = ShardSet([shard("eu1", "eu"), shard("us1", "us"), shard("us2", "us")], 60)
    eu1, us1, us2 = shards.shards.values()
    assert shards.pick("room", "eu", 0, exclude=(eu1,)) in (us1, us2)
    assert shards.pick("room", "eu", 0, exclude=(eu1, us1)) is us2
    us2.drain = True
    assert shards.pick("brand-new", "eu", 0, exclude=(eu1, us1)) is None
    assert shards.pick("room", "eu", 0, exclude=(eu1, us1)) is us2


def test_draining_keeps_known_rooms_and_takes_no_new_ones() -> None:
    shards = ShardSet([shard("a"), shard("b")], room_memory=60)
    known = {room: shards.pick(room, "", 0).name for room in ROOMS[:1000]}
    shards.shards["a"].drain = True
    assert all(shards.pick(room, "", 1).name == name for room, name in known.items())
    assert {shards.pick(room, "", 1).name for room in ROOMS[1000:]} == {"b"}


def test_drained_rooms_are_forgotten_after_room_memory() -> None:
    shards = ShardSet([shard("a"), shard("b")], room_memory=60)
    room = next(r for r in ROOMS if shards.pick(r, "", 0).name == "a")
    shards.shards["a"].drain = True
    shards.forget(30)
    assert shards.pick(room, "", 30).name == "a"
    shards.forget(91)
    assert shards.pick(room, "", 91).name == "b"


def test_a_draining_shard_is_asked_about_rooms_it_was_not_seen_with() -> None:
    shards = ShardSet([shard("a"), shard("b")], room_memory=60)
    on_a = [r for r in ROOMS[:200] if choose(r, list(shards.shards.values())).name == "a"]
    a = shards.shards["a"]
    assert not shards.draining()
    a.drain = True
    assert shards.draining()
    hosted, elsewhere = on_a[0], on_a[1]
    assert shards.to_ask(hosted, "") is a and shards.to_ask(elsewhere, "") is a
    shards.answered(a, hosted, True, 10)
    shards.answered(a, elsewhere, False, 10)
    assert shards.to_ask(hosted, "") is None and shards.pick(hosted, "", 11) is a
    assert shards.to_ask(elsewhere, "") is None and shards.pick(elsewhere, "", 11).name == "b"
    not_on_a = next(r for r in ROOMS if choose(r, list(shards.shards.values())).name == "b")
    assert shards.to_ask(not_on_a, "") is None
    shards.forget(80)
    assert shards.to_ask(elsewhere, "") is a  # the answer is forgotten with the rooms


def test_regions_first_others_as_backup() -> None:
    shards = ShardSet([shard("eu1", "eu"), shard("eu2", "eu"), shard("us1", "us")], 60)
    assert {shards.pick(room, "eu", 0).name for room in ROOMS} == {"eu1", "eu2"}
    assert {shards.pick(room, "us", 0).name for room in ROOMS} == {"us1"}
    assert {shards.pick(room, "", 0).name for room in ROOMS} == {"eu1", "eu2", "us1"}
    for _ in range(3):
        shards.shards["us1"].health.record(False)
    assert {shards.pick(room, "us", 0).name for room in ROOMS} == {"eu1", "eu2"}
    shards.shards["eu1"].drain = shards.shards["eu2"].drain = True
    assert shards.pick("brand-new", "eu", 0) is None


def test_a_reload_keeps_health_and_rooms_of_unchanged_shards() -> None:
    shards = ShardSet([shard("a"), shard("b")], room_memory=60)
    shards.pick("room", "", 0)
    for _ in range(3):
        shards.shards["b"].health.record(False)
    moved = Shard("a", "127.0.0.2", 1, Health(2.0, 2, 3))
    shards.replace([shard("b"), moved, shard("c")])
    assert not shards.shards["b"].up and shards.shards["a"].rooms == {}
    assert shards.shards["a"] is moved and shards.shards["c"].up


def country_database(path: Path) -> str:
    """A real MaxMind DB file (written by mmdb-writer, read by maxminddb): a country and
    continent for 192.0.2.0/25, only a continent for 192.0.2.128/25."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    writer.insert_network(IPSet(["192.0.2.0/25"]), {"country": {"iso_code": "DE"},
                                                    "continent": {"code": "EU"}})
    writer.insert_network(IPSet(["192.0.2.128/25"]), {"continent": {"code": "NA"}})
    writer.to_db_file(str(path))
    return str(path)


def test_geo_by_cidr_then_database(tmp_path: Path) -> None:
    database = open_database(country_database(tmp_path / "countries.mmdb"))
    geo = Geo({"10.0.0.0/8": "eu", "10.1.0.0/16": "us", "2001:db8::/32": "ap"},
              database, {"DE": "eu-central", "NA": "us"})
    assert geo.region("10.2.3.4") == "eu"
    assert geo.region("10.1.3.4") == "us"
    assert geo.region("2001:db8::5") == "ap"
    assert geo.region("192.0.2.9") == "eu-central"
    assert geo.region("192.0.2.200") == "us"
    assert geo.region("198.51.100.1") == ""
    assert geo.region("not an address") == ""
    assert Geo({}).region("10.0.0.1") == ""
