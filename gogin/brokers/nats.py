"""The NATS broker: nodes share channels over core NATS subjects (docs/deployment.md, Several
nodes through NATS).

- One subject per channel, ``<key_prefix>.c.<channel id, escaped>``, subscribed while the node
  holds the channel (from ``ready`` until ``forget``).
- Core NATS has no sequencer and no history, so ids cannot be global: a publish goes to NATS
  only (never straight into the local hub), every node that holds the channel receives it back
  (this one too) and numbers it itself, in the order it arrives (Hub.deliver_local), like a
  local publish.  NATS keeps one publisher's messages in order for each subscriber, so every
  subscriber of every node gets each message once, in the order its publisher sent them.
- History is per node.  The (time, tag) positions a node gives out carry its mark
  (Hub.set_position_mark: tags k * 4096 + a residue drawn at start): a resume on another node
  is recognised and gets the gap signal (id -4), never a silent loss; a resume on the same
  node reads that node's history as with the memory broker.
- The publisher's 200 comes after NATS accepted the publish: the publishes of a loop turn are
  written together, then one PING/PONG (flush) confirms them all.  While NATS is unreachable a
  publish raises BrokerUnavailable at once (503): nothing is buffered for later.
- Received messages are collected per socket read (nats-py's per-message Msg objects and
  per-subscription queues are bypassed) and handed to the core in one call.
- nats-py reconnects (backing off from 0.1 s, doubling with jitter up to
  ``reconnect_max_delay``: gogin.natstap.backoff) and resubscribes;
  what other nodes published meanwhile did not reach this node: each held channel's
  subscribers get the gap signal once the connection is back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import struct
from typing import Optional

from nats.errors import Error as _NatsError

from gogin.auth import safe_url
from gogin.brokers.base import BrokerUnavailable, PublishResult, report_failure
from gogin.natstap import TapClient, backoff

log = logging.getLogger("gogin.broker")

MARK_MODULUS = 4096              # a node's tags are k * 4096 + its residue (Hub.set_position_mark)
ENV_HEAD = struct.Struct(">BBHHHQQQI")   # the envelope header (gogin/_core/envelope.pyx)
ENV_DELETED = 2                  # envelope flag: the channel was deleted
REDIS_DEFAULT_URL = "redis://127.0.0.1:6379/0"   # broker.url's default, meant for Redis
NATS_DEFAULT_URL = "nats://127.0.0.1:4222"        # ... what type = "nats" takes instead
RECONNECT_FIRST = 0.1            # s: the first reconnect wait, doubling up to reconnect_max_delay
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def subject_token(name: str) -> str:
    """A channel id as one subject token: letters, digits, '_' and '-' as they are, every
    other byte of its UTF-8 as %XX (so '.', '*', '>', spaces and '%' itself are safe)."""
    raw = name.encode("utf-8", "surrogatepass")
    if all(b in _SAFE for b in raw):
        return name
    return "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)


def envelope(payload: bytes, eid: bytes, etype: bytes, flags: int) -> bytes:
    """What goes on a subject: the broker envelope with no numbering (epoch 0, id 1): each
    node numbers what it receives."""
    return ENV_HEAD.pack(1, flags, len(eid), len(etype), 0, 0, 1, 0, 0) + eid + etype + payload


class NatsBroker:
    name = "nats"
    shared = True

    def __init__(self, server):
        self.server = server
        self.hub = server.hub
        self.cfg = server.config.broker
        url = self.cfg.url if self.cfg.url != REDIS_DEFAULT_URL else NATS_DEFAULT_URL
        self.servers = [u.strip() for u in url.split(",") if u.strip()]
        self.prefix = f"{self.cfg.key_prefix}.c."
        self.nc: Optional[TapClient] = None
        self.closing = False
        self.up = False
        self._subs: dict = {}                 # channel id -> nats Subscription
        self._pending: dict = {}              # channel id -> future of its subscription
        self._sids: dict = {}                 # sid -> (self._take, channel id): the client's taps
        self._batch: list = []                # [name, envelope, ...] of this loop turn
        self._batch_scheduled = False
        self._outbox: list = []               # [(subjects, envelopes, future or callback)]
        self._writer: Optional[asyncio.Task] = None
        self._failures: dict = {}
        self.errors: dict = {}
        self.counters = {"published": 0, "publish_errors": 0, "fills": 0, "reconnects": 0,
                         "resubscribed": 0}
        self.residue = random.randrange(1, MARK_MODULUS)
        self._subjects: dict = {}             # channel id -> subject (cached)
        self._start_error = None              # the last connect failure during start()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.hub.set_gap_text(b"Messages were lost.")
        self.hub.set_position_mark(MARK_MODULUS, self.residue)
        nc = TapClient()
        nc.taps = self._sids
        where = ", ".join(safe_url(u) for u in self.servers)
        cfg = self.cfg
        self._start_error = None
        try:
            # nats-py retries an unreachable server for ever, even at start: bounded here, so
            # that an unreachable NATS stops start-up with the reason it gave
            await asyncio.wait_for(nc.connect(
                servers=self.servers, connect_timeout=cfg.connect_timeout,
                allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_to_server_handler=backoff(RECONNECT_FIRST, cfg.reconnect_max_delay),
                ping_interval=cfg.ping_interval, max_outstanding_pings=2,
                error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected, name="gogin"), cfg.connect_timeout)
        except (OSError, asyncio.TimeoutError, _NatsError) as e:
            if isinstance(e, asyncio.TimeoutError) and self._start_error is not None:
                e = self._start_error
            try:
                await nc.close()
            except (OSError, asyncio.TimeoutError, _NatsError) as e2:
                log.debug("broker: closing the NATS client that did not connect: %s", e2)
            why = "timed out" if isinstance(e, asyncio.TimeoutError) else \
                (getattr(e, "strerror", None) or str(e) or type(e).__name__).lower()
            raise BrokerUnavailable(f"cannot connect to NATS at {where}: {why}") from None
        self.nc = nc
        self.up = True
        self.counters["reconnects"] += 1
        log.info("broker: nats at %s (subject prefix %r, position mark %d)", where,
                 self.prefix, self.residue)

    async def close(self) -> None:
        self.closing = True
        if self.nc is not None:
            try:
                await asyncio.wait_for(self.nc.close(), 2)
            except (OSError, asyncio.TimeoutError, _NatsError) as e:
                log.debug("broker: closing the NATS connection: %s", e)

    # -- state ---------------------------------------------------------------------------------

    def note_failure(self, kind: str, e) -> None:
        """Logged once per kind (and again after the broker was up meanwhile), counted always."""
        n = self._failures.get(kind, 0)
        self._failures[kind] = n + 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if n == 0:
            log.error("broker: NATS %s failed: %s", kind, e)

    async def _on_error(self, e):
        if self.nc is None:
            self._start_error = e                # reported by start()
        elif not self.closing:
            self.note_failure("connection", e)

    async def _on_disconnected(self):
        if self.up and not self.closing:
            log.warning("broker: lost the NATS connection; reconnecting")
        self.up = False

    async def _on_reconnected(self):
        """nats-py subscribed every subject again.  What was published while this node was
        away did not reach it (core NATS keeps nothing): the gap signal, once per channel."""
        self.up = True
        self._failures.clear()
        self.counters["reconnects"] += 1
        names = [n for n in self._subs if self.hub.channel(n) is not None]
        for n in names:
            self.hub.mark_gap(n, True)
        self.counters["resubscribed"] += len(names)
        log.warning("broker: the NATS connection is back (%d channels subscribed again)",
                    len(names))

    def _connected(self) -> bool:
        nc = self.nc
        return self.up and nc is not None and nc.is_connected

    def state(self) -> dict:
        up = self._connected()
        return {"broker": "nats", "state": "ok" if up else "degraded",
                "connections_up": int(up), "connections": 1, "channels": len(self._subs),
                **self.counters, "errors": dict(self.errors),
                **{f"received_{k}": v for k, v in self.hub.broker_counters().items()}}

    async def cluster_channels(self, names) -> dict:
        """{channel: (published, stored, subscribers)} as this node has them: core NATS keeps
        no counts, so channel statistics describe the answering node."""
        out = {}
        for n in names:
            ch = self.hub.channel(n)
            if ch is not None:
                out[n] = (ch.published, ch.stored, ch.subscribers)
        return out

    # -- publishing ----------------------------------------------------------------------------

    def _subject(self, name: str) -> str:
        s = self._subjects.get(name)
        if s is None:
            if len(self._subjects) >= 100_000:
                self._subjects.clear()
            s = self._subjects[name] = self.prefix + subject_token(name)
        return s

    def publish(self, channels, payload, event_id, event_type, binary) -> asyncio.Future:
        """A future of the per-channel PublishResult list, set once NATS confirmed the publish
        (BrokerUnavailable when it could not be sent).  The counts are this node's."""
        out = asyncio.get_running_loop().create_future()
        channels = list(channels)
        self._queue(channels, payload, event_id, event_type, binary, out)
        return out

    def publish_nowait(self, channels, payload, event_id, event_type, binary,
                       on_error=None) -> None:
        fut = asyncio.get_running_loop().create_future()
        report_failure(fut, on_error)
        self._queue(list(channels), payload, event_id, event_type, binary, fut)

    def _queue(self, channels, payload, event_id, event_type, binary, out):
        if not self._connected():
            return self._failed(out, "NATS is unreachable")
        eid = event_id.encode() if isinstance(event_id, str) else (event_id or b"")
        etype = event_type.encode() if isinstance(event_type, str) else (event_type or b"")
        env = envelope(payload, eid, etype, 1 if binary else 0)
        self._outbox.append(([self._subject(n) for n in channels], env, channels, out))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())

    async def _write(self):
        """Send what the loop turn queued, in order, then one flush (PING/PONG) confirms it."""
        await asyncio.sleep(0)                    # let the turn's other publishes join
        while self._outbox:
            batch, self._outbox = self._outbox, []
            nc = self.nc
            err = None
            try:
                if not self._connected():
                    raise BrokerUnavailable("NATS is unreachable")
                for subjects, env, _, _ in batch:
                    for s in subjects:
                        await nc.publish(s, env)
                await nc.flush(timeout=self.cfg.connect_timeout)
            except (BrokerUnavailable, OSError, asyncio.TimeoutError, _NatsError) as e:
                err = e
            for _, _, channels, out in batch:
                if err is not None:
                    self._failed(out, err)
                    continue
                self.counters["published"] += 1
                if not out.done():
                    out.set_result([self._result(n) for n in channels])

    def _result(self, name: str) -> PublishResult:
        ch = self.hub.channel(name)
        if ch is None:
            return PublishResult(name, 0, 0)
        return PublishResult(name, ch.published, ch.stored)

    def _failed(self, out, e):
        self.counters["publish_errors"] += 1
        self.note_failure("publish", e or "unreachable")
        if not out.done():
            out.set_exception(BrokerUnavailable(f"NATS did not take the publish: {e}"))

    def delete(self, channel: str, text: bytes = b"Channel deleted"):
        """Every node holding the channel (this one too) deletes it when the deletion comes
        back; True once NATS took it (no node keeps a record of channels it does not hold)."""
        out = asyncio.get_running_loop().create_future()
        if not self._connected():
            self._failed(out, "NATS is unreachable")
        else:
            self._outbox.append(([self._subject(channel)], envelope(text, b"", b"", ENV_DELETED),
                                 [channel], out))
            if self._writer is None or self._writer.done():
                self._writer = asyncio.ensure_future(self._write())
        return self._deleted(out)

    async def _deleted(self, out) -> bool:
        await out
        return True

    # -- receiving -----------------------------------------------------------------------------

    def _take(self, name: str, subject, reply, data: bytes, headers) -> None:
        self._batch.append(name)
        self._batch.append(data)
        if not self._batch_scheduled:
            self._batch_scheduled = True
            asyncio.get_running_loop().call_soon(self._deliver)

    def _deliver(self) -> None:
        """One read's messages (a loop turn's), numbered and fanned out in the core."""
        batch, self._batch = self._batch, []
        self._batch_scheduled = False
        held = self.hub.deliver_local(batch)
        if held:
            for name, env in held:
                text = env[ENV_HEAD.size:] or b"Channel deleted"
                self.server.delete_channel(name, text, local=True)

    # -- subscriptions -------------------------------------------------------------------------

    def ready(self, channels):
        todo = [n for n in channels if n not in self._subs or self.hub.channel(n) is None]
        if not todo:
            return None
        return self._subscribe(todo)

    async def _subscribe(self, names):
        """Subscribe the channels' subjects, then one flush: once it returns, the server has
        the SUBs, so nothing published after the subscriber starts is missed."""
        if not self._connected():
            raise BrokerUnavailable("NATS is unreachable")
        nc = self.nc
        loop = asyncio.get_running_loop()
        waits, mine = [], []
        for n in names:
            fut = self._pending.get(n)
            if fut is not None:                  # another subscriber of it is on the way
                waits.append(fut)
            elif n not in self._subs or self.hub.channel(n) is None:
                self._pending[n] = loop.create_future()
                mine.append(n)
        err = None
        try:
            for n in mine:
                self.hub.ensure_channel(n)
                # what was published before this node listened is not here
                self.hub.mark_gap(n, False)
                old = self._subs.pop(n, None)
                if old is not None:
                    self._sids.pop(old._id, None)
                    self._unsubscribe(old)
                sub = await nc.subscribe(self._subject(n))
                self._subs[n] = sub
                self._sids[sub._id] = (self._take, n)
            if mine:
                await nc.flush(timeout=self.cfg.connect_timeout)
        except (OSError, asyncio.TimeoutError, _NatsError) as e:
            self.note_failure("subscribe", e)
            err = BrokerUnavailable(f"NATS is unreachable: {e}")
        for n in mine:
            fut = self._pending.pop(n, None)
            if fut is not None and not fut.done():
                fut.set_result(err)
        for fut in waits:
            err = err or await fut
        if err is not None:
            raise err

    def _unsubscribe(self, sub) -> None:
        if self._connected():
            task = asyncio.ensure_future(sub.unsubscribe())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def forget(self, channel: str) -> None:
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        self._sids.pop(sub._id, None)
        self._unsubscribe(sub)
