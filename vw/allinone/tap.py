"""twistd vw: every vw service in one process, on the default ports of one machine."""

from __future__ import annotations

from twisted.internet import reactor

from vw.common.service import ConfigOptions, TopService
from vw.xmpp.service import XMPPService


class Options(ConfigOptions):
    longdesc = "All of vw in one process: the single-machine deployment."


def makeService(options: Options) -> TopService:
    top = TopService(options.config)
    XMPPService(options.config, reactor).setServiceParent(top)
    return top
