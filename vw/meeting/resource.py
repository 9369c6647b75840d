"""The meeting page as a twisted.web resource tree: ``/ROOM``, ``/``, ``/libs/*``, ``/static/*``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from twisted.web.resource import NoResource, Resource
from twisted.web.server import Request
from twisted.web.static import File
from twisted.web.util import Redirect

from vw.config import Config

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
NODE_MODULES = HERE / "node_modules"

#: A room name as it appears in the URL (and, lower-case already, in the MUC JID).
ROOM_NAME = re.compile(rb"[a-z0-9][a-z0-9._-]{0,127}")
#: The template's placeholder for the page's JSON configuration.
CONFIG_MARKER = "__VW_CONFIG__"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
HTML = b"text/html; charset=utf-8"
#: The browser libraries, by URL name: their file under node_modules.
LIBRARIES = {
    "lib-jitsi-meet.min.js": "@lyno/lib-jitsi-meet/lib-jitsi-meet.min.js",
    "jquery.min.js": "jquery/dist/jquery.min.js",
}
#: Pinned library versions change only with package-lock.json; vw's own files may change.
LIBRARY_CACHE = "public, max-age=86400"
STATIC_CACHE = "no-cache"
NOT_INSTALLED = (b"The meeting page's libraries are not installed on this server: "
                 b"run `npm ci --prefix vw/meeting`.\n")


def script_json(value: object) -> str:
    """``value`` as JSON that is safe inside an HTML ``<script>`` element."""
    text = json.dumps(value, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_headers(request: Request) -> None:
    """Headers of the HTML pages: they change with vw, so browsers revalidate them."""
    request.setHeader(b"content-type", HTML)
    request.setHeader(b"cache-control", b"no-cache")
    request.setHeader(b"x-content-type-options", b"nosniff")


class AssetFile(File):
    """One file with a fixed content type and Cache-Control; never a directory."""

    def __init__(self, path: Path, content_type: str, cache_control: str,
                 missing: bytes | None = None) -> None:
        super().__init__(str(path), defaultType=content_type)
        self.type = content_type
        self.encoding = None
        self.cache_control = cache_control.encode()
        self.missing = missing

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"x-content-type-options", b"nosniff")
        self.restat(False)
        if self.missing is not None and not self.isfile():
            request.setResponseCode(503)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return self.missing
        request.setHeader(b"cache-control", self.cache_control)
        return super().render(request)


class AssetDirectory(Resource):
    """Only the files put in it: no listing, no other paths."""

    def render(self, request: Request) -> bytes:
        return NoResource().render(request)


def static_directory(directory: Path) -> AssetDirectory:
    """vw's own scripts and style sheets in ``directory`` (templates are not served)."""
    assets = AssetDirectory()
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in CONTENT_TYPES:
            assets.putChild(path.name.encode(), AssetFile(path, CONTENT_TYPES[path.suffix],
                                                          STATIC_CACHE))
    return assets


def library_directory(node_modules: Path) -> AssetDirectory:
    """The pinned npm libraries; 503 for each one not installed."""
    libraries = AssetDirectory()
    for name, path in LIBRARIES.items():
        libraries.putChild(name.encode(), AssetFile(node_modules / path, CONTENT_TYPES[".js"],
                                                    LIBRARY_CACHE, NOT_INSTALLED))
    return libraries


class RoomPage(Resource):
    """index.html for one room, with the room's XMPP configuration injected."""

    isLeaf = True

    def __init__(self, template: str, settings: dict[str, str]) -> None:
        super().__init__()
        self.body = template.replace(CONFIG_MARKER, script_json(settings)).encode()

    def render_GET(self, request: Request) -> bytes:
        page_headers(request)
        return self.body


class LandingPage(Resource):
    """``/``: a form to pick a room; ``/?room=NAME`` redirects to ``/NAME``."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_GET(self, request: Request) -> bytes:
        room = (request.args.get(b"room") or [b""])[0].strip().lower()
        if room and ROOM_NAME.fullmatch(room):
            request.redirect(b"/" + room)
            return b""
        if room:
            request.setResponseCode(400)
        page_headers(request)
        return self.body


class MeetingResource(Resource):
    """The meeting site's root: other services mount beside it with ``putChild``."""

    def __init__(self, config: Config, static: Path = STATIC_DIR,
                 node_modules: Path = NODE_MODULES) -> None:
        super().__init__()
        self.config = config
        self.template = (static / "index.html").read_text()
        self.landing = LandingPage((static / "landing.html").read_bytes())
        self.putChild(b"static", static_directory(static))
        self.putChild(b"libs", library_directory(node_modules))

    def settings(self, room: str) -> dict[str, str]:
        """What the page needs to join ``room``; the WebSocket URL comes from its location."""
        return {"room": room, "domain": self.config.general.domain,
                "muc": self.config.conference_domain, "focus": self.config.focus_domain}

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and not request.postpath:
            return self.landing
        if ROOM_NAME.fullmatch(path) and not request.postpath:
            return RoomPage(self.template, self.settings(path.decode()))
        if ROOM_NAME.fullmatch(path.lower()) and not request.postpath:
            # Room names are case-insensitive (the balancer routes them so): one page each.
            query = request.uri.partition(b"?")[2]
            return Redirect(b"/" + path.lower() + (b"?" + query if query else b""))
        return NoResource()
