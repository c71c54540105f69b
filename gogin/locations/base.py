"""What every location shares: the context it is given instead of the Server, the base class
(path matching, the access check), the state a connection carries (conn.data), and the parsing
of request fields that more than one location reads (WebSocket handshake, resume position,
JSONP callback)."""

from __future__ import annotations

import base64
import email.utils
import hmac
import ipaddress
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

import msgspec

from gogin import stats
from gogin.brokers import BrokerUnavailable
from gogin.locations.http import NO_CACHE, Answers
from gogin.publish import HttpError

ALLOW_GET = "GET"
WS_VERSIONS = "8, 13"
WS_VERSION_EXPLAIN = "Version not supported. Supported versions: 8, 13"
WS_HEADERS_EXPLAIN = ("Don't have at least one of the mandatory headers: Connection, Upgrade, "
                      "Sec-WebSocket-Key and Sec-WebSocket-Version")
JSONP_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")   # a JS name path


@dataclass(slots=True, eq=False)
class LocationContext:
    """What a location may use of its node, instead of the whole Server: one per server,
    shared by all its locations.  The data plane (hub), the decisions (auth, tokens, the
    allowed networks and the configuration), the shared broker or the memory one, the channel
    operations (gogin/channels.py) and the HTTP answers (gogin/locations/http.py).
    stats.py and metrics.py read it as they read a node: hub, broker, started, tokens,
    ingest, count_wildcard_channels(), auth_calls()."""
    config: Any                           # gogin.config.Config
    hub: Any                              # gogin._core.Hub
    broker: Any                           # gogin.brokers.base.Broker
    auth: Any                             # subscribe()/publish() coroutines (gogin/auth.py)
    tokens: Any                           # gogin.tokens.TokenVerifier, None without [auth.token]
    networks: list                        # server.allowed_networks as ip_network objects
    http: Answers
    channels: Any                         # gogin.channels.Channels
    ingest: Any = None                    # gogin.ingest.Ingest with [nats] url
    worker: Optional[int] = None          # its number under --workers N (set by the cli)
    started: float = field(default_factory=time.monotonic)   # set again by Server.start
    # the locations' own tasks (main-server calls, broker waits): cancelled by Server.stop
    tasks: set = field(default_factory=set)

    def track(self, task) -> None:
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def count_wildcard_channels(self) -> int:
        return self.channels.count_wildcard()

    def auth_calls(self) -> int:
        return getattr(self.auth, "calls", 0)


@dataclass(slots=True)
class ClientState:
    """conn.data of a subscriber: who it is and what it sent that still waits for a decision.
    Kept small (slots, containers made on first use): there is one per idle connection."""
    location: "Location"
    user: Optional[str] = None
    credentials: Optional[dict] = None
    pending: Optional[deque] = None
    busy: bool = False
    channels: tuple = ()                  # subscribed at the start (events, sweeper)
    publish_to: Optional[list] = None     # publisher WebSocket ?id= over a shared broker


@dataclass(slots=True)
class TokenState(ClientState):
    """conn.data on a `channels = "token"` location: its token's grant, and the bucket of the
    location's ExpiryWheel it sits in until its token ends (left at close; no work per
    message)."""
    grant: Optional[object] = None        # gogin.tokens.Grant
    expiry: Optional[dict] = None         # an ExpiryWheel bucket


class Location:
    """One configured path (nginx-like).  handle() answers a request head; on_message() a
    WebSocket message of a connection it upgraded (conn.data.location)."""

    def __init__(self, ctx: LocationContext, cfg):
        self.ctx = ctx
        self.http = ctx.http              # the answers, one attribute away (every request)
        self.cfg = cfg
        self.path = cfg.path

    def matches(self, path: str) -> bool:
        p = self.path
        if p.endswith("/"):
            return path.startswith(p) or path == p[:-1]
        return path == p or path.startswith(p + "/")

    def tail(self, path: str) -> str:
        return path[len(self.path):].lstrip("/") if len(path) > len(self.path) else ""

    def handle(self, conn, req):
        raise NotImplementedError

    def on_message(self, conn, opcode, data):
        conn.close(1003, "this location takes no messages")

    def body_limit(self, req) -> int:
        """The most request-body bytes this location reads for req (0: none at all)."""
        return 0

    # -- shared checks -------------------------------------------------------------------------

    def check_access(self, conn, req):
        """Non-public locations answer the allowed networks and, if set, the API key holders."""
        if self.cfg.public:
            return
        if not conn.peer_allowed:       # decided once per connection: its peer never changes
            peer = conn.peer
            if peer is not None:
                ip = ipaddress.ip_address(peer[0].split("%")[0])
                if getattr(ip, "ipv4_mapped", None):
                    ip = ip.ipv4_mapped
                if not any(ip in net for net in self.ctx.networks):
                    raise HttpError(403, "Address not allowed.")
            conn.peer_allowed = True
        key = self.ctx.config.server.api_key
        if key:
            given = req.get("x-api-key") or ""
            auth = req.get("authorization") or ""
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), key.encode()):
                raise HttpError(403, "Invalid API key.")


