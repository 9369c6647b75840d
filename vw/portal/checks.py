"""Field checks shared by the pages and the API: each returns a problem, or None when fine."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class Invalid(Exception):
    """Some fields are wrong: ``errors`` maps each to a sentence for the person who sent it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(", ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def email_problem(email: str) -> str | None:
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        return "Enter an e-mail address such as name@example.org."
    return None


def name_problem(name: str, limit: int = 100) -> str | None:
    if not name.strip():
        return "This cannot be empty."
    if len(name) > limit:
        return f"At most {limit} characters."
    if _CONTROL.search(name):
        return "Control characters are not allowed."
    return None


def password_problem(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"At least {MIN_PASSWORD} characters."
    if len(password) > MAX_PASSWORD:
        return f"At most {MAX_PASSWORD} characters."
    return None


def avatar_problem(url: str) -> str | None:
    """An avatar is empty or an http(s) URL (it ends up in the JWT and in <img src>)."""
    if not url:
        return None
    parts = urlsplit(url)
    if len(url) > 2000 or parts.scheme not in ("https", "http") or not parts.netloc \
            or _CONTROL.search(url):
        return "Enter an http or https address."
    return None


def whole_number(text: str, low: int, high: int) -> int | None:
    """``text`` as a number from ``low`` to ``high``, when it is one written in ASCII digits."""
    if not (text.isascii() and text.isdigit()) or len(text) > len(str(high)):
        return None
    value = int(text)
    return value if low <= value <= high else None


def safe_next(target: str, default: str = "/meetings") -> str:
    """``target`` when it is a path on this site, else ``default`` (no open redirects)."""
    if (not target.startswith("/") or target.startswith(("//", "/\\"))
            or _CONTROL.search(target) or "\\" in target[:2]):
        return default
    return target
