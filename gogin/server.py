"""The server: a Hub attached to the running loop, locations routing its requests, the auth
front and the publish API.  ``serve()`` runs it inside any asyncio application."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from typing import Optional

from gogin._core import Hub
from gogin.auth import CallableAuth, MainServerAuth
from gogin.config import Config, parse_listen
from gogin import locations as _locations
from gogin.publish import DELETED_ID, HttpError, group_info, is_text
from gogin import stats

log = logging.getLogger("gogin.server")

SWEEP_INTERVAL = 5.0        # seconds between sweeps of inactive channels


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
                       keepalive_timeout=lim.keepalive_timeout, tick=s.tick)
        self.hub.set_history(lim.max_messages_stored_per_channel, lim.message_ttl,
                             lim.max_stored_bytes)
        if auth is None:
            auth = MainServerAuth(self.config.auth)
        elif not hasattr(auth, "subscribe"):
            raise TypeError("auth must have subscribe()/publish() coroutines (CallableAuth)")
        self.auth = auth
        self.networks = [ipaddress.ip_network(n, strict=False) for n in s.allowed_networks]
        self.locations = _locations.build(self, self.config.locations)
        self.addresses: list[tuple[str, int]] = []
        self.started = time.monotonic()
        self._tasks: set = set()
        self._sweeper: Optional[asyncio.Task] = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self, sockets=None):
        """Listen (on config.server.listen, or on the given bound sockets) and attach."""
        s = self.config.server
        if sockets:
            for sock in sockets:
                self.addresses.append(tuple(self.hub.listen(sock=sock)))
        else:
            for addr in s.listen:
                host, port = parse_listen(addr)
                self.addresses.append(tuple(self.hub.listen(host, port, backlog=s.backlog,
                                                            reuse_port=s.reuse_port)))
        self.hub.attach(asyncio.get_running_loop())
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
        await self.hub.shutdown(self.config.server.shutdown_timeout if timeout is None else timeout)
        await self.auth.close()

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.stop()

    def track(self, task: asyncio.Future):
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- publishing --------------------------------------------------------------------------

    def publish(self, channel: str, payload, *, event_id=None, event_type=None,
                binary: Optional[bool] = None) -> int:
        """Publish to one channel; returns the number of connections it was queued to.  The
        channel is created (kept for stats until channel_inactivity_time) if it is new.
        binary None: bytes that are not UTF-8 go out as binary frames (a text frame must be
        UTF-8, RFC 6455 §5.6), everything else as text."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        if binary is None:
            binary = not is_text(payload, None)
        self.hub.ensure_channel(channel)
        return self.hub.publish(channel, payload, event_id=event_id, event_type=event_type,
                                binary=binary)

    def delete_channel(self, name: str, text: bytes = b"Channel deleted"):
        """Subscribers get a message with id -2, then lose that channel (a connection with no
        channel left is closed: WebSocket with 1000, streams with their footer)."""
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

    def is_events_channel(self, names) -> bool:
        return False      # the events channel arrives with issue 4

    def note_subscribed(self, names):
        pass

    def count_wildcard_channels(self) -> int:
        prefix = self.config.limits.wildcard_channel_prefix
        return sum(1 for n in self.hub.channel_names() if prefix and n.startswith(prefix))

    def group_info(self, infos) -> bytes:
        return group_info(socket.gethostname(), stats.iso_now(), len(infos),
                          self.count_wildcard_channels(),
                          int(time.monotonic() - self.started), infos)

    def auth_calls(self) -> int:
        return getattr(self.auth, "calls", 0)

    async def _sweep(self):
        """Forget channels nobody subscribed to or published on for channel_inactivity_time."""
        idle = self.config.limits.channel_inactivity_time
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.time()
            for name in self.hub.channel_names():
                ch = self.hub.channel(name)
                if ch is not None and ch.subscribers == 0 and \
                        now - max(ch.last_time, ch.created) >= idle:
                    self.hub.drop_channel(name)

    # -- HTTP answers ------------------------------------------------------------------------

    def head(self, status: int, headers=(), content_length: int = -1, keep_alive=True) -> bytes:
        from gogin._core.hub import build_head
        return build_head(status, headers, content_length, keep_alive)

    def respond(self, conn, status: int, headers=(), body=b""):
        conn.respond(status, headers, body)

    def explain(self, text: str) -> list:
        """The explain header(s) of an answer (push-stream's name too, if configured)."""
        hdrs = [("X-Gogin-Explain", text)]
        if self.config.server.push_stream_explain_header:
            hdrs.append(("X-Nginx-PushStream-Explain", text))
        return hdrs

    def error(self, conn, e: HttpError):
        hdrs = self.explain(e.explain) + e.headers + _locations.NO_CACHE
        conn.respond(e.status, hdrs)

    # -- hub callbacks -----------------------------------------------------------------------

    def _on_request(self, conn, req):
        for loc in self.locations:
            if loc.matches(req.path):
                break
        else:
            return self.error(conn, HttpError(404, "No location for this path."))
        try:
            loc.handle(conn, req)
        except HttpError as e:
            self.error(conn, e)

    def _on_message(self, conn, opcode, data):
        state = conn.data
        if state is None:
            conn.close(1008, "unexpected message")
            return
        state.location.on_message(conn, opcode, data)

    def _on_close(self, conn, reason):
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
