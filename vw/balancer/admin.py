"""The admin port (loopback): /about/health, /metrics and /stats for anyone who can reach
it; /admin/shards (list) and /admin/shards/NAME/drain or /undrain (POST) behind a bearer
token or basic auth as admin:PASSWORD."""

from __future__ import annotations

import base64
import hmac
import json

from prometheus_client import CollectorRegistry
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from vw.balancer.router import Router
from vw.balancer.stats import Stats, shard_list, snapshot
from vw.common.ops import JSONResource, add_ops_resources

log = Logger()


def authorized(request: Request, token: str, password: str) -> bool:
    """Whether the request carries the configured bearer token or admin password."""
    header = request.getHeader(b"authorization") or b""
    scheme, _, credentials = header.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer" and token:
        return hmac.compare_digest(credentials.strip(), token.encode())
    if scheme == b"basic" and password:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(decoded, b"admin:" + password.encode())
    return False


class AdminResource(Resource):
    """/admin/shards[/NAME/(drain|undrain)]."""

    isLeaf = True

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router

    def render(self, request: Request) -> bytes:
        settings = self.router.settings
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if not authorized(request, settings.admin_token, settings.admin_password):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b'Basic realm="vw-balancer"')
            return b'{"error": "unauthorized"}'
        path = request.postpath
        if path == [b"shards"] and request.method == b"GET":
            return json.dumps(shard_list(self.router)).encode()
        if len(path) == 3 and path[0] == b"shards" and path[2] in (b"drain", b"undrain"):
            if request.method != b"POST":
                request.setResponseCode(405)
                return b'{"error": "use POST"}'
            shard = self.router.shards.shards.get(path[1].decode(errors="replace"))
            if shard is None:
                request.setResponseCode(404)
                return b'{"error": "no such shard"}'
            shard.drain = path[2] == b"drain"
            log.info("shard {name}: drain {drain} (admin API)", name=shard.name,
                     drain=shard.drain)
            return json.dumps({"name": shard.name, "drain": shard.drain}).encode()
        request.setResponseCode(404)
        return b'{"error": "not found"}'


def admin_root(router: Router, stats: Stats, registry: CollectorRegistry) -> Resource:
    root = Resource()
    add_ops_resources(root, [lambda: None if router.health() else "no shard is up"], registry)
    root.putChild(b"stats", JSONResource(lambda: snapshot(stats, router)))
    root.putChild(b"admin", AdminResource(router))
    return root
