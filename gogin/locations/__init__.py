"""Locations: what a path does (publisher, subscriber in one mode, stats, health, metrics,
static files), configured like nginx locations.  Each request reaches exactly one."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import heapq
import hmac
import ipaddress
import json
import logging
import mimetypes
import os
import re
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional, Union

import msgspec

from gogin._core import Opcode, format_http_date
from gogin.auth import PublishRequest, SubscribeRequest
from gogin.brokers import BrokerUnavailable
from gogin.extensions import negotiate_deflate
from gogin.publish import (
    DELETED_TEXT, GAP_TEXT, HttpError, check_channel_id,
    check_subscription, event_field_error, is_text, parse_channel_path, parse_granted,
)
from gogin import metrics, stats, tokens
from gogin.expiry import ExpiryWheel

log = logging.getLogger("gogin.server")

NO_CACHE = [("Cache-Control", "no-cache, no-store, must-revalidate"),
            ("Expires", "Thu, 01 Jan 1970 00:00:01 GMT")]
# Allow: of a 405, as the module sends it (ngx_http_push_stream_module.h): OPTIONS is answered
# (200, no Allow) but not listed
PUBLISHER_METHODS = "GET, POST, PUT, DELETE"
ALLOW_GET = "GET"
WS_VERSIONS = "8, 13"
WS_VERSION_EXPLAIN = "Version not supported. Supported versions: 8, 13"
WS_HEADERS_EXPLAIN = ("Don't have at least one of the mandatory headers: Connection, Upgrade, "
                      "Sec-WebSocket-Key and Sec-WebSocket-Version")
JSONP_CALLBACK = re.compile(r"^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$")   # a JS name path
MAX_PENDING_PUBLISHES = 64     # client messages waiting for the main server, per connection


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
    def __init__(self, server, cfg):
        self.server = server
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
                if not any(ip in net for net in self.server.networks):
                    raise HttpError(403, "Address not allowed.")
            conn.peer_allowed = True
        key = self.server.config.server.api_key
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


class PublisherLocation(Location):
    """POST/PUT publish, GET info, DELETE, and the publisher WebSocket (docs/protocol.md,
    Publisher)."""

    def __init__(self, server, cfg):
        super().__init__(server, cfg)
        # channel ids that passed check_channel_id (its rules depend only on the id and the
        # limits, fixed while the server runs), bounded by CHECKED_IDS_MAX
        self._checked_ids: set = set()

    def body_limit(self, req) -> int:
        # a POST/PUT body is the message; a DELETE body the text of the deleted message
        if req.method in ("POST", "PUT", "DELETE"):
            return self.server.config.limits.max_message_size
        return 0

    def handle(self, conn, req):
        self.check_access(conn, req)
        key = websocket_key(req)
        params = req.query_params()
        ids = params.get("id")
        if key is not None:
            return self._websocket(conn, req, key, ids)
        if req.method == "OPTIONS":     # a CORS preflight (publisher.c: 200, no Allow)
            return self.server.respond(conn, 200, NO_CACHE)
        if req.method not in ("GET", "POST", "PUT", "DELETE"):
            raise HttpError(405, "Method not allowed.", [("Allow", PUBLISHER_METHODS)])
        if not ids:
            raise HttpError(400, "No channel id provided.")
        names = [n for n in ids.split("/") if n]
        if not names:
            raise HttpError(400, "No channel id provided.")
        for n in names:
            check_channel_id(n, self.server.config.limits)
        if len(names) != len(set(names)):
            names = list(dict.fromkeys(names))
        if req.method in ("POST", "PUT"):
            return self._publish(conn, req, names)
        if req.method == "GET":
            return self._info(conn, req, names)
        return self._delete(conn, req, names)

    def _publish(self, conn, req, names):
        body = req.body
        if not body:
            raise HttpError(400, "Empty post requests are not allowed.")
        if len(body) > self.server.config.limits.max_message_size:
            raise HttpError(413, "Message is too large.")
        if self.server.is_events_channel(names):
            raise HttpError(403, "Channel id not authorized for this method.")
        # octet-stream is binary; anything else is text if UTF-8, decided in the core (publish)
        binary = True if _octet_stream(req.get("content-type")) else None
        event_id, event_type = req.get("event-id"), req.get("event-type")
        err = event_field_error("Event-Id", event_id) or \
            event_field_error("Event-Type", event_type)
        if err:
            raise HttpError(400, err)
        if self.server.broker.shared:
            binary = binary or not is_text(body, None)
            fut = self.server.broker.publish(names, body, event_id, event_type, binary)
            fut.add_done_callback(lambda f: self._published(conn, req, f))
            return
        rows = self.server.publish_rows(names, body, event_id, event_type, binary)
        if not self.cfg.channel_info_on_publish:
            return self.server.respond(conn, 200, NO_CACHE)
        fmt = stats.negotiate(req.get("accept"))
        self.server.respond(conn, 200, [("Content-Type", fmt.content_type)] + NO_CACHE,
                            stats.channels_info(self.server, fmt, [ch for ch, _, _ in rows]))

    def _published(self, conn, req, fut):
        """A shared broker numbered and stored the message (or did not: 503); only now 200."""
        server = self.server
        exc = fut.exception()
        if exc is not None:
            if not conn.closed:
                server.error(conn, HttpError(503, "Broker unavailable."))
            return
        results = fut.result()
        if conn.closed:
            return
        if not self.cfg.channel_info_on_publish:
            return server.respond(conn, 200, NO_CACHE)
        rows = []
        for r in results:
            ch = server.hub.channel(r.channel)
            rows.append(ChannelRow(r.channel, r.published, r.stored,
                                   ch.subscribers if ch is not None else 0))
        fmt = stats.negotiate(req.get("accept"))
        server.respond(conn, 200, [("Content-Type", fmt.content_type)] + NO_CACHE,
                       stats.channels_info(server, fmt, rows))

    def _info(self, conn, req, names):
        answer_channels_info(self.server, conn, req, names)

    def _delete(self, conn, req, names):
        if self.server.is_events_channel(names):
            raise HttpError(403, "Channel id not authorized for this method.")
        if self.server.broker.shared:
            task = asyncio.ensure_future(self._delete_shared(conn, req, names))
            self.server.track(task)
            return
        existing = [n for n in names if self.server.hub.channel(n) is not None]
        if not existing:
            raise HttpError(404, "Channel not found.")
        text = req.body or DELETED_TEXT
        for n in existing:
            self.server.delete_channel(n, text)
        self.server.respond(conn, 200, self.server.explain("Channel deleted.") + NO_CACHE)

    async def _delete_shared(self, conn, req, names):
        """Every node deletes it when the broker tells them (this one too)."""
        server = self.server
        text = req.body or DELETED_TEXT
        existed = await broker_answer(server, conn, asyncio.gather(
            *[server.broker.delete(n, text) for n in names]))
        if existed is None:
            return
        if not any(existed) and all(server.hub.channel(n) is None for n in names):
            return server.error(conn, HttpError(404, "Channel not found."))
        server.respond(conn, 200, server.explain("Channel deleted.") + NO_CACHE)

    def _websocket(self, conn, req, key, ids):
        names = None
        if ids:
            names = [n for n in ids.split("/") if n]
            for n in names:
                check_channel_id(n, self.server.config.limits)
            if self.server.is_events_channel(names):
                raise HttpError(403, "Channel id not authorized for this method.")
            for n in names:
                self.server.hub.ensure_channel(n)
        conn.data = ClientState(self)
        if names and self.server.broker.shared:
            # each message goes to the broker first (on_message), like a POST
            conn.data.publish_to = names
            names = None
        # with ?id= the core publishes every message itself (no Python per message)
        conn.upgrade((), None, key=key, publish_to=names,
                     max_message_size=self.server.config.limits.max_message_size)

    def on_message(self, conn, opcode, data):
        """Publisher WebSocket without ?id=: JSON {"id", "text", "event_id", "event_type"}
        objects (or arrays of them), published in order; errors answer {"error", "index"}.
        With ?id= and a shared broker: each message is a message to those channels."""
        targets = getattr(conn.data, "publish_to", None)
        if targets:
            self.server.publish_nowait(targets, data, binary=opcode == Opcode.BINARY,
                                       on_error=lambda e: _send_error(conn, e, 0))
            return
        try:
            items = _decode_publish_items(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            items = None
        if items is not None:
            # fast path: every item is well formed; only the channel rules are left to check
            if not self.server.broker.shared and not self.server.config.limits.events_channel_id:
                # all of it in the core, one call for the frame (no channel_created events
                # to interleave, no broker to hand each item to)
                errors = self.server.hub.publish_items(items, self._checked_ids, self._new_id)
                if errors:
                    for i, err in errors:
                        conn.send(json.dumps({"error": err, "index": i}))
                return
            for i, item in enumerate(items):
                err = self._publish_checked(item.id, item.text, item.event_id, item.event_type,
                                            i, conn)
                if err:
                    conn.send(json.dumps({"error": err, "index": i}))
            return
        # slow path: find and report the bad items one by one
        try:
            doc = json.loads(data)
        except ValueError:
            conn.send(json.dumps({"error": "message is not JSON", "index": 0}))
            return
        items = doc if isinstance(doc, list) else [doc]
        for i, item in enumerate(items):
            err = self._publish_item(item, i, conn)
            if err:
                conn.send(json.dumps({"error": err, "index": i}))

    def _new_id(self, name: str) -> Optional[str]:
        """A channel id not seen yet: why it cannot be published to, or None (remembered)."""
        try:
            check_channel_id(name, self.server.config.limits)
        except HttpError as e:
            return e.explain
        known = self._checked_ids
        if len(known) >= CHECKED_IDS_MAX:
            known.clear()
        known.add(name)
        return None

    def _publish_item(self, item, index=0, conn=None) -> Optional[str]:
        if not isinstance(item, dict):
            return "each message is a JSON object"
        ids = item.get("id")
        text = item.get("text")
        return self._publish_checked(ids, text, item.get("event_id"), item.get("event_type"),
                                     index, conn)

    def _publish_checked(self, ids, text, event_id, event_type, index=0,
                         conn=None) -> Optional[str]:
        names = [ids] if isinstance(ids, str) else ids
        if not names or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return "id must be a channel id or a list of them"
        if not isinstance(text, str) or not text:
            return "text must be a non-empty string"
        err = event_field_error("event_id", event_id) or \
            event_field_error("event_type", event_type)
        if err:
            return err
        known = self._checked_ids
        for n in names:
            if n not in known:
                err = self._new_id(n)
                if err is not None:
                    return err
        if self.server.is_events_channel(names):
            return "Channel id not authorized for this method."
        try:
            payload = text.encode("utf-8")       # text from JSON: UTF-8, a text frame
        except UnicodeEncodeError:               # a lone surrogate escape ("\ud800")
            return "text is not valid Unicode"
        if self.server.broker.shared:
            self.server.broker.publish_nowait(names, payload, event_id, event_type, False,
                                              lambda e: _send_error(conn, e, index))
            return None
        self.server.publish_rows(names, payload, event_id, event_type, False)
        return None



async def broker_answer(server, conn, awaitable):
    """A shared broker's answer to a request, or None once the client got its 503 (Redis did
    not answer) or left meanwhile."""
    try:
        result = await awaitable
    except BrokerUnavailable:
        if not conn.closed:
            server.error(conn, HttpError(503, "Broker unavailable."))
        return None
    return None if conn.closed else result


def _octet_stream(content_type: Optional[str]) -> bool:
    return bool(content_type) and \
        content_type.split(";")[0].strip().lower() == "application/octet-stream"


def _send_error(conn, text: str, index: int) -> None:
    if not conn.closed:
        conn.send(json.dumps({"error": text, "index": index}))


class ChannelRow(msgspec.Struct):
    """A channel's counts as a shared broker reported them (the info answer of a publish)."""
    name: str
    published: int
    stored: int
    subscribers: int


