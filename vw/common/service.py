"""Service plumbing shared by every twistd plugin."""

from __future__ import annotations

import gc
import sys

from twisted.application.service import MultiService
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.python.components import Componentized

from vw.common.logs import make_observer
from vw.config import Config, ConfigError, load


class ConfigOptions(usage.Options):
    """Options shared by every plugin: ``--config PATH``, loaded into ``self.config``."""

    optParameters = [["config", "c", None, "Path to vw.toml (default: embedded defaults)."]]

    config: Config

    def postOptions(self) -> None:
        try:
            self.config = load(self["config"])
            self.check(self.config)
        except ConfigError as e:
            sys.stderr.write(f"vw: {e}\n")
            raise SystemExit(2) from None

    def check(self, config: Config) -> None:
        """Raise ConfigError for settings this plugin's services cannot run with."""


class TopService(MultiService):
    """The top service of a plugin: it installs the configured log format on the application,
    and once every service has started it moves what start-up left alive (modules, apps,
    database metadata) out of the garbage collector's reach with ``gc.freeze()``: otherwise
    each full collection under load walks all of it with the reactor stopped (50-100 ms in the
    portal, the worst of its latency)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.config = config

    def startService(self) -> None:
        super().startService()
        gc.collect()
        gc.freeze()

    def setServiceParent(self, parent: object) -> None:
        if isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, make_observer(self.config.general.log_format))
        super().setServiceParent(parent)
