"""The auth front: the main server decides who subscribes to what and who may publish.

Two backends with one interface (docs/protocol.md, Main-server callbacks):
- MainServerAuth: HTTP callbacks with a pooled aiohttp client session, failing closed (503)
  on a timeout or a connection error, with an optional decision cache;
- CallableAuth: Python coroutines, for applications that embed gogin (docs/embedding.md).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional
from urllib.parse import unquote, unquote_plus, urlsplit

from gogin.publish import GRANT_EXPLAIN

log = logging.getLogger("gogin.auth")


@dataclass
class SubscribeRequest:
    """What gogin knows of a client asking to subscribe on a public location."""
    method: str
    uri: str
    path: str
    query: str
    client: str                       # client IP address
    mode: str                         # websocket | eventsource | longpoll | polling | stream
    channels: list[str]               # channels named in the URL, if any (a hint)
    headers: dict[str, str]           # the forwarded credential headers (lower-case names)


@dataclass
class Decision:
    allowed: bool
    channels: list[str] = field(default_factory=list)
    user: Optional[str] = None
    status: int = 200                 # on denial: the status the client gets
    body: bytes = b""                 # on denial: the body the client gets
    content_type: Optional[str] = None
    explain: Optional[str] = None     # on denial by gogin itself (503 ...)

    @classmethod
    def allow(cls, channels, user=None) -> "Decision":
        return cls(True, list(channels), None if user is None else str(user))

    @classmethod
    def deny(cls, status=403, body=b"", content_type=None, explain=None) -> "Decision":
        if isinstance(body, str):
            body = body.encode("utf-8")
        return cls(False, status=status, body=body, content_type=content_type, explain=explain)


@dataclass
class PublishRequest:
    """A message a client sent over its connection, waiting for the main server's word."""
    user: Optional[str]
    channels: list[str]               # the channels of the connection
    payload: bytes
    binary: bool
    headers: dict[str, str]           # the credentials the client subscribed with
    client: str


@dataclass
class PublishDecision:
    action: str                       # "publish" | "drop" | "reject"
    payload: Optional[bytes] = None   # replacement body, None = as sent
    channels: Optional[list[str]] = None   # target channels, None = the connection's
    status: int = 0                   # on reject: the main server's status

    @classmethod
    def as_is(cls, channels=None):
        return cls("publish", None, channels)

    @classmethod
    def replace(cls, payload, channels=None):
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        return cls("publish", payload, channels)

    @classmethod
    def drop(cls):
        return cls("drop")

    @classmethod
    def reject(cls, status=403):
        return cls("reject", status=status)


class DecisionCache:
    """LRU of subscribe decisions keyed by the credentials, each kept `ttl` seconds."""

    def __init__(self, ttl: float, size: int):
        self.ttl = ttl
        self.size = size
        self._items: collections.OrderedDict = collections.OrderedDict()

    def get(self, key):
        item = self._items.get(key)
        if item is None:
            return None
        expires, decision = item
        if expires < time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return decision

    def put(self, key, decision):
        self._items[key] = (time.monotonic() + self.ttl, decision)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


def channels_from_accel_redirect(value: str) -> list[str]:
    """X-Accel-Redirect: '/ws?channels=a/b' or '/sub/a/b' (the path's tail names them).

    The value is split on '/' first and each piece percent-decoded after, so an encoded
    separator ('/sub/a%2Fb') stays inside its id - which then fails validation as one id
    instead of granting 'b'."""
    parts = urlsplit(value)
    fields = {}
    for pair in parts.query.split("&"):
        key, _, raw = pair.partition("=")
        fields[unquote_plus(key)] = raw
    for key in ("channels", "channel", "id"):
        if fields.get(key):
            return [unquote_plus(c, errors="strict") for c in fields[key].split("/") if c]
    return [unquote(s, errors="strict") for s in parts.path.split("/") if s][1:]


MAX_FAILURE_TEXT = 200          # characters of an exception's text kept in a log line


