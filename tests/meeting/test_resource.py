"""The meeting page's resource tree, rendered in memory: routing, config, assets, refusals."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote_to_bytes

import pytest
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from vw.config import Config, GeneralConfig
from vw.meeting.resource import STATIC_DIR, MeetingResource


@dataclass
class Response:
    code: int
    body: bytes
    headers: dict[bytes, bytes]
    location: bytes | None


def request_for(uri: bytes, method: bytes = b"GET") -> DummyRequest:
    """A request split as twisted.web.server does: segments are unquoted after splitting."""
    path, _, query = uri.partition(b"?")
    request = DummyRequest([unquote_to_bytes(s) for s in path[1:].split(b"/")])
    request.method = method
    request.uri = uri
    request.args = parse_qs(query, keep_blank_values=True)
    return request


def get(root: Resource, uri: bytes, method: bytes = b"GET") -> Response:
    request = request_for(uri, method)
    resource = getChildForRequest(root, request)
    result = resource.render(request)
    body = b"".join(request.written) if result is NOT_DONE_YET else result
    headers = {name.lower(): values[-1]
               for name, values in request.responseHeaders.getAllRawHeaders()}
    return Response(request.responseCode or 200, body, headers, headers.get(b"location"))


@pytest.fixture
def node_modules(tmp_path: Path) -> Path:
    """Stand-ins for the installed npm packages."""
    root = tmp_path / "node_modules"
    (root / "@lyno" / "lib-jitsi-meet").mkdir(parents=True)
    (root / "@lyno" / "lib-jitsi-meet" / "lib-jitsi-meet.min.js").write_text("/* ljm */")
    (root / "jquery" / "dist").mkdir(parents=True)
    (root / "jquery" / "dist" / "jquery.min.js").write_text("/* jquery */")
    return root


@pytest.fixture
def site(node_modules: Path) -> MeetingResource:
    config = Config(general=GeneralConfig(domain="meet.example.org"))
    root = MeetingResource(config, node_modules=node_modules)
    root.putChild(b"xmpp-websocket", Resource())
    return root


def injected(body: bytes) -> dict:
    found = re.search(rb'<script id="vw-config" type="application/json">(.*?)</script>', body)
    assert found is not None
    return json.loads(found.group(1))


@pytest.mark.parametrize("room", [b"testroom", b"team-42", b"a.b_c-d", b"7"])
def test_room_page_carries_the_xmpp_settings(site: MeetingResource, room: bytes) -> None:
    response = get(site, b"/" + room)
    assert response.code == 200
    assert response.headers[b"content-type"] == b"text/html; charset=utf-8"
    assert injected(response.body) == {
        "room": room.decode(), "domain": "meet.example.org",
        "muc": "conference.meet.example.org", "focus": "focus.meet.example.org"}
    for script in (b"/libs/jquery.min.js", b"/libs/lib-jitsi-meet.min.js", b"/static/app.js"):
        assert b'src="' + script + b'"' in response.body
    assert response.body.index(b"jquery.min.js") < response.body.index(b"lib-jitsi-meet.min.js")


def test_query_string_does_not_change_the_page(site: MeetingResource) -> None:
    response = get(site, b"/testroom?jwt=</script><script>alert(1)</script>")
    assert response.code == 200
    assert b"alert" not in response.body
    assert injected(response.body)["room"] == "testroom"


def test_settings_are_escaped_for_a_script_element(node_modules: Path) -> None:
    config = Config(general=GeneralConfig(domain="x</script><b>"))
    body = get(MeetingResource(config, node_modules=node_modules), b"/room").body
    assert b"</script><b>" not in body
    assert injected(body)["domain"] == "x</script><b>"


@pytest.mark.parametrize("path", [
    b"/room!", b"/room%20name", b"/-room", b"/.room", b"/..", b"/.",
    b"/" + b"a" * 129, b"/room/extra", b"/room/", b"/static", b"/static/", b"/libs/",
    b"/static/index.html", b"/static/landing.html", b"/static/nothing.js",
    b"/static/app.js/x", b"/libs/jquery.js"])
def test_other_paths_are_not_found(site: MeetingResource, path: bytes) -> None:
    response = get(site, path)
    assert response.code == 404
    assert b"__VW_CONFIG__" not in response.body


@pytest.mark.parametrize("path", [
    b"/static/../resource.py", b"/static/..%2Fresource.py", b"/static/%2E%2E%2Fresource.py",
    b"/static/..%2F..%2F..%2Fsetup.cfg", b"/libs/..%2Fjquery%2Fdist%2Fjquery.min.js",
    b"/static/%2Fetc%2Fpasswd", b"/libs/%2Fetc%2Fpasswd", b"/..%2Fsetup.cfg",
    b"/%2E%2E/%2E%2E/setup.cfg"])
def test_path_traversal_is_refused(site: MeetingResource, path: bytes) -> None:
    response = get(site, path)
    assert response.code == 404
    assert b"import" not in response.body and b"[metadata]" not in response.body


def test_a_room_name_in_capitals_redirects_to_lower_case(site: MeetingResource) -> None:
    response = get(site, b"/Team-Room?jwt=abc")
    assert response.code == 302 and response.location == b"/team-room?jwt=abc"
    assert get(site, b"/TestRoom").location == b"/testroom"


def test_landing_page_and_room_redirect(site: MeetingResource) -> None:
    landing = get(site, b"/")
    assert landing.code == 200 and b"<form" in landing.body
    assert landing.headers[b"content-type"] == b"text/html; charset=utf-8"
    redirect = get(site, b"/?room=+Team-Standup+")
    assert redirect.code == 302 and redirect.location == b"/team-standup"
    refused = get(site, b"/?room=no%20spaces")
    assert refused.code == 400 and refused.location is None and b"<form" in refused.body


def test_pages_answer_get_only(site: MeetingResource) -> None:
    """twisted.web answers UnsupportedMethod with 405."""
    assert get(site, b"/testroom", b"HEAD").code == 200
    for path in (b"/testroom", b"/"):
        with pytest.raises(UnsupportedMethod):
            get(site, path, b"POST")


@pytest.mark.parametrize("path, content_type", [
    (b"/static/app.js", b"text/javascript; charset=utf-8"),
    (b"/static/style.css", b"text/css; charset=utf-8")])
def test_static_files(site: MeetingResource, path: bytes, content_type: bytes) -> None:
    response = get(site, path)
    assert response.code == 200
    assert response.headers[b"content-type"] == content_type
    assert response.headers[b"cache-control"] == b"no-cache"
    assert response.headers[b"x-content-type-options"] == b"nosniff"
    assert response.body == (STATIC_DIR / path.decode().split("/")[-1]).read_bytes()


@pytest.mark.parametrize("name, body", [(b"lib-jitsi-meet.min.js", b"/* ljm */"),
                                        (b"jquery.min.js", b"/* jquery */")])
def test_libraries_come_from_node_modules(site: MeetingResource, name: bytes,
                                          body: bytes) -> None:
    response = get(site, b"/libs/" + name)
    assert response.code == 200 and response.body == body
    assert response.headers[b"content-type"] == b"text/javascript; charset=utf-8"
    assert response.headers[b"cache-control"].startswith(b"public, max-age=")


def test_missing_libraries_say_how_to_install(tmp_path: Path) -> None:
    root = MeetingResource(Config(), node_modules=tmp_path / "absent")
    response = get(root, b"/libs/lib-jitsi-meet.min.js")
    assert response.code == 503
    assert response.headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert b"npm ci --prefix vw/meeting" in response.body
    assert b"cache-control" not in response.headers


def test_mounted_children_come_first(site: MeetingResource) -> None:
    """Other services' paths are not rooms; the fallback serves the rest."""
    assert site.getChildWithDefault(b"xmpp-websocket", request_for(b"/xmpp-websocket")) \
        is site.children[b"xmpp-websocket"]
    assert get(site, b"/testroom").code == 200
