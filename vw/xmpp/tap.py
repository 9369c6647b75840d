"""twistd vw-xmpp: the shard's XMPP server."""

from __future__ import annotations

from twisted.internet import reactor

from vw.common.service import ConfigOptions, TopService
from vw.xmpp.service import XMPPService


class Options(ConfigOptions):
    longdesc = "The XMPP server of a vw shard: c2s, WebSocket, BOSH, MUC and components."


def makeService(options: Options) -> TopService:
    top = TopService(options.config)
    XMPPService(options.config, reactor).setServiceParent(top)
    return top