def safe_url(url: str) -> str:
    """A URL for the log: user and password (http://user:secret@host/) and the query (where a
    key may be: ?key=...) left out."""
    parts = urlsplit(url)
    if parts.query:
        parts = parts._replace(query="***")
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc="***@" + netloc)
    return parts.geturl()


def describe_failure(e: BaseException, secrets) -> str:
    """What failed, for a log line, with no secret of the client in it.

    Never the repr: aiohttp's ClientResponseError repr carries the whole request, with the
    client's forwarded Cookie and Authorization.  The text is kept short, on one line, and
    every credential value the client sent (as gogin forwarded it) is cut out of it, since a
    hostile main server can echo them into an answer that fails to parse."""
    text = " ".join(str(e).split())[:MAX_FAILURE_TEXT]
    for value in secrets:
        for piece in {value, *value.replace(";", " ").replace(",", " ").split()}:
            if len(piece) >= 4:
                text = text.replace(piece, "[redacted]")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


BAD_STATUS_EXPLAIN = "Main server answer has an invalid status."
TOO_LARGE_EXPLAIN = "Main server answer is too large."


def valid_status(status: int) -> bool:
    """A final status gogin can act on.  A 1xx (a 101 above all) relayed to the client as its
    final answer would be a lie: no protocol switch happened between gogin and the client."""
    return 200 <= status <= 599


async def read_capped(resp, cap: int) -> Optional[bytes]:
    """The answer's body, or None once it is longer than cap bytes: read in chunks and
    abandoned past the cap (the connection is dropped, not drained), so a hostile or broken
    main server makes gogin hold at most cap bytes, whatever it sends (or decompresses to)."""
    if resp.content_length is not None and resp.content_length > cap:
        return None
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        buf += chunk
        if len(buf) > cap:
            resp.close()
            return None
    return bytes(buf)


