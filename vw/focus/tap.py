"""twistd vw-focus: the conference focus."""

from __future__ import annotations

from twisted.internet import reactor

from vw.common.service import ConfigOptions, TopService
from vw.focus.service import FocusService


class Options(ConfigOptions):
    longdesc = ("The vw conference focus: answers conference requests, runs the rooms, "
                "allocates on bridges with Colibri2 and signals participants with Jingle.")


def makeService(options: Options) -> TopService:
    top = TopService(options.config)
    FocusService(options.config, reactor).setServiceParent(top)
    return top
