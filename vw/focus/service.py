"""vw-focus as a Twisted service: the XMPP login, the HTTP port, the timer."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry, Gauge
from twisted.application import internet
from twisted.application.service import MultiService
from twisted.internet import ssl
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from twisted.words.protocols.jabber import client, xmlstream
from twisted.words.protocols.jabber.jid import JID

from vw.common.ops import JSONResource, add_ops_resources
from vw.common.state import persistent_secret
from vw.common.tls import ensure_material
from vw.config import Config
from vw.focus.focus import Focus
from vw.focus.link import XMPPLink
from vw.xmpp.errors import StanzaError

log = Logger()

#: Seconds between checks for bridges that went quiet.
TICK = 2.0
#: Largest conference-request body accepted, in bytes.
MAX_REQUEST_BYTES = 16384


def focus_password(config: Config) -> str:
    """focus@auth.DOMAIN's password: configured, or generated once under state_dir."""
    return config.focus.password or persistent_secret(config.state_dir, "focus-password")


class ConferenceRequestResource(Resource):
    """Jicofo's HTTP ``POST /conference-request/v1`` ``{"room": "name@conference.DOMAIN"}``."""

    isLeaf = True

    def __init__(self, focus: Focus) -> None:
        super().__init__()
        self.focus = focus

    def render_POST(self, request: Request) -> bytes | int:
        request.setHeader(b"content-type", b"application/json")
        body = request.content.read(MAX_REQUEST_BYTES + 1)
        try:
            if len(body) > MAX_REQUEST_BYTES:
                raise ValueError("request too large")
            room = json.loads(body)["room"]
            if not isinstance(room, str):
                raise TypeError
            joined = self.focus.request_conference(room, None)
        except (ValueError, KeyError, TypeError):
            request.setResponseCode(400)
            return b'{"error": "expected {\\"room\\": \\"name@conference.domain\\"}"}'
        except StanzaError as error:
            request.setResponseCode(403 if error.condition == "not-authorized" else 400)
            return json.dumps({"error": error.condition, "text": error.text}).encode()

        def answer(_: None) -> None:
            request.write(json.dumps({
                "ready": True, "focusJid": self.focus.focus_jid,
                "properties": {"authentication": False, "support-terminate-restart": True},
            }).encode())
            request.finish()

        def failed(failure: object) -> None:
            request.setResponseCode(503)
            request.write(json.dumps({"error": str(getattr(failure, "value", failure))})
                          .encode())
            request.finish()

        joined.addCallbacks(answer, failed)
        return NOT_DONE_YET


class FocusService(MultiService):
    """vw-focus: one Focus, its XMPP connection, its HTTP port and its timer."""

    def __init__(self, config: Config, clock: IReactorTime) -> None:
        super().__init__()
        self.setName("focus")
        settings = config.focus
        self.registry = CollectorRegistry()
        self.link = XMPPLink(clock)
        self.focus = Focus(config, self.link, clock.seconds, clock.callLater)
        jid = JID(f"focus@{config.auth_domain}/focus")
        factory = client.XMPPClientFactory(jid, focus_password(config), self._tls(config))
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, self._authenticated)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, lambda _: self.link.disconnected())
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, self._login_failed)
        factory.maxDelay = 10
        internet.TCPClient(settings.xmpp_host, settings.xmpp_port, factory).setServiceParent(self)
        internet.TCPServer(settings.http_port, Site(self.http_root()),
                           interface=config.general.bind).setServiceParent(self)
        timer = internet.TimerService(TICK, self.focus.tick)
        timer.clock = clock
        timer.setServiceParent(self)
        self._gauges()

    @staticmethod
    def _tls(config: Config) -> ssl.IOpenSSLClientConnectionCreator:
        material = ensure_material(config)
        trust = (ssl.Certificate.loadPEM(material.ca.read_bytes()) if material.ca is not None
                 else ssl.platformTrust())
        return ssl.optionsForClientTLS(config.auth_domain, trustRoot=trust)

    def _authenticated(self, stream: xmlstream.XmlStream) -> None:
        self.link.connected(stream, stream.authenticator.jid.full())
        self.focus.connected()
        log.info("focus connected to XMPP as {jid}", jid=self.link.jid)

    def _login_failed(self, failure: object) -> None:
        log.error("focus could not log in to XMPP: {failure}",
                  failure=getattr(failure, "value", failure))

    def http_root(self) -> Resource:
        root = Resource()
        requests = Resource()
        requests.putChild(b"v1", ConferenceRequestResource(self.focus))
        root.putChild(b"conference-request", requests)
        add_ops_resources(root, [self._health], self.registry)
        root.children[b"about"].putChild(b"stats", JSONResource(self.focus.stats))
        return root

    def _health(self) -> str | None:
        return None if self.link.stream is not None else "not connected to XMPP"

    def _gauges(self) -> None:
        for key in ("conferences", "participants", "bridges", "conference_requests"):
            gauge = Gauge(f"vw_focus_{key}", f"Focus {key.replace('_', ' ')}",
                          registry=self.registry)
            gauge.set_function(lambda key=key: self.focus.stats()[key])
