"""Server-rendered pages: Jinja2 templates with every value HTML-escaped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


ENVIRONMENT = Environment(loader=PackageLoader("vw.portal", "templates"), autoescape=True,
                          undefined=StrictUndefined, extensions=["jinja2.ext.do"],
                          trim_blocks=True, lstrip_blocks=True)
ENVIRONMENT.filters["when"] = _when


def render(name: str, **context: Any) -> bytes:
    return ENVIRONMENT.get_template(name).render(**context).encode()
