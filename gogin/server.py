"""The server: wiring.  It builds the Hub, the broker, the channel operations, the locations'
context and their router, hooks the hub's callbacks to the router, and runs the lifecycle
(listen, attach, sweep, stop) and the publish API.  What a request does lives in
gogin/locations/; ``serve()`` runs a server inside any asyncio application."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Optional

from gogin import brokers as _brokers
from gogin import locations as _locations
from gogin._core import Hub
from gogin.auth import CallableAuth, MainServerAuth
from gogin.channels import Channels
from gogin.config import Config, parse_listen
from gogin.memory import Trimmer
from gogin.tokens import TokenVerifier

log = logging.getLogger("gogin.server")

SWEEP_INTERVAL = 5.0        # seconds between sweeps of inactive channels


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
        # the callbacks are the router's, hooked below once the locations exist (their
        # formats are made by this hub)
        self.hub = Hub(max_connections=s.max_connections, max_head_size=lim.max_head_size,
                       max_headers=lim.max_headers, max_body_size=lim.max_body_size,
                       max_message_size=lim.max_message_size,
                       max_backpressure=lim.max_backpressure,
                       backpressure_policy=lim.backpressure_policy,
                       header_timeout=lim.header_timeout,
                       keepalive_timeout=lim.keepalive_timeout, tick=s.tick,
                       flush_pacing=s.flush_pacing)
        self.hub.set_history(lim.max_messages_stored_per_channel, lim.message_ttl,
                             lim.max_stored_bytes)
        if auth is None:
            auth = MainServerAuth(self.config.auth, self.config.limits.max_message_size)
        elif not hasattr(auth, "subscribe"):
            raise TypeError("auth must have subscribe()/publish() coroutines (CallableAuth)")
        self.auth = auth
        token_cfg = self.config.auth.token
        self.tokens = TokenVerifier(token_cfg, lim) if token_cfg is not None else None
        self.channels = Channels(self.hub, self.config)
        self.broker = _brokers.create(self)
        self.channels.broker = self.broker
        self.ingest = None                  # NATS ingest ([nats] url; gogin/ingest.py)
        if self.config.nats.url:
            from gogin.ingest import Ingest
            self.ingest = Ingest(self)
        # what the locations get instead of the Server (gogin/locations/base.py)
        self.context = _locations.LocationContext(
            config=self.config, hub=self.hub, broker=self.broker, auth=self.auth,
            tokens=self.tokens,
            networks=[ipaddress.ip_network(n, strict=False) for n in s.allowed_networks],
            http=_locations.Answers(self.config), channels=self.channels, ingest=self.ingest)
        self.router = _locations.Router(self.context,
                                        _locations.build(self.context, self.config.locations))
        self.locations = self.router.locations
        hub, router = self.hub, self.router
        hub.on_request, hub.on_message, hub.on_close = \
            router.on_request, router.on_message, router.on_close
        hub.on_body = router.on_body
        self.addresses: list[tuple[str, int]] = []
        self._sweeper: Optional[asyncio.Task] = None
        self.trimmer = Trimmer()            # memory back to the kernel after a crowd left
        self._publish_routes()

    # the node's facts that the locations read (health, stats) live in their context; the
    # Server keeps its attributes for the cli, the brokers and embedding code

    @property
    def worker(self) -> Optional[int]:
        """Its number under --workers N (gogin/supervisor.py); /healthz says it."""
        return self.context.worker

    @worker.setter
    def worker(self, n: Optional[int]):
        self.context.worker = n

    @property
    def started(self) -> float:
        """monotonic time of the start (uptime of stats and the Redis heartbeat)."""
        return self.context.started

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
        self.context.started = time.monotonic()
        return self

    async def stop(self, timeout: Optional[float] = None):
        """Graceful: stop accepting, close WebSocket clients with 1001, wait, exit."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for t in list(self.context.tasks):
            t.cancel()
        if self.ingest is not None:
            await self.ingest.stop()
        await self.hub.shutdown(self.config.server.shutdown_timeout if timeout is None else timeout)
        self.router.close()                  # the token locations' expiry timers
        await self.broker.close()
        await self.auth.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

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
        return self.channels.publish(channel, payload, event_id=event_id,
                                     event_type=event_type, binary=binary)

    def delete_channel(self, name: str, text: bytes = b"Channel deleted", local: bool = False):
        """Like DELETE /pub?id=name (gogin/channels.py, Channels.delete); local: on this node
        only (a shared broker heard of the deletion)."""
        self.channels.delete(name, text, local)

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
                        self.channels.emit("channel_destroyed", name)

    # -- the core's publisher fast path -----------------------------------------------------

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
                if self.router.route(p) is loc:
                    self.hub.publish_route(
                        p, public=loc.cfg.public, api_key=s.api_key or None,
                        info=loc.cfg.channel_info_on_publish,
                        events_channel=lim.events_channel_id or None,
                        max_channel_id_length=lim.max_channel_id_length,
                        max_message_size=lim.max_message_size,
                        cors=bool(self.context.http.allowed))


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
