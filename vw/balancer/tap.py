"""twistd vw-balancer: the front door."""

from __future__ import annotations

from twisted.internet import reactor

from vw.balancer.service import BalancerService, ReloadOnHangup
from vw.common.service import ConfigOptions, TopService


class Options(ConfigOptions):
    longdesc = ("The vw balancer: TLS and HTTP front door routing each room to one shard "
                "(rendezvous hashing), with health checks, regions and drain. SIGHUP reloads "
                "the configuration.")


def makeService(options: Options) -> TopService:
    top = TopService(options.config)
    service = BalancerService(options.config, reactor)
    service.setServiceParent(top)
    ReloadOnHangup(service, reactor).setServiceParent(top)
    return top