class PublishItem(msgspec.Struct, forbid_unknown_fields=False):
    """One item of the multi-channel publisher WebSocket (docs/protocol.md, Publisher)."""
    id: Union[str, list[str]]
    text: str
    event_id: Optional[str] = None
    event_type: Optional[str] = None


_item_decoder = msgspec.json.Decoder(Union[PublishItem, list[PublishItem]])
CHECKED_IDS_MAX = 100_000


class TokenRefresh(msgspec.Struct, forbid_unknown_fields=True):
    token: str


_refresh_decoder = msgspec.json.Decoder(TokenRefresh)
STREAMING = ("websocket", "eventsource", "stream")     # modes whose connections stay open


def _refresh_message(data) -> Optional[str]:
    """The token of a {"token": "..."} message, None for any other message."""
    if not data.lstrip()[:1] == b"{":
        return None
    try:
        return _refresh_decoder.decode(data).token
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


def _decode_publish_items(data) -> list:
    doc = _item_decoder.decode(data)
    return doc if isinstance(doc, list) else [doc]


class SubscriberLocation(Location):
    """websocket, eventsource, long-polling, polling, streaming subscribers (docs/protocol.md,
    Subscribers);
    channels from the path, the query, or the main server (public auth-front locations)."""

    def __init__(self, server, cfg):
        super().__init__(server, cfg)
        hub = server.hub
        mode = cfg.mode
        # one timing structure for the ends of all of this location's token connections
        self.expiry_wheel = ExpiryWheel(self._token_expired) \
            if cfg.channels == "token" and mode in STREAMING else None
        if mode == "websocket":
            self.format = hub.format("websocket", cfg.template)
            self._deflate_formats = {}
        elif mode == "eventsource":
            self.format = hub.format("eventsource", cfg.template, ping=b": -1\n\n")
        elif mode == "stream":
            # push-stream's streaming pings are the template with id -1 and no text
            probe = hub.format("stream", cfg.template + "\r\n", chunked=True)
            self.stream_header = _chunk(cfg.header_template.encode("utf-8"))
            self.stream_footer = _chunk(cfg.footer_template.encode("utf-8")) + b"0\r\n\r\n"
            self.format = hub.format("stream", cfg.template + "\r\n", chunked=True,
                                     ping=probe.render_bytes(b"", id=-1, channel=""),
                                     footer=self.stream_footer)
        else:   # longpoll, polling: the answer's head is part of the shared bytes
            self._lp_formats = {}
            self._jsonp = None
            self.format = self.longpoll_format(None)
            # the template alone, for answers of several stored messages (_answer_stored):
            # rendered at catch-up time only, it has no subscribers and costs publish nothing
            self._body = hub.format("stream", cfg.template, chunked=False)

    def deflate_format(self, bits: int):
        """The location's format compressed with this window (one per window size in use:
        each message is compressed once per window size, whatever the subscribers)."""
        fmt = self._deflate_formats.get(bits)
        if fmt is None:
            fmt = self.server.hub.format("websocket", self.cfg.template, deflate=bits,
                                         deflate_min=self.cfg.compression_min_size)
            self._deflate_formats[bits] = fmt
        return fmt

    def longpoll_format(self, origin):
        """One long-poll format per CORS origin: the Access-Control headers are in the shared
        answer bytes (origins come from server.allowed_origins: a bounded set)."""
        fmt = self._lp_formats.get(origin)
        if fmt is None:
            hdrs = [("Content-Type", "text/plain; charset=utf-8")] + NO_CACHE + \
                self.server.cors_headers(origin)
            head = ("HTTP/1.1 200 OK\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs))
            fmt = self.server.hub.format("longpoll", self.cfg.template,
                                         head=head.encode("latin-1"))
            self._lp_formats[origin] = fmt
        return fmt

    def handle(self, conn, req):
        self.check_access(conn, req)
        key = None
        # subscriber.c / websocket.c: GET only (HEAD too is 405); OPTIONS, a CORS preflight,
        # is answered 200 without Allow, except on WebSocket locations
        if req.method == "OPTIONS" and self.cfg.mode != "websocket":
            return self.server.respond(conn, 200, NO_CACHE)
        if req.method != "GET":
            raise HttpError(405, "Method not allowed.", [("Allow", ALLOW_GET)])
        if self.cfg.mode == "websocket":
            key = websocket_key(req)
            if key is None:
                raise HttpError(400, WS_HEADERS_EXPLAIN)
        try:
            self._subscribe(conn, req, key)
        except HttpError as e:
            if key is None:
                raise
            self.refuse_websocket(conn, key, e)

    def _subscribe(self, conn, req, key):
        limits = self.server.config.limits
        if self.cfg.channels == "token":
            return self._subscribe_token(conn, req, key)
        if self.cfg.channels == "main_server":
            hint = {r.name: r.backtrack for r in parse_channel_path(self.tail(req.path), limits)} \
                if self.tail(req.path) else {}
            task = asyncio.ensure_future(self._authorize(conn, req, key, hint))
            self.server.track(task)
            return
        if self.cfg.channels == "query":
            tail = req.query_params().get("id", "")
        else:
            tail = self.tail(req.path)
        refs = parse_channel_path(tail, limits)
        self._start(conn, req, key, [r.name for r in refs], ClientState(self),
                    {r.name: r.backtrack for r in refs})

    def _subscribe_token(self, conn, req, key):
        """Signed-token auth (gogin/tokens.py): the token alone decides, no main-server call.
        Channels named in the path must all be granted (403); none named: every granted one."""
        tail = self.tail(req.path)
        asked = parse_channel_path(tail, self.server.config.limits) if tail else []
        verifier = self.server.tokens
        grant = verifier.verify(tokens.token_of(req, verifier.cfg.cookie))
        names, backtrack = grant.select(asked)
        state = TokenState(self, user=grant.user, grant=grant)
        self._start(conn, req, key, names, state, backtrack)
        if self.expiry_wheel is not None and not conn.closed and conn.data is state:
            self._arm_expiry(conn, state)

    def _arm_expiry(self, conn, state):
        ExpiryWheel.remove(state.expiry, conn)
        state.expiry = self.expiry_wheel.add(conn, state,
                                             state.grant.exp + self.server.tokens.cfg.leeway)

    def _token_expired(self, conn, state):
        state.expiry = None
        if conn.closed or conn.data is not state:
            return
        if self.cfg.mode == "websocket":
            conn.close(1008, json.dumps({"http_status": 401, "explain": tokens.EXPIRED}))
        else:
            conn.close()             # a stream ends with its footer

    def _refresh_token(self, conn, state, token: str):
        """{"token": "<jwt>"} on a WebSocket: the new token, checked like the first one, moves
        the connection's end.  It adds no channel (each channel of the connection must still
        be granted) and keeps the user; a refused one leaves the old end in place."""
        try:
            grant = self.server.tokens.verify(token)
            if grant.user != state.user:
                raise HttpError(403, "Token is for another user.")
            granted = {r.name for r in grant.refs}
            if not set(conn.channels) <= granted:
                raise HttpError(403, "Token does not grant every channel of this connection.")
        except HttpError as e:
            conn.send(json.dumps({"token": "refused", "http_status": e.status,
                                  "explain": e.explain}))
            return
        state.grant = grant
        self._arm_expiry(conn, state)
        conn.send(json.dumps({"token": "accepted", "exp": grant.exp}))

    def refuse_websocket(self, conn, key, e: HttpError):
        """Channel errors of a valid WebSocket handshake (docs/protocol.md, Subscribers): upgrade,
        then close
        1008 with the status and explain as JSON - a browser's WebSocket cannot read the
        status of a refused handshake, but it can read a close reason."""
        self.server.cors_done(conn)
        conn.upgrade((), self.format, key=key, ping_interval=0)
        conn.close(1008, json.dumps({"http_status": e.status, "explain": e.explain}))

    async def _authorize(self, conn, req, key, hint):
        headers = {}
        for name in self.server.config.auth.forward_headers:
            value = req.get(name)
            if value is not None:
                headers[name] = value
        sreq = SubscribeRequest(method=req.method, uri=req.target, path=req.path,
                                query=req.query, client=(req.peer or ("", 0))[0],
                                mode=self.cfg.mode, channels=list(hint), headers=headers)
        decision = await self.server.auth.subscribe(sreq)
        if conn.closed:
            return
        try:
            if not decision.allowed:
                if decision.explain:
                    raise HttpError(decision.status, decision.explain)
                hdrs = [("Content-Type", decision.content_type)] if decision.content_type else []
                return self.server.respond(conn, decision.status, hdrs + NO_CACHE, decision.body)
            try:
                refs = parse_granted(decision.channels, self.server.config.limits)
            except HttpError as e:   # a broken grant is a broken answer: no upgrade, as a 502
                return self.server.error(conn, e)
            # backtrack: the main server's .bN, else the one the client asked for
            self._start(conn, req, key, [r.name for r in refs],
                        ClientState(self, user=decision.user, credentials=headers),
                        {r.name: r.backtrack or hint.get(r.name, 0) for r in refs})
        except HttpError as e:
            if key is not None and decision.allowed:
                self.refuse_websocket(conn, key, e)
            else:
                self.server.error(conn, e)

    def _start(self, conn, req, key, names, state, backtrack=None):
        check_subscription(self.server.hub, names, self.server.config.limits)
        waiting = self.server.broker.ready(names)
        if waiting is not None:
            # a shared broker subscribes the channels (and loads their history) first, so that
            # a resume reads a complete history and no live message slips in between
            task = asyncio.ensure_future(self._start_when_ready(waiting, conn, req, key, names,
                                                                state, backtrack))
            self.server.track(task)
            return
        self._started(conn, req, key, names, state, backtrack)

    async def _start_when_ready(self, waiting, conn, req, key, names, state, backtrack):
        try:
            await waiting
        except BrokerUnavailable:
            if not conn.closed:
                e = HttpError(503, "Broker unavailable.")
                if key is not None:
                    self.refuse_websocket(conn, key, e)
                else:
                    self.server.error(conn, e)
            return
        if conn.closed:
            return
        try:
            check_subscription(self.server.hub, names, self.server.config.limits)
            self._started(conn, req, key, names, state, backtrack)
            if isinstance(state, TokenState) and conn.data is state and \
                    self.cfg.mode in STREAMING:
                self._arm_expiry(conn, state)
        except HttpError as e:
            if key is not None:
                self.refuse_websocket(conn, key, e)
            else:
                self.server.error(conn, e)

    def _started(self, conn, req, key, names, state, backtrack):
        self.server.ensure_channels(names)
        # the registry's own name strings: an idle connection holds no copies of its own
        hub = self.server.hub
        names = [hub.channel(n).name for n in names]
        state.channels = tuple(names)
        conn.data = state
        cfg = self.cfg
        mode = cfg.mode
        if mode == "websocket":
            self.server.cors_done(conn)
            deflate = negotiate_deflate(req.get("sec-websocket-extensions")) \
                if cfg.compression else None
            if deflate is None:
                fmt, hdrs = self.format, ()
            else:
                fmt = self.deflate_format(deflate.server_bits)
                hdrs = [("Sec-WebSocket-Extensions", deflate.response)]
            conn.upgrade(names, fmt, key=key, headers=hdrs, ping_interval=cfg.ping_interval,
                         ttl=cfg.ttl, max_message_size=cfg.max_message_size or 0,
                         deflate=deflate is not None)
        elif mode == "eventsource":
            head = self.server.stream_head(conn, 200, [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Connection", "close")] + NO_CACHE)
            conn.start_stream(head + b": \n\n", names, self.format,
                              ping_interval=cfg.ping_interval, ttl=cfg.ttl)
        elif mode == "stream":
            head = self.server.stream_head(conn, 200, [
                ("Content-Type", cfg.content_type),       # text/html for a forever-iframe
                ("Transfer-Encoding", "chunked")] + NO_CACHE)
            conn.start_stream(head + self.stream_header, names, self.format,
                              ping_interval=cfg.ping_interval, ttl=cfg.ttl,
                              footer=self.stream_footer)
        else:   # longpoll, polling: answered at once when something is stored after the
            # position, else a long-poll waits for the next live message and a poll is 304
            state.channels = ()
            pos = self.position(req, names)
            if not self._answer_stored(conn, req, names, pos, backtrack or {}):
                if mode == "longpoll":
                    self._hold(conn, req, names, pos)
                else:
                    # nothing newer than the position: 304 that gives it back (subscriber.c)
                    self.server.respond(conn, 304, NO_CACHE + position_headers(req))
            # one answer each: no client events for them (a subscribed event per request,
            # with no matching unsubscribed one, would not balance)
            self.server.note_subscribed(names, events=False)
            return
        self._catch_up(conn, req, names, backtrack or {})
        self.server.note_subscribed(names)

    def position(self, req, names) -> Optional[dict]:
        """The client's position (resume_position), with a Last-Event-ID turned into the
        (time, tag) of that event's message: tags count per server, so that pair places the
        client in every channel of the request, not only in the one that knows the event id.
        An event id that none of them stores stays as it is (everything stored, gap signal)."""
        pos = resume_position(req)
        if pos is not None and "event_id" in pos:
            hub = self.server.hub
            found = [p for p in (hub.event_position(n, pos["event_id"]) for n in names) if p]
            if found:
                t, tag = max(found)
                return {"since_time": t, "since_tag": tag}
        return pos

    def _answer_stored(self, conn, req, names, pos, backtrack) -> bool:
        """Polling and long-polling: every stored message after the position, of every channel,
        in one answer, as the module's polling handler collects them (subscriber.c,
        polling_handler + send_old_messages); Last-Modified / Etag are those of the newest
        channel, so the next request resumes after all of them. False: nothing to send.

        The module writes channel after channel; here the channels' messages are merged by
        (time, tag), the server's publish order, so the last message of the answer is the
        newest one too: pushstream.js with JSONP resumes from that message's time and tag."""
        callback = jsonp_callback(req)       # a bad callback name is refused, news or not
        hub = self.server.hub
        runs, newest = [], None
        for name in names:
            where = pos if pos is not None else \
                ({"last": backtrack[name]} if backtrack.get(name) else None)
            if where is None:
                continue
            msgs = hub.render_stored(name, self._body, gap_text=GAP_TEXT, **where)
            if msgs:
                runs.append(msgs)
                ch = hub.channel(name)
                newest = max(newest or (0, -1), (ch.last_time, ch.last_tag))
        if not runs:
            return False
        bodies = [m[2] for m in heapq.merge(*runs, key=lambda m: (m[0], m[1]))]
        # the answer's position: utils.c, add_polling_headers
        hdrs = NO_CACHE + [("Last-Modified", format_http_date(newest[0])),
                           ("Etag", f"W/{newest[1]}")]
        if callback is None:
            ctype, body = "text/plain; charset=utf-8", b"".join(bodies)
        else:
            # utils.h: CALLBACK_INIT_CHUNK "([", CALLBACK_MID_CHUNK "," between messages,
            # CALLBACK_END_CHUNK "]);" (older versions of the module ended with a CRLF)
            ctype = "application/javascript; charset=utf-8"
            body = callback.encode() + b"([" + b",".join(bodies) + b"]);"
        self.server.respond(conn, 200, [("Content-Type", ctype)] + hdrs, body)
        return True

    def _hold(self, conn, req, names, pos):
        """Long-polling with nothing stored after the position: the next live message of the
        channels answers. JSONP (?callback=): a chunked javascript answer whose head goes out
        now, the message as a chunk of it, then `]);` (utils.h, CALLBACK_END_CHUNK)."""
        cfg = self.cfg
        origin = self.server.cors_done(conn)
        cors = self.server.cors_headers(origin)
        timeout = cfg.ttl or 30.0
        state = conn.data
        if isinstance(state, TokenState):       # a held request never outlives its token
            timeout = max(0.001, min(timeout, self.server.tokens.remaining(state.grant)))
        callback = jsonp_callback(req)
        if callback is not None:
            head = self.server.head(200, [("Content-Type", "application/javascript; charset=utf-8"),
                                          ("Transfer-Encoding", "chunked")] + NO_CACHE + cors)
            end = _chunk(b"]);") + b"0\r\n\r\n"
            conn.hold(names, self.jsonp_format(), timeout, end,
                      head=head + _chunk(callback.encode() + b"(["), footer=end)
            return
        fmt = self.longpoll_format(origin)
        if cfg.timeout_with_body:
            # push-stream's timeout message (id -3), dated at the client's position so that
            # resuming from it neither skips nor repeats anything
            pos = pos or {}
            ch = self.server.hub.channel(names[0])
            t = pos.get("since_time", ch.last_time if ch else int(time.time()))
            tag = pos.get("since_tag", ch.last_tag if ch else 0)
            timeout_answer = fmt.render_bytes(b"", id=-3, channel=names[0], time=t, tag=tag)
        else:
            timeout_answer = self.server.head(304, NO_CACHE + cors, content_length=0)
        conn.hold(names, fmt, timeout, timeout_answer)

    def jsonp_format(self):
        if self._jsonp is None:
            self._jsonp = self.server.hub.format("stream", self.cfg.template, chunked=True)
        return self._jsonp

    def _catch_up(self, conn, req, names, backtrack):
        """Stored messages first, then live ones (docs/protocol.md, Message storage), one channel
        after the other:
        the replay happens in the same call as the subscription, so nothing published in
        between is missed or doubled."""
        pos = self.position(req, names)
        for name in names:
            if pos is not None:
                conn.replay(name, gap_text=GAP_TEXT, **pos)
            elif backtrack.get(name):
                conn.replay(name, last=backtrack[name], gap_text=GAP_TEXT)

    # -- client messages (docs/protocol.md: Subscribers, Main-server callbacks) -------------

    def on_message(self, conn, opcode, data):
        state = conn.data
        if isinstance(state, TokenState) and opcode == Opcode.TEXT:
            token = _refresh_message(data)
            if token is not None:
                return self._refresh_token(conn, state, token)
        policy = self.cfg.client_publish
        if policy == "off":
            conn.close(1008, "client messages are not accepted on this location")
            return
        binary = opcode == Opcode.BINARY
        if policy == "open":
            self.server.publish_nowait(conn.channels, data, binary=binary)
            return
        if state.pending is None:
            state.pending = deque()
        if len(state.pending) >= MAX_PENDING_PUBLISHES:
            conn.close(1008, "too many messages waiting for authorization")
            return
        state.pending.append((data, binary))
        if not state.busy:
            state.busy = True
            self.server.track(asyncio.ensure_future(self._drain(conn, state)))

    async def _drain(self, conn, state):
        """One callback at a time per connection, so a client's messages keep their order."""
        try:
            while state.pending and not conn.closed:
                data, binary = state.pending.popleft()
                channels = conn.channels
                decision = await self.server.auth.publish(PublishRequest(
                    user=state.user, channels=channels, payload=data, binary=binary,
                    headers=state.credentials or {}, client=(conn.peer or ("", 0))[0]))
                if decision.action == "publish":
                    if decision.payload is None:
                        payload, as_binary = data, binary
                    else:     # a replacement body: binary only if it is not UTF-8
                        payload, as_binary = decision.payload, None
                    targets = channels if decision.channels is None else \
                        self._valid_targets(decision.channels)
                    if not targets or self.server.is_events_channel(targets):
                        continue
                    self.server.publish_nowait(targets, payload, binary=as_binary)
                elif decision.action == "reject" and not conn.closed:
                    conn.send(json.dumps({"error": "publish rejected",
                                          "status": decision.status}))
        finally:
            state.busy = False


    def _valid_targets(self, names):
        """Channels named by the main server's answer (X-Gogin-Channels), checked like any id."""
        out = []
        for n in names:
            try:
                check_channel_id(n, self.server.config.limits)
            except HttpError:
                log.warning("publish callback named an invalid channel %r; skipped", n)
                continue
            out.append(n)
        return out


def answer_channels_info(server, conn, req, names):
    """The channels of `names` that exist, in request order, in the Accept header's format;
    404 when none does (module.c, send_response_channels_info_detailed)."""
    hub = server.hub
    channels = [ch for ch in map(hub.channel, names) if ch is not None]
    if not channels:
        raise HttpError(404, "Channel not found.")
    fmt = stats.negotiate(req.get("accept"))
    server.respond(conn, 200, [("Content-Type", fmt.content_type)] + NO_CACHE,
                   stats.channels_info(server, fmt, channels))


class StatsLocation(Location):
    """push-stream's statistics location (publisher.c, channels_statistics_handler)."""

    def handle(self, conn, req):
        self.check_access(conn, req)
        if req.method != "GET":       # HEAD and OPTIONS too, as in the module
            raise HttpError(405, "Method not allowed.", [("Allow", ALLOW_GET)])
        ids = stats.requested_ids(req.query_params().get("id") or "")
        fmt = stats.negotiate(req.get("accept"))
        hdrs = [("Content-Type", fmt.content_type)] + NO_CACHE
        if not ids:
            return self.server.respond(conn, 200, hdrs, stats.summarized(self.server, fmt))
        if self.server.broker.shared and not any("*" in n or n == "ALL" for n in ids):
            for name in ids:
                if len(name) > self.server.config.limits.max_channel_id_length:
                    raise HttpError(400, "Channel id is too large.")
            task = asyncio.ensure_future(self._cluster_info(conn, ids, fmt, hdrs))
            self.server.track(task)
            return
        # the first id that is a pattern decides for the whole request, as in the module
        for name in ids:
            if len(name) > self.server.config.limits.max_channel_id_length:
                raise HttpError(400, "Channel id is too large.")
            if "*" in name:
                prefix = name[:name.index("*")]
                return self.server.respond(conn, 200, hdrs,
                                           stats.all_channels(self.server, fmt, prefix))
            if name == "ALL":
                return self.server.respond(conn, 200, hdrs, stats.all_channels(self.server, fmt))
        answer_channels_info(self.server, conn, req, ids)


    async def _cluster_info(self, conn, ids, fmt, hdrs):
        """A shared broker: the channels' counts as Redis has them, subscribers of every live
        node (as of their last heartbeat; this node's as of now)."""
        server = self.server
        found = await broker_answer(server, conn,
                                    server.broker.cluster_channels(list(dict.fromkeys(ids))))
        if found is None:
            return
        rows = [ChannelRow(n, *found[n]) for n in dict.fromkeys(ids) if n in found]
        if not rows:
            return server.error(conn, HttpError(404, "Channel not found."))
        server.respond(conn, 200, hdrs, stats.channels_info(server, fmt, rows))


class HealthLocation(Location):
    """200 "ok"; with a shared broker that is not fully connected, 503 "degraded" (publishes
    fail and new channels cannot start; connected subscribers stay).  With NATS ingest, a
    "nats: <state>" line; 503 "starting" while its start-up replay runs."""

    def handle(self, conn, req):
        self.check_access(conn, req)
        hdrs = [("Content-Type", "text/plain")] + NO_CACHE
        worker = getattr(self.server, "worker", None)
        if worker is not None:                  # which of the --workers answered
            hdrs.append(("X-Gogin-Worker", str(worker)))
        st = self.server.broker.state()
        ingest = self.server.ingest
        if st["state"] == "ok" and ingest is None:
            return self.server.respond(conn, 200, hdrs, b"ok\n")
        head, lines, status = "ok", [], 200
        if st["state"] != "ok":
            head, status = "degraded", 503
            lines.append(f"broker: {st['broker']} {st['state']}")
            hdrs += self.server.explain("Broker unavailable.")
        if ingest is not None:        # "nats: ok" / "disconnected" / "replaying" (503) / ...
            ready, line = ingest.health()
            if not ready:
                head, status = ("starting" if head == "ok" else head), 503
            lines.append(line)
        self.server.respond(conn, status, hdrs, "\n".join([head] + lines).encode() + b"\n")


class MetricsLocation(Location):
    """Prometheus text format (gogin/metrics.py): the core's counters read at scrape time."""

    def __init__(self, server, cfg):
        super().__init__(server, cfg)
        self.registry = metrics.registry_for(server)

    def handle(self, conn, req):
        self.check_access(conn, req)
        self.server.respond(conn, 200, [("Content-Type", metrics.CONTENT_TYPE)] + NO_CACHE,
                            metrics.exposition(self.registry))


class StaticLocation(Location):
    """Files under `root` (the demo page, gogin.js).  GET/HEAD only; no directory listing."""

    def handle(self, conn, req):
        self.check_access(conn, req)
        if req.method not in ("GET", "HEAD"):
            raise HttpError(405, "Method not allowed.", [("Allow", "GET, HEAD")])
        root = os.path.realpath(self.cfg.root)
        rel = self.tail(req.path)
        if not rel:     # a directory index (.htm too: the demo page is source, not built)
            rel = next((n for n in ("index.html", "index.htm")
                        if os.path.isfile(os.path.join(root, n))), "index.html")
        full = os.path.realpath(os.path.join(root, rel))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            raise HttpError(404, "Not found.")
        with open(full, "rb") as fh:
            body = fh.read()
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        self.server.respond(conn, 200, [("Content-Type", ctype), ("Cache-Control", "no-cache")],
                            body)


def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (nothing for empty data: an empty chunk would end the stream)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


ROLES = {"publisher": PublisherLocation, "subscriber": SubscriberLocation,
         "stats": StatsLocation, "health": HealthLocation, "metrics": MetricsLocation,
         "static": StaticLocation}


def build(server, cfgs) -> list[Location]:
    """Locations sorted by path length, longest first: the most specific prefix wins."""
    locs = [ROLES[c.role](server, c) for c in cfgs]
    return sorted(locs, key=lambda l: len(l.path), reverse=True)
