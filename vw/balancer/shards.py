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
        up = [shard for shard in self.shards.values()
              if shard.health.up and shard not in exclude]
        groups = [[shard for shard in up if shard.region == region], up] if region else [up]
        for group in groups:
            shard = choose(room, group)
            if shard is not None and shard.drain and room not in shard.rooms:
                shard = choose(room, [s for s in group if not s.drain])
            if shard is not None:
                shard.rooms[room] = now
                return shard
        return None

    def forget(self, now: float) -> None:
        """Forget rooms not seen for ``room_memory`` seconds."""
        horizon = now - self.room_memory
        for shard in self.shards.values():
            stale = [room for room, seen in shard.rooms.items() if seen < horizon]
            for room in stale:
                del shard.rooms[room]

    def replace(self, shards: Iterable[Shard]) -> None:
        """New shard settings (a reload): shards that stay keep their health and rooms."""
        updated = {}
        for shard in shards:
            old = self.shards.get(shard.name)
            if old is not None and (old.host, old.port) == (shard.host, shard.port):
                shard.health.up, shard.health.streak = old.health.up, old.health.streak
                shard.rooms = old.rooms
            updated[shard.name] = shard
        self.shards = updated
