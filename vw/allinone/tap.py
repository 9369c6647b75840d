"""twistd vw: every vw service in one process, on the default ports of one machine."""

from __future__ import annotations

import dataclasses

from twisted.internet import reactor

from vw.bridge.service import BridgeService, bridge_component_secret, host_candidates
from vw.common.service import TopService
from vw.config import Config
from vw.focus.service import FocusService, focus_password
from vw.portal.joining import with_join_tokens
from vw.portal.service import PortalService
from vw.portal.tap import Options as PortalOptions
from vw.turn.service import TurnService, relay_hosts
from vw.xmpp.service import XMPPService


class Options(PortalOptions):
    """The portal's options: its settings are checked as ``twistd vw-portal`` checks them."""

    longdesc = "All of vw in one process: the single-machine deployment."

    def check(self, config: Config) -> None:
        super().check(config)
        host_candidates(config)
        relay_hosts(config)


def with_local_bridge(config: Config) -> Config:
    """The configuration with the local bridge listed as an XMPP component."""
    components = {config.bridge_domain: bridge_component_secret(config), **config.xmpp.components}
    return dataclasses.replace(config, xmpp=dataclasses.replace(config.xmpp,
                                                                components=components))


def makeService(options: Options) -> TopService:
    """The XMPP server checks the portal's join tokens: both get one token secret."""
    config = with_join_tokens(with_local_bridge(options.config))
    top = TopService(config)
    xmpp = XMPPService(config, reactor)
    xmpp.xmpp.accounts.set_password(config.auth_domain, "focus", focus_password(config))
    xmpp.setServiceParent(top)
    BridgeService(config, reactor).setServiceParent(top)
    FocusService(config, reactor).setServiceParent(top)
    PortalService(config, reactor).setServiceParent(top)
    TurnService(config, reactor).setServiceParent(top)
    return top
