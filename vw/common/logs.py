"""Log observers: human text or JSON lines, both through twisted.logger."""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    formatEventAsClassicLogText,
    jsonFileLogObserver,
)


def make_observer(log_format: str, stream: TextIO = sys.stdout) -> ILogObserver:
    """An observer writing events to ``stream`` as text or as one JSON object per line."""
    if log_format == "json":
        return jsonFileLogObserver(stream, recordSeparator="")
    return FileLogObserver(stream, formatEventAsClassicLogText)
