"""The vw-xmpp service: listeners for c2s, HTTP (WebSocket, BOSH, ops) and components; c2s
and HTTP take a PROXY header from ``xmpp.trusted_proxies``."""

from __future__ import annotations

from sqlalchemy import text
from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import Site

from vw.common.ops import add_ops_resources
from vw.common.proxied import ProxiedFactory
from vw.common.tls import PreparedContextFactory, ensure_material, server_context
from vw.config import Config
from vw.meeting.resource import MeetingResource
from vw.xmpp.bosh import BoshResource
from vw.xmpp.component import ComponentFactory
from vw.xmpp.roomquery import RoomQueryResource
from vw.xmpp.server import XMPPServer
from vw.xmpp.tcp import XMPPStreamFactory
from vw.xmpp.websocket import XMPPWebSocketResource


class XMPPService(MultiService):
    """vw-xmpp: one XMPPServer and its listeners."""

    def __init__(self, config: Config, clock: IReactorTime) -> None:
        super().__init__()
        self.setName("xmpp")
        self.xmpp = XMPPServer(config, clock)
        material = ensure_material(config)
        tls = PreparedContextFactory(server_context(material))
        bind = config.general.bind
        xmpp = config.xmpp
        c2s = ProxiedFactory(XMPPStreamFactory(self.xmpp, tls), xmpp.trusted_proxies, clock)
        internet.TCPServer(xmpp.c2s_port, c2s, interface=bind).setServiceParent(self)
        internet.TCPServer(xmpp.component_port, ComponentFactory(self.xmpp),
                           interface=bind).setServiceParent(self)
        http = ProxiedFactory(Site(self.http_root()), xmpp.trusted_proxies, clock)
        internet.TCPServer(xmpp.http_port, http, interface=bind).setServiceParent(self)

    def http_root(self) -> Resource:
        """The meeting page at every room path, with the XMPP and ops endpoints beside it."""
        root = MeetingResource(self.xmpp.full_config)
        secure = self.xmpp.config.http_considered_secure
        root.putChild(b"xmpp-websocket", XMPPWebSocketResource(self.xmpp, secure))
        root.putChild(b"http-bind", BoshResource(self.xmpp, secure))
        add_ops_resources(root, [self._database_health], self.xmpp.registry)
        root.children[b"about"].putChild(b"rooms", RoomQueryResource(
            self.xmpp.conference_rooms, self.xmpp.config.room_queries_from))
        return root

    def _database_health(self) -> str | None:
        try:
            with self.xmpp.engine.connect() as db:
                db.execute(text("SELECT 1"))
        except Exception as e:  # noqa: BLE001 - any database failure makes us unhealthy
            return f"database: {e.__class__.__name__}"
        return None
