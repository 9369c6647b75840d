"""twistd vw-portal: accounts, meetings and the REST API."""

from __future__ import annotations

from twisted.internet import reactor

from vw.common.service import ConfigOptions, TopService
from vw.config import Config, ConfigError
from vw.portal.records import ROLES
from vw.portal.service import PortalService
from vw.portal.workers import die_with_parent


def check(config: Config) -> None:
    """Raise ConfigError for portal settings the loader's types do not catch."""
    portal = config.portal
    if portal.signup not in ("open", "invite", "closed"):
        raise ConfigError(config.source, "portal.signup", 'must be "open", "invite" or "closed"')
    if portal.signup_role not in ROLES:
        raise ConfigError(config.source, "portal.signup_role", "must be one of "
                          + ", ".join(ROLES))
    if config.xmpp.token.algorithm != "HS256":
        raise ConfigError(config.source, "xmpp.token.algorithm",
                          "the portal mints HS256 join tokens only")
    for key in ("http_port", "smtp_port"):
        if not 0 <= getattr(portal, key) < 65536:
            raise ConfigError(config.source, f"portal.{key}", "must be a port number (0-65535)")
    if portal.workers < 1:
        raise ConfigError(config.source, "portal.workers", "must be at least 1")
    for key in ("join_token_ttl", "access_token_ttl", "refresh_token_ttl", "session_ttl",
                "max_failures_per_hour"):
        if getattr(portal, key) < 1:
            raise ConfigError(config.source, f"portal.{key}", "must be at least 1")


class Options(ConfigOptions):
    longdesc = "The vw portal: accounts, meetings, join tokens and the REST API for apps."
    optParameters = [["shared-port", None, None,
                      "Serve this port, which the main portal process shares: how it starts "
                      "its workers ([portal] workers).", int]]

    def check(self, config: Config) -> None:
        check(config)


def makeService(options: Options) -> TopService:
    if options["shared-port"] is not None:
        die_with_parent()  # a worker: it ends with the main process
    top = TopService(options.config)
    PortalService(options.config, reactor, options["shared-port"]).setServiceParent(top)
    return top
