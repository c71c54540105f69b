"""The Redis broker: every node with the same Redis and key prefix shares channels, history and
resume (docs/deployment.md, Redis broker).

- A publish is one atomic script call (redis_publish.lua): Redis gives each channel's message
  its id (an epoch and a sequence), the (time, tag) and stores it in the channel's history,
  then PUBLISHes the same envelope.  Ids are global per channel: a client resumes on any node.
- A node SUBSCRIBEs a channel while it holds it (from its first local subscriber until the
  sweeper reclaims it), over ``pubsub_connections`` connections chosen by hash of the id.
- Received envelopes go to the core in one batch per socket read (Hub.deliver_batch), which
  delivers the next id, drops old ones and hands back the rest (a jump, a new epoch, a deleted
  channel); for those this module reads the channel's history and the core fills from it
  (Hub.deliver_fill, Hub.sync_position), sending the gap signal when messages are gone.
- Before a node's first subscriber of a channel starts, the channel is subscribed and its
  history loaded (``ready``), so a resume reads from a complete local copy.
- Connections reconnect with backoff; PUB/SUB connections resubscribe their channels in
  batches and read what was published meanwhile; an idle probe (PING) finds a dead connection.
  While Redis is unreachable a publish raises BrokerUnavailable (the publisher answers 503).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import time
import zlib
from importlib import resources
from typing import Optional

from redis.connection import parse_url

from gogin.auth import safe_url
from gogin.brokers.base import BrokerUnavailable, PublishResult, report_failure
from gogin.brokers.resp import RespError, RespProtocol, open_connection

log = logging.getLogger("gogin.broker")

SUBSCRIBE_BATCH = 1000          # channel ids per SUBSCRIBE command when resubscribing
FILL_BATCH = 256                # history reads pipelined at once after a reconnect
HELD_MAX = 10_000               # live envelopes held per channel while its history is read
META_TTL = 7 * 86400            # a channel's numbering outlives its last publish by this much


def _script(name: str) -> str:
    return resources.files("gogin.brokers").joinpath(name).read_text()


PUBLISH_LUA = _script("redis_publish.lua")
READ_LUA = _script("redis_read.lua")
DELETE_LUA = _script("redis_delete.lua")


def _in_order(envelopes: list) -> list:
    """Stored and held envelopes in id order within each epoch (epochs in the order they
    first appear): the live ones held during a read may start before what the history still
    had (a burst trimmed it), and must not be taken for duplicates of a gap."""
    rank: dict = {}

    def key(env: bytes):
        epoch = int.from_bytes(env[8:16], "big")
        return (rank.setdefault(epoch, len(rank)), int.from_bytes(env[16:24], "big"))
    return sorted(envelopes, key=key) if len(envelopes) > 1 else envelopes


class _Link:
    """One connection that comes back: connect, watch (idle probe), reconnect with backoff."""

    def __init__(self, broker: "RedisBroker", index: int, pubsub: bool):
        self.broker = broker
        self.index = index
        self.pubsub = pubsub
        self.proto: Optional[RespProtocol] = None
        self.up = asyncio.Event()
        self.channels: set = set()           # PUB/SUB: the ids subscribed over this link
        self.confirmed = 0                   # PUB/SUB: subscribe confirmations seen
        self._confirm_waiters: list = []     # (count to reach, future)
        self.task: Optional[asyncio.Task] = None
        self.pong = asyncio.Event()

    async def connect(self):
        b = self.broker
        on_push = self._on_push if self.pubsub else None
        self.proto = await open_connection(b.params, b.cfg.connect_timeout, on_push=on_push,
                                           on_lost=self._on_lost)
        if not self.pubsub:
            await b.load_scripts(self.proto)
        self.up.set()

    def _on_lost(self, proto):
        if proto is self.proto:
            self.up.clear()
            self.confirmed = 0
            for _, fut in self._confirm_waiters:
                if not fut.done():
                    fut.set_exception(BrokerUnavailable("Redis connection lost"))
            self._confirm_waiters = []
            if not self.broker.closing:
                self.broker.note_down(self)

    async def run(self):
        """Keep the connection up: probe it while up, reconnect when it drops."""
        b = self.broker
        delay = 0.1
        while not b.closing:
            if not self.up.is_set():
                try:
                    await self.connect()
                except (OSError, asyncio.TimeoutError, RespError) as e:
                    b.note_failure("connect", e)
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, b.cfg.reconnect_max_delay)
                    continue
                delay = 0.1
                b.note_up(self)
            await self._probe()

    async def _probe(self):
        """One idle probe: a PING unanswered within ping_interval means a dead connection
        (a half-open TCP connection looks alive to the kernel for a long time)."""
        interval = self.broker.cfg.ping_interval
        await asyncio.sleep(interval)
        proto = self.proto
        if proto is None or proto.closed:
            return
        if proto._loop.time() - proto.last_read < interval / 2:
            return                               # it spoke recently
        try:
            if self.pubsub:
                self.pong.clear()
                proto.send("PING")
                await asyncio.wait_for(self.pong.wait(), interval)
            else:
                await asyncio.wait_for(proto.call("PING"), interval)
        except (asyncio.TimeoutError, RespError):
            log.warning("broker: Redis %s connection %d did not answer a PING in %.0f s: "
                        "reconnecting", "PUB/SUB" if self.pubsub else "command", self.index,
                        interval)
            proto.close()

    # -- PUB/SUB -------------------------------------------------------------------------------

    def _on_push(self, batch: list):
        """One socket read of the PUB/SUB connection."""
        msgs = None
        for r in batch:
            kind = r[0] if isinstance(r, list) else None
            if kind == b"message":
                if msgs is None:
                    msgs = []
                msgs.append(r)
            elif kind == b"subscribe":
                self.confirmed += 1
                self._wake()
            elif kind == b"pong" or r == b"PONG":     # subscribed, or not yet
                self.pong.set()
            elif isinstance(r, RespError):
                self.broker.note_failure("pubsub", r)
        if msgs:
            held = self.broker.hub.deliver_batch(msgs, self.broker.chan_prefix_len)
            if held:
                self.broker.on_held(held)

    def _wake(self):
        keep = []
        for target, fut in self._confirm_waiters:
            if self.confirmed >= target:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((target, fut))
        self._confirm_waiters = keep

    async def subscribe(self, names: list) -> None:
        """SUBSCRIBE names (in batches) and wait until Redis confirmed every one."""
        proto = self.proto
        if proto is None or not self.up.is_set():
            raise BrokerUnavailable("Redis is unreachable")
        prefix = self.broker.chan_prefix
        fut = proto._loop.create_future()
        target = self.confirmed + len(names)
        self._confirm_waiters.append((target, fut))
        for i in range(0, len(names), SUBSCRIBE_BATCH):
            proto.send("SUBSCRIBE", *[prefix + n for n in names[i:i + SUBSCRIBE_BATCH]])
        await asyncio.wait_for(fut, self.broker.cfg.connect_timeout)

    def unsubscribe(self, name: str) -> None:
        proto = self.proto
        if proto is not None and self.up.is_set():
            proto.send("UNSUBSCRIBE", self.broker.chan_prefix + name)
            # its confirmation is an "unsubscribe" push: not counted


class RedisBroker:
    name = "redis"
    shared = True

    def __init__(self, server):
        self.server = server
        self.hub = server.hub
        self.cfg = server.config.broker
        lim = server.config.limits
        try:
            self.params = parse_url(self.cfg.url)
        except ValueError as e:
            raise ValueError(f"broker.url: {e}") from None
        self.params["ssl"] = self.cfg.url.startswith("rediss://")
        p = self.cfg.key_prefix
        self.chan_prefix = f"{p}:c:"                 # PUB/SUB channel of channel id X: p:c:X
        self.chan_prefix_len = len(self.chan_prefix.encode())
        self.clock_key = f"{p}:clock"
        self.max_stored = lim.max_messages_stored_per_channel
        self.ttl_ms = int(lim.message_ttl * 1000)
        self.closing = False
        self.cmd = [_Link(self, i, False) for i in range(self.cfg.publish_connections)]
        self.subs = [_Link(self, i, True) for i in range(self.cfg.pubsub_connections)]
        self._rr = 0
        self._sha: dict = {}                         # script name -> sha1
        self._ready: set = set()                     # channel ids subscribed and filled
        self._pending: dict = {}                     # id -> future of its subscription
        self._held: dict = {}                        # id -> live envelopes held during a fill
        self._filling: set = set()
        self._failures: dict = {}                    # kind -> count since it was last logged
        self.errors: dict = {}                       # kind -> count, for ever (/metrics)
        self.counters = {"published": 0, "publish_errors": 0, "fills": 0, "reconnects": 0,
                         "resubscribed": 0}
        self._tasks: list = []
        self._was_down = False
        self._keys: dict = {}                        # channel id -> (meta key, history key)
        # the cluster view (docs/deployment.md, Statistics across nodes): this node's counts
        # in Redis under a TTL, every node's read back at each heartbeat
        self.node_id = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self.nodes: list = []                        # live nodes' documents, last heartbeat
        self._counted: set = set()                   # channels whose count this node wrote
        self._publish_args = (str(self.max_stored), str(self.ttl_ms), str(META_TTL))

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self.hub.set_gap_text(b"Messages were lost.")
        where = safe_url(self.cfg.url)
        try:
            for link in self.cmd + self.subs:
                await link.connect()
        except (OSError, asyncio.TimeoutError, RespError) as e:
            for link in self.cmd + self.subs:
                if link.proto is not None:
                    link.proto.close()
            why = "timed out" if isinstance(e, asyncio.TimeoutError) else \
                (getattr(e, "strerror", None) or str(e)).lower()
            raise BrokerUnavailable(f"cannot connect to Redis at {where}: {why}") from None
        for link in self.cmd + self.subs:
            self._tasks.append(asyncio.ensure_future(link.run()))
        await self._heartbeat_once()
        self._tasks.append(asyncio.ensure_future(self._heartbeat()))
        log.info("broker: redis at %s (key prefix %r)", where, self.cfg.key_prefix)

    async def close(self) -> None:
        if not self.closing:
            try:                                     # leave the cluster view at once
                proto = self._command_link(False)
                p = self.cfg.key_prefix
                proto.fire("DEL", f"{p}:node:{self.node_id}")
                proto.fire("SREM", f"{p}:nodes", self.node_id)
                proto._flush()
            except BrokerUnavailable:
                pass
        self.closing = True
        for t in self._tasks:
            t.cancel()
        for link in self.cmd + self.subs:
            if link.proto is not None:
                link.proto.close()

    async def load_scripts(self, proto: RespProtocol):
        for name, src in (("publish", PUBLISH_LUA), ("read", READ_LUA),
                          ("delete", DELETE_LUA)):
            self._sha[name] = (await proto.call("SCRIPT", "LOAD", src)).decode()

    # -- state ---------------------------------------------------------------------------------

    def note_failure(self, kind: str, e: BaseException):
        """Logged once per kind (and again after the broker was up meanwhile), counted always."""
        n = self._failures.get(kind, 0)
        self._failures[kind] = n + 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if n == 0:
            log.error("broker: Redis %s failed: %s", kind, e)

    def note_down(self, link: _Link):
        if not self._was_down:
            log.warning("broker: lost a Redis connection; reconnecting")
        self._was_down = True
        if link.pubsub:
            # its channels are no longer received: subscribe them again when it is back
            for n in link.channels:
                self._ready.discard(n)

    def note_up(self, link: _Link):
        self.counters["reconnects"] += 1
        if self._was_down and all(lk.up.is_set() for lk in self.cmd + self.subs):
            log.warning("broker: Redis connections are back")
            self._was_down = False
            self._failures.clear()
        if link.pubsub and link.channels:
            asyncio.ensure_future(self._resubscribe(link))

    async def _resubscribe(self, link: _Link):
        """After a reconnect: every channel of the link again, in batches, then each one's
        history read past what this node has (published meanwhile, with a persistent Redis)."""
        names = [n for n in link.channels if self.hub.channel(n) is not None]
        link.channels = set(names)
        t0 = time.monotonic()
        try:
            await link.subscribe(names)
        except (BrokerUnavailable, asyncio.TimeoutError):
            return                                   # down again: the next reconnect retries
        self.counters["resubscribed"] += len(names)
        log.info("broker: resubscribed %d channels in %.3f s", len(names), time.monotonic() - t0)
        for i in range(0, len(names), FILL_BATCH):
            await asyncio.gather(*[self._fill(n) for n in names[i:i + FILL_BATCH]],
                                 return_exceptions=True)
        self._ready.update(n for n in names if self.hub.channel(n) is not None)

    def state(self) -> dict:
        up = sum(lk.up.is_set() for lk in self.cmd + self.subs)
        total = len(self.cmd) + len(self.subs)
        return {"broker": "redis", "state": "ok" if up == total else "degraded",
                "connections_up": up, "connections": total,
                "channels": len(self._ready), **self.counters, "errors": dict(self.errors),
                **{f"received_{k}": v for k, v in self.hub.broker_counters().items()}}

    # -- publishing ----------------------------------------------------------------------------

    def _command_link(self, ordered: bool) -> RespProtocol:
        """Publishes take the first connection that is up (one connection keeps a publisher's
        messages in order: Redis runs a connection's commands in order); reads spread."""
        n = len(self.cmd)
        start = 0 if ordered else self._rr
        self._rr += 1
        for i in range(n):
            link = self.cmd[(start + i) % n]
            if link.up.is_set() and link.proto is not None and not link.proto.closed:
                return link.proto
        raise BrokerUnavailable("Redis is unreachable")

    async def _script_call(self, name: str, keys: list, args: list):
        if name == "read" and not any(lk.up.is_set() for lk in self.cmd):
            # a PUB/SUB connection came back before the command ones: wait for them a little
            waits = [asyncio.ensure_future(lk.up.wait()) for lk in self.cmd]
            await asyncio.wait(waits, timeout=self.cfg.connect_timeout,
                               return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        proto = self._command_link(name != "read")
        try:
            return await proto.call("EVALSHA", self._sha[name], str(len(keys)), *keys, *args)
        except RespError as e:
            if str(e).startswith("NOSCRIPT"):         # Redis restarted without its cache
                await self.load_scripts(proto)
                return await proto.call("EVALSHA", self._sha[name], str(len(keys)), *keys,
                                        *args)
            raise

    def publish(self, channels, payload, event_id, event_type, binary) -> asyncio.Future:
        """A future of the per-channel PublishResult list (BrokerUnavailable when Redis did
        not take it).  Callbacks, not coroutines: a publish costs one pipelined command and
        one future, so a node publishes near the rate Redis runs the script at."""
        loop = asyncio.get_running_loop()
        out = loop.create_future()
        channels = list(channels)
        eid = event_id.encode() if isinstance(event_id, str) else (event_id or b"")
        etype = event_type.encode() if isinstance(event_type, str) else (event_type or b"")
        cmd = self._publish_command(channels, payload, eid, etype, binary)
        self._send_publish(cmd, channels, out, retried=False)
        return out

    def publish_nowait(self, channels, payload, event_id, event_type, binary,
                       on_error=None) -> None:
        """publish() for a publisher that waits for nothing (the publisher WebSocket, client
        messages): no future at all; on_error(text) if Redis did not take it."""
        eid = event_id.encode() if isinstance(event_id, str) else (event_id or b"")
        etype = event_type.encode() if isinstance(event_type, str) else (event_type or b"")
        cmd = self._publish_command(channels, payload, eid, etype, binary)
        try:
            proto = self._command_link(True)
        except BrokerUnavailable as e:
            self._nowait_failed(e, on_error)
            return
        cmd[1] = self._sha["publish"]

        def done(reply):
            if not isinstance(reply, RespError):
                self.counters["published"] += 1
            elif str(reply).startswith("NOSCRIPT"):
                fut = self.publish(channels, payload, event_id, event_type, binary)
                report_failure(fut, on_error)
            else:
                self._nowait_failed(reply, on_error)
        proto.call_cb(cmd, done)

    def _nowait_failed(self, e, on_error):
        self.counters["publish_errors"] += 1
        self.note_failure("publish", e)
        if on_error is not None:
            on_error(f"Redis did not take the publish: {e}")

    def _publish_command(self, channels, payload, eid, etype, binary) -> list:
        keys = self._keys
        cmd = ["EVALSHA", None, str(1 + 2 * len(channels)), self.clock_key]
        for n in channels:
            pair = keys.get(n)
            if pair is None:
                if len(keys) >= 100_000:
                    keys.clear()
                p = self.cfg.key_prefix
                pair = keys[n] = (f"{p}:m:{n}", f"{p}:h:{n}")
            cmd += pair
        cmd += self._publish_args
        cmd += ("1" if binary else "0", eid, etype, payload, self.chan_prefix, *channels)
        return cmd

    def _send_publish(self, cmd, channels, out, retried):
        try:
            proto = self._command_link(True)
        except BrokerUnavailable as e:
            return self._publish_failed(out, e)
        cmd[1] = self._sha["publish"]
        fut = proto.call(*cmd)
        fut.add_done_callback(lambda f: self._published(f, cmd, channels, out, retried))

    def _published(self, fut, cmd, channels, out, retried):
        exc = fut.exception()
        if exc is None:
            self.counters["published"] += 1
            reply = fut.result()
            if not out.done():
                out.set_result([PublishResult(n, reply[2 * i], reply[2 * i + 1])
                                for i, n in enumerate(channels)])
        elif not retried and str(exc).startswith("NOSCRIPT"):
            # Redis restarted without its script cache: load it, send again (once)
            asyncio.ensure_future(self._reload_and_resend(cmd, channels, out))
        else:
            self._publish_failed(out, exc)

    async def _reload_and_resend(self, cmd, channels, out):
        try:
            await self.load_scripts(self._command_link(True))
        except (RespError, BrokerUnavailable) as e:
            return self._publish_failed(out, e)
        self._send_publish(cmd, channels, out, retried=True)

    def _publish_failed(self, out, e):
        self.counters["publish_errors"] += 1
        self.note_failure("publish", e)
        if not out.done():
            out.set_exception(BrokerUnavailable(f"Redis did not take the publish: {e}"))

    def delete(self, channel: str, text: bytes = b"Channel deleted"):
        return self._delete(channel, text)

    async def _delete(self, channel: str, text: bytes) -> bool:
        """True if Redis had the channel.  Every node subscribed to it (this one too) deletes
        it locally when the deletion comes back (on_held)."""
        p = self.cfg.key_prefix
        try:
            return 0 < await self._script_call("delete", [f"{p}:m:{channel}", f"{p}:h:{channel}"],
                                    [self.chan_prefix + channel, text])
        except (RespError, BrokerUnavailable) as e:
            self.note_failure("delete", e)
            raise BrokerUnavailable(f"Redis did not take the delete: {e}") from None

    # -- statistics across nodes -------------------------------------------------------------
    #
    # Every node_ttl / 3 a node writes its document (PREFIX:node:ID, expiring after node_ttl)
    # and, per channel it holds subscribers of, its count in the hash PREFIX:s:CHANNEL (field:
    # node id); then it reads every live node's document.  A count whose node's document
    # expired (the node died) is not counted.

    async def _heartbeat(self):
        while not self.closing:
            await asyncio.sleep(self.cfg.node_ttl / 3)
            try:
                await self._heartbeat_once()
            except (RespError, BrokerUnavailable) as e:
                self.note_failure("heartbeat", e)

    async def _heartbeat_once(self):
        proto = self._command_link(False)
        p = self.cfg.key_prefix
        hub = self.hub
        ttl_ms = str(int(self.cfg.node_ttl * 1000))
        st = hub.stats()
        doc = {"id": self.node_id, "hostname": socket.gethostname(), "pid": os.getpid(),
               "uptime": int(time.monotonic() - self.server.started),
               "connections": st["connections"], "subscribers": st["subscribers"],
               "channels": st["channels"]}
        counts = {}
        for n in self._ready:
            ch = hub.channel(n)
            if ch is not None and ch.subscribers:
                counts[n] = ch.subscribers
        proto.fire("SET", f"{p}:node:{self.node_id}", json.dumps(doc), "PX", ttl_ms)
        proto.fire("SADD", f"{p}:nodes", self.node_id)
        for n, c in counts.items():
            proto.fire("HSET", f"{p}:s:{n}", self.node_id, str(c))
            proto.fire("PEXPIRE", f"{p}:s:{n}", ttl_ms)
        for n in self._counted - counts.keys():
            proto.fire("HDEL", f"{p}:s:{n}", self.node_id)
        self._counted = set(counts)
        ids = await proto.call("SMEMBERS", f"{p}:nodes")
        if not ids:
            self.nodes = [doc]
            return
        docs = await proto.call("MGET", *[f"{p}:node:{i.decode()}" for i in ids])
        live, dead = [], []
        for i, d in zip(ids, docs):
            (live if d is not None else dead).append(json.loads(d) if d else i)
        if dead:
            proto.fire("SREM", f"{p}:nodes", *dead)
        self.nodes = sorted(live, key=lambda d: (d["hostname"], d["pid"]))

    async def cluster_channels(self, names) -> dict:
        """{channel: (published, stored, subscribers on every live node)} for the channels
        that exist in Redis or have subscribers somewhere (channel statistics)."""
        proto = self._command_link(False)
        p = self.cfg.key_prefix
        live = {d["id"] for d in self.nodes} | {self.node_id}
        futs = []
        for n in names:
            futs.append((n, proto.call("HGET", f"{p}:m:{n}", "s"), proto.call("LLEN", f"{p}:h:{n}"),
                         proto.call("HGETALL", f"{p}:s:{n}")))
        out = {}
        for n, published, stored, subs in futs:
            try:
                published, stored, subs = await published, await stored, await subs
            except RespError as e:
                raise BrokerUnavailable(f"Redis did not answer: {e}") from None
            ch = self.hub.channel(n)
            counts = dict(zip(subs[::2], subs[1::2]))
            total = sum(int(v) for k, v in counts.items() if k.decode() in live
                        and k.decode() != self.node_id)
            total += ch.subscribers if ch is not None else 0   # this node's, as of now
            if published is None and not total and ch is None:
                continue
            out[n] = (int(published or 0), stored, total)
        return out

    # -- subscriptions -------------------------------------------------------------------------

    def _link_of(self, name: str) -> _Link:
        return self.subs[zlib.crc32(name.encode("utf-8", "surrogatepass")) % len(self.subs)]

    def ready(self, channels):
        todo = [n for n in channels if n not in self._ready or self.hub.channel(n) is None]
        if not todo:
            return None
        return self._make_ready(todo)

    async def _make_ready(self, names):
        waits = []
        fresh: dict = {}
        for n in names:
            fut = self._pending.get(n)
            if fut is None:
                fut = asyncio.get_running_loop().create_future()
                self._pending[n] = fut
                fresh.setdefault(self._link_of(n), []).append(n)
            waits.append(fut)
        for link, group in fresh.items():
            asyncio.ensure_future(self._subscribe_group(link, group))
        await asyncio.gather(*waits)

    async def _subscribe_group(self, link: _Link, names: list):
        try:
            for n in names:
                self.hub.ensure_channel(n)
            new = [n for n in names if n not in link.channels]
            if new:
                link.channels.update(new)
                await link.subscribe(new)
            filled = await asyncio.gather(*[self._fill(n) for n in names])
            if not all(filled):
                raise BrokerUnavailable("the history read failed")
            for n in names:
                if self.hub.channel(n) is not None:
                    self._ready.add(n)
            err = None
        except (BrokerUnavailable, RespError, asyncio.TimeoutError) as e:
            err = BrokerUnavailable(f"Redis is unreachable: {e}")
        for n in names:
            fut = self._pending.pop(n, None)
            if fut is not None and not fut.done():
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

    def forget(self, channel: str) -> None:
        self._ready.discard(channel)
        link = self._link_of(channel)
        if channel in link.channels:
            link.channels.discard(channel)
            link.unsubscribe(channel)

    # -- order, gaps, history ------------------------------------------------------------------

    def on_held(self, held: list):
        """Envelopes the core did not deliver (Hub.deliver_batch): a deleted channel is
        deleted here; anything else waits for a read of its channel's history."""
        for name, env in held:
            if len(env) > 1 and env[1] & 2:                 # envelope flag: deleted
                self.server.delete_channel(name, env[36:] or b"Channel deleted", local=True)
                self._held.pop(name, None)
                continue
            q = self._held.setdefault(name, [])
            q.append(env)
            if len(q) > HELD_MAX:
                del q[0]                                    # the fill reports the gap
            if name not in self._filling:
                asyncio.ensure_future(self._fill(name))

    async def _fill(self, name: str) -> bool:
        """Read the channel's numbering and history, then the core fills from it (and from
        what was held meanwhile).  False: Redis did not answer (the held envelopes stay; the
        resubscription after the reconnect reads again)."""
        if name in self._filling:
            return True
        self._filling.add(name)
        p = self.cfg.key_prefix
        try:
            epoch, last, stored = await self._script_call(
                "read", [f"{p}:m:{name}", f"{p}:h:{name}"], [])
        except (RespError, BrokerUnavailable) as e:
            self.note_failure("history read", e)
            return False
        finally:
            self._filling.discard(name)
        self.counters["fills"] += 1
        held = self._held.pop(name, [])
        hub = self.hub
        if hub.channel(name) is None:
            return True
        hub.deliver_fill(name, _in_order((stored or []) + held))
        hub.sync_position(name, int(epoch or 0), int(last or 0))
        return True