class MainServerAuth:
    """HTTP callbacks to the main server (auth.url, auth.publish_url)."""

    def __init__(self, cfg, max_message_size: int = 1 << 20):
        self.cfg = cfg
        # what the publish callback may answer: a replacement message, as large as a message
        self.max_publish_answer = max(cfg.max_answer_size, max_message_size)
        self.session = None
        self.cache = DecisionCache(cfg.cache_ttl, cfg.cache_size) if cfg.cache_ttl > 0 else None
        self.calls = 0

    async def start(self):
        import aiohttp
        if self.session is None:
            self.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
                connector=aiohttp.TCPConnector(limit=256, keepalive_timeout=30),
                auto_decompress=True)

    async def close(self):
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _cache_key(self, req: SubscribeRequest):
        return (req.path, req.query, tuple(sorted(req.headers.items())))

    async def subscribe(self, req: SubscribeRequest) -> Decision:
        if not self.cfg.url:
            return Decision.deny(503, explain="No main server configured.")
        if self.cache is not None:
            hit = self.cache.get(self._cache_key(req))
            if hit is not None:
                return hit
        headers = dict(req.headers)
        headers.update({
            "X-Original-URI": req.uri,
            "X-Original-Method": req.method,
            "X-Forwarded-For": req.client,
            "X-Gogin-Mode": req.mode,
            "X-Gogin-Channels": "/".join(req.channels),
            "Content-Type": "application/json",
        })
        body = json.dumps({
            "method": req.method, "uri": req.uri, "path": req.path, "query": req.query,
            "client": req.client, "mode": req.mode, "channels": req.channels,
            "headers": req.headers,
        })
        await self.start()
        self.calls += 1
        try:
            async with self.session.post(self.cfg.url, data=body, headers=headers,
                                         allow_redirects=False) as resp:
                if not valid_status(resp.status):
                    return Decision.deny(502, explain=BAD_STATUS_EXPLAIN)
                data = await read_capped(resp, self.cfg.max_answer_size)
                if data is None:
                    return Decision.deny(502, explain=TOO_LARGE_EXPLAIN)
                decision = self._decide(resp.status, resp.headers, data)
        except (asyncio.TimeoutError, OSError) as e:
            log.warning("main server %s unreachable: %s", safe_url(self.cfg.url),
                        describe_failure(e, req.headers.values()))
            return Decision.deny(503, explain="Main server unavailable.")
        except Exception as e:       # aiohttp.ClientError and friends: fail closed
            log.warning("main server %s failed: %s", safe_url(self.cfg.url),
                        describe_failure(e, req.headers.values()))
            return Decision.deny(503, explain="Main server unavailable.")
        if self.cache is not None:
            self.cache.put(self._cache_key(req), decision)
        return decision

    @staticmethod
    def _decide(status: int, headers, data: bytes) -> Decision:
        if not 200 <= status < 300:
            return Decision.deny(status, data, headers.get("Content-Type"))
        user = headers.get("X-Gogin-User")
        accel = headers.get("X-Accel-Redirect")
        if accel:
            try:
                channels = channels_from_accel_redirect(accel)
            except UnicodeDecodeError:       # invalid UTF-8 is no channel id
                return Decision.deny(502, explain=GRANT_EXPLAIN)
        else:
            try:
                doc = json.loads(data or b"null")
            except ValueError:
                doc = None
            if not isinstance(doc, dict) or not isinstance(doc.get("channels"), list):
                return Decision.deny(502, explain="Main server answer has no channel list.")
            channels = doc["channels"]       # validated, one id each, by parse_granted
            if doc.get("user") is not None:
                user = str(doc["user"])
        if not channels:
            return Decision.deny(403, explain="Main server gave no channels.")
        return Decision.allow(channels, user)

    async def publish(self, req: PublishRequest) -> PublishDecision:
        if not self.cfg.publish_url:
            return PublishDecision.reject(503)
        headers = dict(req.headers)
        headers.update({
            "X-Forwarded-For": req.client,
            "X-Gogin-Channels": "/".join(req.channels),
            "Content-Type": "application/octet-stream" if req.binary else "text/plain; charset=utf-8",
        })
        if req.user is not None:
            headers["X-Gogin-User"] = req.user
        await self.start()
        self.calls += 1
        try:
            async with self.session.post(self.cfg.publish_url, data=req.payload, headers=headers,
                                         allow_redirects=False) as resp:
                if not valid_status(resp.status):
                    return PublishDecision.reject(502)
                data = await read_capped(resp, self.max_publish_answer)
                if data is None:
                    return PublishDecision.reject(502)
                target = resp.headers.get("X-Gogin-Channels")
                channels = [c for c in target.split("/") if c] if target else None
                # Nchan's upstream-request semantics (docs/protocol.md, Main-server callbacks)
                if resp.status == 204:
                    return PublishDecision.drop()
                if resp.status == 304:
                    return PublishDecision.as_is(channels)
                if 200 <= resp.status < 300:
                    if data:
                        return PublishDecision.replace(data, channels)
                    return PublishDecision.as_is(channels)
                return PublishDecision.reject(resp.status)
        except Exception as e:       # timeout, connection error: never publish unauthorized
            log.warning("publish callback %s failed: %s", safe_url(self.cfg.publish_url),
                        describe_failure(e, req.headers.values()))
            return PublishDecision.reject(503)


SubscribeHook = Callable[[SubscribeRequest], Awaitable[Decision]]
PublishHook = Callable[[PublishRequest], Awaitable[PublishDecision]]


class CallableAuth:
    """Auth hooks as Python coroutines (embedding): no HTTP round trip."""

    def __init__(self, subscribe: Optional[SubscribeHook] = None,
                 publish: Optional[PublishHook] = None):
        self._subscribe = subscribe
        self._publish = publish

    async def start(self):
        pass

    async def close(self):
        pass

    async def subscribe(self, req: SubscribeRequest) -> Decision:
        if self._subscribe is None:
            return Decision.deny(503, explain="No main server configured.")
        try:
            return await self._subscribe(req)
        except Exception:
            log.exception("subscribe hook failed")
            return Decision.deny(503, explain="Main server unavailable.")

    async def publish(self, req: PublishRequest) -> PublishDecision:
        if self._publish is None:
            return PublishDecision.reject(503)
        try:
            return await self._publish(req)
        except Exception:
            log.exception("publish hook failed")
            return PublishDecision.reject(503)
