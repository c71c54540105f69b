"""One connection to Redis: RESP over an asyncio transport, read by hiredis.

Two uses, one class:
- commands (``call``): replies come back in order, so each call gets the next reply; calls made
  in one loop turn leave in one write (pipelined), which is what lets one node publish near
  the rate Redis itself sustains;
- PUB/SUB (``on_push``): a socket read's ``message`` pushes go to the hub in one batch
  (``Hub.deliver_batch``), so a received message costs one hiredis reply and no Python call of
  its own.

redis-py's connection classes are not used on these paths: its PubSub object costs 9-20 us of
Python per received message and resubscribes on its own after a reconnect, without saying what
was published meanwhile; gogin must know, to read it back from the channel's history.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections import deque
from typing import Callable, Optional

import hiredis

_Future = asyncio.Future
FLUSH_AT = 128                  # commands written at once without waiting for the turn's end


def _ignore(reply) -> None:
    pass


class RespError(Exception):
    """An error reply (``-ERR ...``) or a lost connection."""


class ConnectionLost(RespError):
    pass


class RespProtocol(asyncio.Protocol):
    def __init__(self, on_push: Optional[Callable] = None,
                 on_lost: Optional[Callable] = None):
        self._reader = hiredis.Reader(replyError=RespError)
        self._waiters: deque = deque()            # futures of calls, oldest first
        self._out: list = []                      # packed commands of this turn
        self._flush_scheduled = False
        self._on_push = on_push                   # (list of replies) -> None, PUB/SUB mode
        self._on_lost = on_lost
        self.transport: Optional[asyncio.Transport] = None
        self.closed = False
        self.last_read = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self._loop = asyncio.get_running_loop()

    def data_received(self, data):
        reader = self._reader
        reader.feed(data)
        self.last_read = self._loop.time()
        waiters = self._waiters
        if self._on_push is None:
            while (reply := reader.gets()) is not False:
                w = waiters.popleft()
                if type(w) is not _Future:
                    w(reply)                         # call_cb: the callback takes errors too
                elif not w.done():
                    if isinstance(reply, RespError):
                        w.set_exception(reply)
                    else:
                        w.set_result(reply)
            return
        batch = []
        while (reply := reader.gets()) is not False:
            batch.append(reply)
        self._on_push(batch)

    def connection_lost(self, exc):
        self.closed = True
        err = ConnectionLost(f"connection lost: {exc}" if exc else "connection closed")
        while self._waiters:
            w = self._waiters.popleft()
            if type(w) is not _Future:
                w(err)
            elif not w.done():
                w.set_exception(err)
        if self._on_lost is not None:
            self._on_lost(self)

    # -- commands ------------------------------------------------------------------------------

    def call(self, *args) -> asyncio.Future:
        """Send a command; the future gets its reply (or RespError)."""
        fut = self._loop.create_future()
        if self.closed:
            fut.set_exception(ConnectionLost("connection closed"))
            return fut
        self.send(*args)
        self._waiters.append(fut)
        return fut

    def call_cb(self, args, callback) -> None:
        """Send a command; callback(reply) gets its reply, a RespError for an error reply or a
        lost connection (no future: the publish hot path)."""
        if self.closed:
            callback(ConnectionLost("connection closed"))
            return
        self.send(*args)
        self._waiters.append(callback)

    def fire(self, *args) -> None:
        """A command whose reply nobody needs (command mode: every command has a reply, so
        it is read and dropped in its turn)."""
        self.call_cb(args, _ignore)

    def send(self, *args) -> None:
        """Send a command whose reply is not awaited here (PUB/SUB mode only: SUBSCRIBE's
        answers come as pushes; in command mode use call, call_cb or fire)."""
        out = self._out
        out.append(hiredis.pack_command(args))
        if len(out) >= FLUSH_AT:
            self._flush()                        # keep Redis busy while this turn goes on
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._turn_flush)

    def _turn_flush(self):
        self._flush_scheduled = False
        self._flush()

    def _flush(self):
        out, self._out = self._out, []
        if out and not self.closed:
            self.transport.write(b"".join(out))

    def close(self):
        if self.transport is not None and not self.closed:
            self.transport.close()


async def open_connection(params: dict, timeout: float, *, on_push=None,
                          on_lost=None) -> RespProtocol:
    """Connect, authenticate and select the database of ``params`` (redis.connection.parse_url's
    keys: host, port, path, username, password, db, connection_class for rediss://)."""
    loop = asyncio.get_running_loop()

    def factory():
        # commands first (AUTH, SELECT) in command mode; PUB/SUB pushes after
        return RespProtocol(None, on_lost)

    ssl_ctx = _ssl.create_default_context() if params.get("ssl") else None
    proto = await asyncio.wait_for(_connect(loop, factory, params, ssl_ctx), timeout)
    proto._on_push = on_push
    return proto


async def _connect(loop, factory, params, ssl_ctx) -> RespProtocol:
    if params.get("path"):
        _, proto = await loop.create_unix_connection(factory, params["path"])
    else:
        _, proto = await loop.create_connection(
            factory, params.get("host", "127.0.0.1"), params.get("port", 6379),
            ssl=ssl_ctx, server_hostname=params.get("host") if ssl_ctx else None)
    try:
        if params.get("password"):
            if params.get("username"):
                await proto.call("AUTH", params["username"], params["password"])
            else:
                await proto.call("AUTH", params["password"])
        if params.get("db"):
            await proto.call("SELECT", str(params["db"]))
    except BaseException:
        proto.close()
        raise
    return proto