def resume_position(req) -> Optional[dict]:
    """Where a reconnecting client left off: Last-Event-ID (header or ?last_event_id=), or
    time/tag (?time=&tag=, or If-Modified-Since/If-None-Match as long-polling sends them)."""
    params = req.query_params()
    eid = req.get("last-event-id") or params.get("last_event_id")
    if eid:
        return {"event_id": eid}
    since = _since_time(params.get("time") or req.get("if-modified-since") or "")
    if since is None:
        return None
    return {"since_time": since, "since_tag": _since_tag(req)}


def _since_time(t: str) -> Optional[int]:
    """A position's time: Unix seconds or an HTTP date.  Anything else is no time, as the
    module's ngx_http_parse_time failing (-1: utils.c, get_last_received_message_values):
    pushstream.js's first long-poll sends `If-Modified-Since: null`."""
    if t.isdigit():
        return int(t)
    try:
        return int(email.utils.parsedate_to_datetime(t).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _since_tag(req) -> int:
    """A position's tag (?tag= or If-None-Match, an Etag as sent: W/ and quotes stripped); -1
    when there is none."""
    tag = req.query_params().get("tag") or req.get("if-none-match") or ""
    tag = tag.strip().removeprefix("W/").strip('"')
    return int(tag) if tag.lstrip("-").isdigit() else -1


def position_headers(req) -> list:
    """The client's position given back, as push-stream's polling 304 does (subscriber.c,
    polling_handler + utils.c add_polling_headers): its time as Last-Modified when after the
    epoch, its tag as Etag W/<tag>; neither when the request had none."""
    hdrs = []
    since = _since_time(req.query_params().get("time") or req.get("if-modified-since") or "")
    if since is not None and since > 0:
        hdrs.append(("Last-Modified", email.utils.formatdate(since, usegmt=True)))
    tag = _since_tag(req)
    if tag >= 0:
        hdrs.append(("Etag", f"W/{tag}"))
    return hdrs


def jsonp_callback(req) -> Optional[str]:
    """The ?callback= of a long-poll or poll (a JavaScript name path), None without one;
    raises HttpError for anything else."""
    callback = req.query_params().get("callback")
    if callback is not None and not JSONP_CALLBACK.match(callback):
        raise HttpError(400, "Invalid callback name.")
    return callback


def websocket_key(req) -> Optional[str]:
    """The client's key if this is a valid WebSocket handshake (RFC 6455 §4.2.1), None if it is
    no upgrade at all; raises HttpError for a broken one."""
    upgrade = (req.get("upgrade") or "").lower()
    connection = [t.strip().lower() for t in (req.get("connection") or "").split(",")]
    key = req.get("sec-websocket-key")
    version = req.get("sec-websocket-version")
    if upgrade != "websocket" and "upgrade" not in connection and key is None:
        return None
    if upgrade != "websocket" or "upgrade" not in connection or not key or not version:
        raise HttpError(400, WS_HEADERS_EXPLAIN)
    if version.strip() not in ("13", "8"):
        # websocket.c: both versions it speaks, in its words (RFC 6455 §4.4 lets a server list
        # every version it supports)
        raise HttpError(400, WS_VERSION_EXPLAIN, [("Sec-WebSocket-Version", WS_VERSIONS)])
    if req.method != "GET":
        raise HttpError(405, "WebSocket handshakes use GET.", [("Allow", "GET")])
    try:
        if len(base64.b64decode(key.strip(), validate=True)) != 16:
            raise ValueError
    except ValueError:
        raise HttpError(400, "Invalid Sec-WebSocket-Key.") from None
    return key.strip()



async def broker_answer(ctx, conn, awaitable):
    """A shared broker's answer to a request, or None once the client got its 503 (Redis did
    not answer) or left meanwhile."""
    try:
        result = await awaitable
    except BrokerUnavailable:
        if not conn.closed:
            ctx.http.error(conn, HttpError(503, "Broker unavailable."))
        return None
    return None if conn.closed else result


class ChannelRow(msgspec.Struct):
    """A channel's counts as a shared broker reported them (the info answer of a publish)."""
    name: str
    published: int
    stored: int
    subscribers: int


def answer_channels_info(ctx, conn, req, names):
    """The channels of `names` that exist, in request order, in the Accept header's format;
    404 when none does (module.c, send_response_channels_info_detailed)."""
    hub = ctx.hub
    channels = [ch for ch in map(hub.channel, names) if ch is not None]
    if not channels:
        raise HttpError(404, "Channel not found.")
    fmt = stats.negotiate(req.get("accept"))
    ctx.http.respond(conn, 200, [("Content-Type", fmt.content_type)] + NO_CACHE,
                     stats.channels_info(ctx, fmt, channels))

