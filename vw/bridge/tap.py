"""twistd vw-bridge: the SFU media bridge."""

from __future__ import annotations

from twisted.internet import reactor

from vw.bridge.service import BridgeService, host_candidates
from vw.common.service import ConfigOptions, TopService
from vw.config import Config


class Options(ConfigOptions):
    longdesc = "The vw media bridge (SFU): one UDP port, ICE, DTLS-SRTP, Colibri2 over XMPP."

    def check(self, config: Config) -> None:
        host_candidates(config)


def makeService(options: Options) -> TopService:
    top = TopService(options.config)
    BridgeService(options.config, reactor).setServiceParent(top)
    return top
