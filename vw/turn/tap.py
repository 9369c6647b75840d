"""twistd vw-turn: the TURN server."""

from __future__ import annotations

from twisted.internet import reactor

from vw.common.service import ConfigOptions, TopService
from vw.config import Config
from vw.turn.service import TurnService, relay_hosts


class Options(ConfigOptions):
    longdesc = "The vw TURN server: STUN and TURN over UDP with coturn-compatible credentials."

    def check(self, config: Config) -> None:
        relay_hosts(config)


def makeService(options: Options) -> TopService:
    top = TopService(options.config)
    TurnService(options.config, reactor).setServiceParent(top)
    return top
