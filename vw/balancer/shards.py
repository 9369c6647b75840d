"""The shards and the choice of one for a room: rendezvous hashing over the healthy ones,
the client's region first, drained shards keeping the rooms they already have (sans-IO)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from vw.balancer.health import Health
from vw.balancer.rendezvous import choose


@dataclass(eq=False)
class Shard:
    name: str
    host: str
    port: int
    health: Health
    weight: float = 1.0
    region: str = ""
    #: Draining: no new rooms, but the rooms it has stay.
    drain: bool = False
    #: Rooms routed here, with when they were last seen.
    rooms: dict[str, float] = field(default_factory=dict)
    #: Rooms it said it does not host (asked while draining), with when.
    absent: dict[str, float] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.health.up


class ShardSet:
    def __init__(self, shards: Iterable[Shard], room_memory: float) -> None:
        self.shards = {shard.name: shard for shard in shards}
        #: Seconds a room is remembered after its last request.
        self.room_memory = room_memory

    def pick(self, room: str, region: str, now: float,
             exclude: Collection[Shard] = ()) -> Shard | None:
        """The shard for ``room`` from a client in ``region`` ("" if unknown), leaving out
        ``exclude`` (the shards a request could not reach)."""
        for group in self._groups(region, exclude):
            shard = choose(room, group)
            if shard is not None and shard.drain and room not in shard.rooms:
                shard = choose(room, [s for s in group if not s.drain])
            if shard is not None:
                shard.rooms[room] = now
                return shard
        return None

    def draining(self) -> bool:
        """Whether any shard is draining."""
        for shard in self.shards.values():  # not any(): once per request, a loop is cheaper
            if shard.drain:
                return True
        return False

    def to_ask(self, room: str, region: str, exclude: Collection[Shard] = ()) -> Shard | None:
        """The draining shard ``room`` belongs to, if nobody here knows whether it hosts the
        room (another balancer instance may have sent it there): ask it before picking."""
        for group in self._groups(region, exclude):
            shard = choose(room, group)
            if shard is not None:
                if shard.drain and room not in shard.rooms and room not in shard.absent:
                    return shard
                return None
        return None

    def answered(self, shard: Shard, room: str, hosted: bool, now: float) -> None:
        """``shard`` said whether it hosts ``room``."""
        (shard.rooms if hosted else shard.absent)[room] = now

    def _groups(self, region: str, exclude: Collection[Shard]) -> tuple[list[Shard], ...]:
        """The shards to choose from, in turn: those up in the client's region, then all up."""
        up = [shard for shard in self.shards.values()
              if shard.health.up and shard not in exclude]
        return ([shard for shard in up if shard.region == region], up) if region else (up,)

    def forget(self, now: float) -> None:
        """Forget rooms not seen for ``room_memory`` seconds."""
        horizon = now - self.room_memory
        for shard in self.shards.values():
            for rooms in (shard.rooms, shard.absent):
                for room in [room for room, seen in rooms.items() if seen < horizon]:
                    del rooms[room]

    def replace(self, shards: Iterable[Shard]) -> None:
        """New shard settings (a reload): shards that stay keep their health and rooms."""
        updated = {}
        for shard in shards:
            old = self.shards.get(shard.name)
            if old is not None and (old.host, old.port) == (shard.host, shard.port):
                shard.health.up, shard.health.streak = old.health.up, old.health.streak
                shard.rooms, shard.absent = old.rooms, old.absent
            updated[shard.name] = shard
        self.shards = updated
