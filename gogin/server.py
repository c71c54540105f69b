"""The server: a Hub attached to the running loop, locations routing its requests, the auth
front and the publish API.  ``serve()`` runs it inside any asyncio application."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Optional

from gogin._core import Hub, build_head
from gogin import brokers as _brokers
from gogin.auth import CallableAuth, MainServerAuth
from gogin.config import Config, parse_listen
from gogin.memory import Trimmer
from gogin import locations as _locations
from gogin.tokens import TokenVerifier
from gogin.publish import DELETED_ID, HttpError, event_field_error, is_text, json_str

log = logging.getLogger("gogin.server")

SWEEP_INTERVAL = 5.0        # seconds between sweeps of inactive channels
CORS_REQUEST_HEADERS = ("If-Modified-Since, If-None-Match, Last-Event-ID, Event-Id, Event-Type, "
                        "Content-Type, X-Api-Key, Authorization")
CORS_EXPOSE_HEADERS = "Last-Modified, Etag, X-Gogin-Explain"


class ListenError(OSError):
    """An address that cannot be listened on; says which, and why, in words a person reads:
    ``cannot listen on 0.0.0.0:9080: address already in use``."""

    def __init__(self, host: str, port: int, err: OSError):
        why = (err.strerror or str(err)).lower()
        super().__init__(err.errno, why)
        shown = f"[{host}]" if ":" in host else host
        self.message = f"cannot listen on {shown}:{port}: {why}"

    def __str__(self):
        return self.message


class Server:
    """One gogin node.  Create, ``await start()``, ``publish()``, ``await stop()``."""

    def __init__(self, config: Optional[Config] = None, *, auth=None):
        self.config = config or Config()
        self.config.validate()
        s, lim = self.config.server, self.config.limits
        self.hub = Hub(self._on_request, self._on_message, self._on_close,
                       max_connections=s.max_connections, max_head_size=lim.max_head_size,
                       max_headers=lim.max_headers, max_body_size=lim.max_body_size,
                       max_message_size=lim.max_message_size,
                       max_backpressure=lim.max_backpressure,
                       backpressure_policy=lim.backpressure_policy,
                       header_timeout=lim.header_timeout,
                       keepalive_timeout=lim.keepalive_timeout, tick=s.tick,
                       flush_pacing=s.flush_pacing)
        self.hub.on_body = self._on_body
        self.hub.set_history(lim.max_messages_stored_per_channel, lim.message_ttl,
                             lim.max_stored_bytes)
        if auth is None:
            auth = MainServerAuth(self.config.auth, self.config.limits.max_message_size)
        elif not hasattr(auth, "subscribe"):
            raise TypeError("auth must have subscribe()/publish() coroutines (CallableAuth)")
        self.auth = auth
        token_cfg = self.config.auth.token
        self.tokens = TokenVerifier(token_cfg, lim) if token_cfg is not None else None
        self.networks = [ipaddress.ip_network(n, strict=False) for n in s.allowed_networks]
        self.locations = _locations.build(self, self.config.locations)
        self.broker = _brokers.create(self)
        self.ingest = None                  # NATS ingest ([nats] url; gogin/ingest.py)
        if self.config.nats.url:
            from gogin.ingest import Ingest
            self.ingest = Ingest(self)
        self.addresses: list[tuple[str, int]] = []
        self.worker: Optional[int] = None   # its number under --workers N (gogin/supervisor.py)
        self.started = time.monotonic()
        self._tasks: set = set()
        self._cors: dict = {}               # connection id -> allowed Origin of its request
        origins = self.config.server.allowed_origins
        self._any_origin = "*" in origins
        self._origins = set(origins)
        self._sweeper: Optional[asyncio.Task] = None
        self.trimmer = Trimmer()            # memory back to the kernel after a crowd left
        self._publish_routes()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, sockets=None):
        """Listen (on config.server.listen, or on the given bound sockets) and attach."""
        s = self.config.server
        # the broker first: once the port accepts, publishes and subscribes work
        await self.broker.start()
        if sockets:
            for sock in sockets:
                self.addresses.append(tuple(self.hub.listen(sock=sock)))
        else:
            for addr in s.listen:
                host, port = parse_listen(addr)
                try:
                    bound = self.hub.listen(host, port, backlog=s.backlog,
                                            reuse_port=s.reuse_port)
                except OSError as e:
                    await self.broker.close()
                    raise ListenError(host, port, e) from e
                self.addresses.append(tuple(bound))
        self.hub.attach(asyncio.get_running_loop())
        if self.ingest is not None:
            await self.ingest.start()       # IngestError (an OSError) if NATS is unusable
        await self.auth.start()
        self._sweeper = asyncio.ensure_future(self._sweep())
        self.started = time.monotonic()
        return self

    async def stop(self, timeout: Optional[float] = None):
        """Graceful: stop accepting, close WebSocket clients with 1001, wait, exit."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for t in list(self._tasks):
            t.cancel()
        if self.ingest is not None:
            await self.ingest.stop()
        await self.hub.shutdown(self.config.server.shutdown_timeout if timeout is None else timeout)
        for loc in self.locations:             # the token locations' expiry timers
            wheel = getattr(loc, "expiry_wheel", None)
            if wheel is not None:
                wheel.close()
        await self.broker.close()
        await self.auth.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def track(self, task: asyncio.Future):
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- publishing --------------------------------------------------------------------------

    def publish(self, channel, payload, *, event_id=None, event_type=None,
                binary: Optional[bool] = None):
        """Publish to a channel (or a list of channels).  With the memory broker: returns the
        number of connections it was queued to, and the channel is created (kept for stats
        until channel_inactivity_time) if it is new.  With a shared broker: returns an
        awaitable of the per-channel PublishResult list, which raises BrokerUnavailable when
        the broker did not store it.
        binary None: bytes that are not UTF-8 go out as binary frames (a text frame must be
        UTF-8, RFC 6455 §5.6), everything else as text."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        err = event_field_error("event_id", event_id) or \
            event_field_error("event_type", event_type)
        if err:
            raise ValueError(err)
        names = [channel] if isinstance(channel, str) else list(channel)
        if self.broker.shared:
            if binary is None:
                binary = not is_text(payload, None)
            return self.broker.publish(names, payload, event_id, event_type, binary)
        return sum(queued for _, queued, _ in self.publish_rows(names, payload, event_id,
                                                                event_type, binary))

    def publish_rows(self, names, payload: bytes, event_id, event_type, binary) -> list:
        """The memory broker's publish to several channels in one core call (channels made on
        first publish; the events channel hears of each new one): [(Channel, queued, created)].
        binary None: text if the payload is UTF-8 (decided in the core)."""
        rows = self.hub.publish(names, payload, event_id, event_type, binary, create=True)
        if self.config.limits.events_channel_id:
            for ch, _, created in rows:
                if created:
                    self.emit("channel_created", ch.name)
        return rows

    def publish_nowait(self, channels, payload, *, binary=None, on_error=None) -> None:
        """Publish without waiting for a shared broker's answer (client messages, the
        publisher WebSocket): a failure is counted by the broker and given to on_error(text)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        names = [channels] if isinstance(channels, str) else list(channels)
        if not self.broker.shared:
            self.publish_rows(names, payload, None, None, binary)
            return
        if binary is None:
            binary = not is_text(payload, None)
        self.broker.publish_nowait(names, payload, None, None, binary, on_error)

    def publish_local(self, channel, payload, event_id, event_type, binary) -> int:
        """Into this node's hub only (the memory broker; a shared broker's received messages
        take Hub.deliver instead)."""
        return self._publish(channel, payload, event_id, event_type, binary)

    def _publish(self, channel, payload, event_id, event_type, binary) -> int:
        self.hub.ensure_channel(channel)
        return self.hub.publish(channel, payload, event_id=event_id, event_type=event_type,
                                binary=binary)

    def delete_channel(self, name: str, text: bytes = b"Channel deleted", local: bool = False):
        """Subscribers get a message with id -2, then lose that channel (a connection with no
        channel left is closed: WebSocket with 1000, streams with their footer).  local: on
        this node only (a shared broker heard of the deletion)."""
        if local:
            self.broker.forget(name)
        now = int(time.time())
        for conn in self.hub.subscribers(name):
            fmt = conn.format
            try:
                if conn.state == "longpoll":
                    conn.send_raw(fmt.render_bytes(text, id=DELETED_ID, channel=name, time=now))
                    conn.close()
                    continue
                conn.send_raw(fmt.render_bytes(text, id=DELETED_ID, channel=name, time=now))
                conn.unsubscribe(name)
                if not conn.channels:
                    conn.close(1000, "Channel deleted")
            except Exception:
                log.exception("delete notification failed for %r", conn)
        self.hub.clear_history(name)
        self.hub.drop_channel(name)
        self.emit("channel_destroyed", name)

    # -- the events channel (docs/protocol.md, Events channel: channel_created, channel_destroyed,
    #    client_subscribed, client_unsubscribed as JSON on limits.events_channel_id) ---------

    def is_events_channel(self, names) -> bool:
        ev = self.config.limits.events_channel_id
        return bool(ev) and ev in names

    def emit(self, kind: str, channel: str):
        ev = self.config.limits.events_channel_id
        if ev and channel != ev:
            doc = f'{{"type": "{kind}", "channel": "{json_str(channel)}"}}'
            self._publish(ev, doc.encode("utf-8"), None, None, False)

    def ensure_channels(self, names):
        """Channels exist from their first subscriber or publish until the sweeper reclaims
        them (channel_inactivity_time without subscribers or stored messages)."""
        for n in names:
            if self.hub.channel(n) is None:
                self.hub.ensure_channel(n)
                self.emit("channel_created", n)
            else:
                self.hub.ensure_channel(n)

    def note_subscribed(self, names, events: bool = True):
        now = time.time()
        for n in names:
            ch = self.hub.channel(n)
            if ch is not None:
                ch.data = now           # last activity, for the sweeper
            if events:
                self.emit("client_subscribed", n)

    def note_unsubscribed(self, names):
        now = time.time()
        for n in names:
            ch = self.hub.channel(n)
            if ch is not None:
                ch.data = now           # last activity, for the sweeper
            self.emit("client_unsubscribed", n)

    def count_wildcard_channels(self) -> int:
        prefix = self.config.limits.wildcard_channel_prefix
        return sum(1 for n in self.hub.channel_names() if prefix and n.startswith(prefix))

    def auth_calls(self) -> int:
        return getattr(self.auth, "calls", 0)

    async def _sweep(self):
        """Forget channels nobody subscribed to or published on for channel_inactivity_time."""
        idle = self.config.limits.channel_inactivity_time
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.trimmer.observe(self.hub.accepted, self.hub.connections)
            now = time.time()
            ev = self.config.limits.events_channel_id
            for name in self.hub.channel_names():
                ch = self.hub.channel(name)
                if ch is None or ch.subscribers or ch.stored or name == ev:
                    continue
                if now - max(ch.last_time, ch.created, ch.data or 0) >= idle:
                    self.hub.drop_channel(name)
                    if self.hub.channel(name) is None:
                        self.broker.forget(name)
                        self.emit("channel_destroyed", name)

    # -- HTTP answers ------------------------------------------------------------------------

    def head(self, status: int, headers=(), content_length: int = -1, keep_alive=True) -> bytes:
        return build_head(status, headers, content_length, keep_alive)

    def stream_head(self, conn, status: int, headers=()) -> bytes:
        """Head of a stream answer (EventSource, streaming), with CORS if the request had it."""
        return self.head(status, list(headers) + self.cors_headers(self._cors.pop(conn.id, None)))

    def respond(self, conn, status: int, headers=(), body=b""):
        cors = self.cors_headers(self._cors.pop(conn.id, None))
        conn.respond(status, list(headers) + cors if cors else headers, body)

    # -- CORS (server.allowed_origins) ---------------------------------------------------------

    def cors_done(self, conn) -> Optional[str]:
        """The allowed Origin of this connection's request, forgotten now (it is answered)."""
        return self._cors.pop(conn.id, None)

    def cors_headers(self, origin: Optional[str]) -> list:
        if not origin:
            return []
        allow = "*" if self._any_origin else origin
        hdrs = [("Access-Control-Allow-Origin", allow),
                ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
                ("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS),
                ("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)]
        if not self._any_origin:
            hdrs.append(("Vary", "Origin"))
        return hdrs

    def explain(self, text: str) -> list:
        """The explain header(s) of an answer (push-stream's name too, if configured)."""
        hdrs = [("X-Gogin-Explain", text)]
        if self.config.server.push_stream_explain_header:
            hdrs.append(("X-Nginx-PushStream-Explain", text))
        return hdrs

    def error(self, conn, e: HttpError):
        self.respond(conn, e.status, self.explain(e.explain) + e.headers + _locations.NO_CACHE)

    # -- hub callbacks -----------------------------------------------------------------------

    def _route(self, path: str):
        # A scan of the ordered locations (the core's publish routes are a dict of exact
        # paths).  A per-path cache of this result was tried and taken out while the Redis
        # restart tests (tests/cluster) failed on a loaded machine; they later failed and
        # passed without it too, so whether it was the cause is not settled.
        return self._scan_routes(path)

    def _scan_routes(self, path: str):
        for loc in self.locations:
            if loc.matches(path):
                return loc
        return None

    def _publish_routes(self):
        """Publisher locations whose common publish the core answers itself (exact path):
        only with the memory broker (a shared broker answers after it stored the message)."""
        self.hub.clear_publish_routes()
        if self.broker.shared:
            return
        s, lim = self.config.server, self.config.limits
        for loc in self.locations:
            if not isinstance(loc, _locations.PublisherLocation):
                continue
            path = loc.path.rstrip("/") or "/"
            for p in {path, loc.path}:
                if self._scan_routes(p) is loc:
                    self.hub.publish_route(
                        p, public=loc.cfg.public, api_key=s.api_key or None,
                        info=loc.cfg.channel_info_on_publish,
                        events_channel=lim.events_channel_id or None,
                        max_channel_id_length=lim.max_channel_id_length,
                        max_message_size=lim.max_message_size, cors=bool(self._origins))

    def _on_request(self, conn, req):
        if self._origins:
            origin = req.get("origin")
            if origin and (self._any_origin or origin in self._origins):
                self._cors[conn.id] = origin
        loc = self._route(req.path)
        if loc is None:
            return self.error(conn, HttpError(404, "No location for this path."))
        try:
            loc.handle(conn, req)
        except HttpError as e:
            self.error(conn, e)

    def _on_body(self, conn, req):
        """A request whose body is still arriving: the most bytes it may send (its location's
        limit, after the location's access check), or the answer that refuses it, so that
        nobody makes gogin hold a body it would not take."""
        loc = self._route(req.path)
        try:
            if loc is None:
                raise HttpError(404, "No location for this path.")
            loc.check_access(conn, req)
            return loc.body_limit(req)
        except HttpError as e:
            return self.head(e.status, self.explain(e.explain) + e.headers + _locations.NO_CACHE,
                             content_length=0, keep_alive=False)

    def _on_message(self, conn, opcode, data):
        state = conn.data
        if state is None:
            conn.close(1008, "unexpected message")
            return
        state.location.on_message(conn, opcode, data)

    def _on_close(self, conn, reason):
        self._cors.pop(conn.id, None)
        state = conn.data
        expiry = getattr(state, "expiry", None)    # a token connection's end (TokenState):
        if expiry is not None:                     # its bucket of the location's ExpiryWheel
            expiry.pop(conn, None)
        if state is not None and getattr(state, "channels", None):
            self.note_unsubscribed(state.channels)
        conn.data = None


async def serve(config: Optional[Config] = None, *, auth=None, subscribe=None, publish=None,
                sockets=None) -> Server:
    """Start a gogin server inside the running asyncio loop and return it.

    auth: an object with ``subscribe(SubscribeRequest)`` and ``publish(PublishRequest)``
    coroutines, or give the two coroutines as ``subscribe=`` / ``publish=``; without either,
    the HTTP callbacks of config.auth are used.  ``server.publish()`` publishes in-process;
    ``await server.stop()`` ends it.
    """
    if auth is None and (subscribe is not None or publish is not None):
        auth = CallableAuth(subscribe, publish)
    server = Server(config, auth=auth)
    await server.start(sockets)
    return server
