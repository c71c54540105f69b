"""NATS ingest: the main server publishes notifications to a NATS subject; gogin publishes what
arrives into its channels (docs/deployment.md, Ingest from NATS).  One job: NATS -> publish.

Two ways to read ([nats] in docs/configuration.md):
- core NATS (``ingest_durable`` empty): a plain subscription, in ``queue_group`` if set, so
  that several nodes take each message once.  At-most-once: a message that arrives while gogin
  is down or disconnected is lost.
- JetStream (``ingest_durable = "name"``): a durable *pull* consumer on ``ingest_stream``,
  fetched in batches of ``ingest_batch``; each message is acknowledged only after it was
  published (handed to the hub, stored when storage is on; a shared broker's publish is
  awaited).  Every node using the same durable name shares one consumer, so each message is
  published by one node.

Restarts and redeliveries (the design, docs/deployment.md): a JetStream message's event id is
its stream sequence (unless the message names one), and the sequences this process published
are remembered (as runs), so a redelivery of a message already published (its ack was lost
with a connection) is acknowledged without being published twice.  A process killed without
a chance to ack loses its memory, its history and its clients' queues; the messages it had
fetched come back only after the consumer's AckWait, out of order.  So at start, before the
consumer is read, the last ``ingest_replay`` messages the consumer had delivered are read
again from the stream (an ephemeral consumer, no acks) and published in stream order: history
holds them again, a client resuming with its last event id gets exactly what follows it, and
their later redeliveries are recognised as duplicates.  /healthz answers 503 while that runs.
With a shared broker (Redis) the history lives in the broker and survives the process: no
replay; a message published and not acknowledged before a kill is published again when it is
redelivered (at-least-once), with the same event id (its stream sequence).

A message that cannot be used (not JSON, no channel, a forbidden channel, too large, an event
id with CR/LF, ...) is terminated (JetStream: never redelivered), counted per kind, and logged
once per kind with its reason; it never stops ingest.  Nothing is logged per message.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from typing import Optional

import msgspec
from nats.aio.msg import Msg

from gogin.natstap import TapClient, backoff
from gogin.publish import HttpError, check_channel_id, event_field_error, is_text

log = logging.getLogger("gogin.ingest")

REJECT_KINDS = ("bad_json", "no_channel", "forbidden_channel", "bad_channel", "too_large",
                "empty", "bad_event_field")
PULL_EXPIRES = 5.0           # seconds a JetStream pull request waits for messages
PULL_DEPTH = 2               # pull requests outstanding
SETUP_RETRY_MAX = 10.0       # cap of the wait between reconnects / consumer set-ups
CHECKED_IDS_MAX = 4096       # channel ids remembered as valid (cleared when full)
RUNS_MAX = 8192              # runs of published stream sequences remembered (oldest dropped)
STOP_WAIT = 2.0              # seconds a stop waits for publishes under way
MAX_IN_FLIGHT = 1024         # a shared broker's publishes awaited at once
NAK_DELAY = 1.0              # seconds before a message whose publish failed comes back
ACK = b"+ACK"                # JetStream acknowledgements (ADR-15)
TERM = b"+TERM"
ENVELOPE_SLACK = 4096        # bytes of JSON around a base64 payload in an envelope


class IngestError(ConnectionError):
    """NATS unusable at start (down, stream missing, refused credentials), in words."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """ingest_channel = "message": the NATS message is this JSON object."""
    channel: Optional[str] = None
    channels: Optional[list[str]] = None
    text: Optional[str] = None
    data: Optional[bytes] = None             # base64 in JSON: published as a binary message
    event_id: Optional[str] = None
    event_type: Optional[str] = None


_decode_envelope = msgspec.json.Decoder(Envelope).decode


class Rejected(Exception):
    def __init__(self, kind: str, reason: str):
        self.kind = kind
        self.reason = reason


def shown_servers(url: str) -> str:
    from gogin.auth import safe_url
    return ",".join(safe_url(u.strip()) for u in url.split(","))


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    name = type(e).__name__
    if not text or text == name:
        return {"NoServersError": "no server answered (connection refused or timed out)",
                "TimeoutError": "timed out"}.get(name, name)
    return f"{name}: {text}"


class Ingest:
    def __init__(self, server):
        self.server = server
        self.cfg = server.config.nats
        self.limits = server.config.limits
        self.ingested = 0             # messages published (once each, whatever the channels)
        self.rejected = dict.fromkeys(REJECT_KINDS, 0)
        self.redelivered = 0          # JetStream deliveries with num_delivered > 1
        self.duplicates = 0           # ... of a message this process had published: acked only
        self.replayed = 0             # published again from the stream at start
        self.publish_failures = 0     # the publish raised: nak, redelivered later
        self.reconnects = 0
        self.state = "stopped"        # connecting | replaying | ok | disconnected | error
        self.error = ""
        self._logged: set = set()     # reject kinds and error kinds logged once
        self._checked: set = set()
        self._nc = None
        self._js = None
        self._pull_sub = None
        self._rx: list = []                  # the consumer's messages of this read, raw
        self._draining = False
        self._consumer_lost = False
        self._set_up = False                 # the consumer was set up once (replay done)
        self._in_flight: collections.deque = collections.deque()   # (reply, seq, future)
        self._acker: Optional[asyncio.Task] = None
        self._task: Optional[asyncio.Task] = None
        self._core_sub = None
        self._run_starts: list[int] = []     # closed runs of published stream sequences
        self._run_ends: list[int] = []
        self._cur_start = -2                 # the open run
        self._cur_end = -2
        prefix = self.cfg.ingest_subject_prefix if self.cfg.ingest_channel == "subject" else ""
        self._prefix = prefix
        self._prefix_len = len(prefix)
        self._by_subject = self.cfg.ingest_channel == "subject"
        self._max_size = self.limits.max_message_size
        self._events = self.limits.events_channel_id

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and start reading.  NATS down (or the stream missing) at start:
        IngestError with ingest_required, else a warning and retries in the background."""
        self.state = "connecting"
        try:
            await self._connect_and_setup()
        except IngestError as e:
            if self.cfg.ingest_required:
                await self._close_nc()
                self.state = "error"
                raise
            self.state = "error"
            self.error = e.message
            log.warning("%s; starting without NATS ingest, retrying in the background "
                        "(nats.ingest_required = false)", e.message)
            self._task = asyncio.ensure_future(self._retry_start())
            return
        self._run()

    async def stop(self) -> None:
        self.state = "stopped"            # the close below is no disconnection to report
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        for sub in (self._pull_sub, self._core_sub):    # take nothing more
            if sub is not None:
                try:
                    await sub.unsubscribe()
                except Exception:
                    pass
        if self._acker is not None:       # publishes under way: their acks go out
            try:
                await asyncio.wait_for(asyncio.shield(self._acker), STOP_WAIT)
            except (asyncio.TimeoutError, Exception):
                self._acker.cancel()      # unacknowledged: JetStream delivers them again
        await self._close_nc()            # flushes the acks written
        self.state = "stopped"

    async def _close_nc(self):
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await asyncio.wait_for(nc.close(), 2.0)
            except Exception:
                pass

    def _run(self):
        c = self.cfg
        how = (f"JetStream consumer {c.ingest_durable!r} of stream {c.ingest_stream!r}"
               if c.ingest_durable else "core NATS, at-most-once" + (
                   f", queue group {c.queue_group!r}" if c.queue_group else ""))
        log.info("NATS ingest: %s from %s (%s), channel from the %s", c.ingest_subject,
                 shown_servers(c.url), how, c.ingest_channel)
        if self.cfg.ingest_durable:
            self._task = asyncio.ensure_future(self._pull_loop())   # the watchdog
        self.state = "ok" if self._nc is not None and self._nc.is_connected else "disconnected"

    async def _retry_start(self):
        delay = self.cfg.reconnect_time_wait
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, SETUP_RETRY_MAX)
            try:
                await self._connect_and_setup()
            except IngestError as e:
                self.error = e.message
                await self._close_nc()
                continue
            log.info("NATS ingest: connected to %s", shown_servers(self.cfg.url))
            self._task = None
            self._run()
            return

    def _options(self) -> dict:
        c = self.cfg
        opts = dict(servers=[u.strip() for u in c.url.split(",")],
                    connect_timeout=c.connect_timeout,
                    reconnect_to_server_handler=backoff(
                        c.reconnect_time_wait, max(SETUP_RETRY_MAX, c.reconnect_time_wait)),
                    max_reconnect_attempts=-1, allow_reconnect=True, name="gogin-ingest",
                    error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected, closed_cb=self._on_closed,
                    skip_subject_validation=True)   # config-checked, or the server's own
        for key in ("user", "password", "token", "tls_hostname"):
            if getattr(c, key) is not None:
                opts[key] = getattr(c, key)
        if c.creds_file:
            opts["user_credentials"] = c.creds_file
        if c.nkeys_seed_file:
            opts["nkeys_seed"] = c.nkeys_seed_file
        if c.tls_ca_file or c.tls_cert_file or any(
                u.strip().startswith(("tls://", "wss://")) for u in c.url.split(",")):
            ctx = ssl.create_default_context(cafile=c.tls_ca_file)
            if c.tls_cert_file:
                ctx.load_cert_chain(c.tls_cert_file, c.tls_key_file)
            opts["tls"] = ctx
        return opts

    async def _connect_and_setup(self):
        where = shown_servers(self.cfg.url)
        if self._nc is None:
            opts = self._options()
            # nats-py retries a first connect forever when reconnects are unlimited: bound it
            budget = self.cfg.connect_timeout * len(opts["servers"]) + 1.0
            try:
                nc = TapClient()
                await asyncio.wait_for(nc.connect(**opts), budget)
                self._nc = nc
            except asyncio.TimeoutError:
                raise IngestError(f"cannot connect to NATS at {where}: no server answered "
                                  f"within {budget:.1f} s") from None
            except Exception as e:      # refused, TLS, authorization
                raise IngestError(f"cannot connect to NATS at {where}: {_describe(e)}") from None
        try:
            if self.cfg.ingest_durable:
                await self._setup_jetstream()
                await self._pull_start()
            else:
                self._core_sub = await self._nc.subscribe(
                    self.cfg.ingest_subject, queue=self.cfg.queue_group, cb=self._on_core_msg,
                    pending_msgs_limit=1 << 20, pending_bytes_limit=1 << 30)
        except IngestError:
            raise
        except Exception as e:
            raise IngestError(f"NATS at {where}: cannot read {self.cfg.ingest_subject!r}: "
                              f"{_describe(e)}") from None

    # -- NATS connection events (nats-py reconnects by itself, backing off: natstap) --------

    async def _on_error(self, e):
        self._log_once(("error", type(e).__name__),
                       "NATS ingest: %s (%s)", _describe(e), shown_servers(self.cfg.url))

    async def _on_disconnected(self):
        if self.state in ("ok", "replaying"):
            log.warning("NATS ingest: disconnected from %s, reconnecting",
                        shown_servers(self.cfg.url))
            self.state = "disconnected"

    async def _on_reconnected(self):
        self.reconnects += 1
        log.info("NATS ingest: reconnected to %s", shown_servers(self.cfg.url))
        if self.state == "disconnected":
            self.state = "ok"
        if self._pull_sub is not None:     # the old connection's pull requests are gone
            self._requests.clear()
            await self._refill()

    async def _on_closed(self):
        if self.state != "stopped":
            self.state = "disconnected"

    def _log_once(self, key, fmt, *args):
        if key not in self._logged:
            self._logged.add(key)
            log.warning(fmt + "; not logged again", *args)

    # -- JetStream ---------------------------------------------------------------------------

    async def _setup_jetstream(self):
        from nats.js import api
        from nats.js.errors import NotFoundError
        c = self.cfg
        js = self._js = self._nc.jetstream()
        try:
            stream = await js.stream_info(c.ingest_stream)
        except NotFoundError:
            raise IngestError(f"NATS at {shown_servers(c.url)}: no JetStream stream "
                              f"{c.ingest_stream!r} (nats.ingest_stream); create it for the "
                              f"subject {c.ingest_subject!r}") from None
        try:
            consumer = await js.consumer_info(c.ingest_stream, c.ingest_durable)
        except NotFoundError:
            consumer = None
        if consumer is None:
            await js.add_consumer(c.ingest_stream, api.ConsumerConfig(
                durable_name=c.ingest_durable, name=c.ingest_durable,
                filter_subject=c.ingest_subject, ack_policy=api.AckPolicy.EXPLICIT,
                deliver_policy=api.DeliverPolicy.NEW, ack_wait=c.ingest_ack_wait,
                max_ack_pending=max(4 * c.ingest_batch, 1024)))
        elif c.ingest_replay and self.limits.max_messages_stored_per_channel and \
                not self.server.broker.shared and not self._set_up:
            # once per process (a consumer set up again later must not publish anything
            # twice); a shared broker keeps its own history
            last = consumer.delivered.stream_seq or 0
            first = max(stream.state.first_seq or 1, last - c.ingest_replay + 1)
            if last >= first:
                self._set_up = True          # one attempt: a replay cut short is not redone
                await self._replay(first, last)
        self._set_up = True

    async def _replay(self, first: int, last: int):
        """Publish the stream's messages first..last again (what the consumer had delivered
        before this process started), in order, without acks: see the module docstring."""
        from nats.js import api
        self.state = "replaying"
        c = self.cfg
        t0 = time.monotonic()
        psub = await self._js.pull_subscribe(
            c.ingest_subject, stream=c.ingest_stream, config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first,
                ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True))
        ttl_ns = int(self.limits.message_ttl * 1e9)
        oldest = time.time_ns() - ttl_ns if ttl_ns else 0
        seq = first - 1
        try:
            while seq < last:
                try:
                    msgs = await psub.fetch(min(c.ingest_batch * 4, 4096), timeout=2.0)
                except asyncio.TimeoutError:      # nats.errors.TimeoutError is one
                    break                         # messages deleted from the stream: done
                for m in msgs:
                    tokens = m.reply.split(".")
                    if len(tokens) == 9:          # $JS.ACK.<stream>.<consumer>.<n>.<sseq>...
                        seq, stamp = int(tokens[5]), int(tokens[7])
                    else:
                        md = m.metadata
                        seq, stamp = md.sequence.stream, int(md.timestamp.timestamp() * 1e9)
                    if seq > last:
                        break
                    if stamp < oldest:            # expired already: would not be stored
                        continue
                    try:
                        r = self._publish_nats(m.subject, m.data, m.headers, seq)
                        if r is not None:
                            await r
                    except Rejected:
                        continue
                    except Exception:
                        continue
                    self.replayed += 1
                    self._note_published(seq)
        finally:
            try:
                name = (await psub.consumer_info()).name
                await psub.unsubscribe()
                await self._js.delete_consumer(c.ingest_stream, name)
            except Exception:
                pass      # an ephemeral consumer goes away by itself (inactive_threshold)
        log.info("NATS ingest: %d messages of stream %s (sequences %d-%d) published again "
                 "into history in %.2f s", self.replayed, c.ingest_stream, first, last,
                 time.monotonic() - t0)

    # The pull loop: nats-py's fetch() waits for each message with its own timer (a task per
    # message); instead the consumer's inbox is a tapped subscription (gogin.natstap): what a
    # socket read brought is handled in one step, and its acknowledgements go out as one write.
    # Pull requests (batch of ingest_batch, expiring after PULL_EXPIRES) are kept two deep, so
    # the next batch is on its way while one is handled.

    async def _pull_start(self):
        c = self.cfg
        self._inbox = self._nc.new_inbox()
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{c.ingest_stream}.{c.ingest_durable}"
        self._next_body = msgspec.json.encode({"batch": c.ingest_batch,
                                               "expires": int(PULL_EXPIRES * 1e9)})
        self._requests: collections.deque = collections.deque()   # messages each may bring
        self._last_rx = time.monotonic()
        self._rx = []
        self._pull_sub = await self._nc.subscribe(self._inbox)
        self._nc.taps[self._pull_sub._id] = (Ingest._take_pull, self)
        await self._refill()

    async def _refill(self):
        while len(self._requests) < PULL_DEPTH and self._nc.is_connected:
            self._requests.append(self.cfg.ingest_batch)
            await self._nc.publish(self._next_subject, self._next_body, reply=self._inbox)

    async def _pull_loop(self):
        """Watchdog: pull requests lost with a connection, or a consumer that went away (NATS
        restarted with an empty store): ask again, set the consumer up again."""
        delay = self.cfg.reconnect_time_wait
        while True:
            await asyncio.sleep(PULL_EXPIRES / 2)
            nc = self._nc
            if nc is None or not nc.is_connected:
                continue
            if self._consumer_lost:
                try:
                    await self._pull_sub.unsubscribe()
                except Exception:
                    pass
                try:
                    await self._setup_jetstream()
                    await self._pull_start()
                    log.info("NATS ingest: reading consumer %r of stream %r again",
                             self.cfg.ingest_durable, self.cfg.ingest_stream)
                    self._consumer_lost = False
                    delay = self.cfg.reconnect_time_wait
                    self.state = "ok"
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self._log_once(("setup", type(e).__name__),
                                   "NATS ingest: cannot set the consumer up: %s", _describe(e))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, SETUP_RETRY_MAX)
                continue
            if time.monotonic() - self._last_rx > PULL_EXPIRES + 1.0:
                self._requests.clear()       # expired long ago without a word: lost
                self._last_rx = time.monotonic()
                try:                         # ... or no consumer answers them any more
                    await self._js.consumer_info(self.cfg.ingest_stream,
                                                 self.cfg.ingest_durable)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self._log_once(("consumer", type(e).__name__),
                                   "NATS ingest: consumer %r unavailable: %s",
                                   self.cfg.ingest_durable, _describe(e))
                    self._consumer_lost = True
                    continue
            await self._refill()

    def _take_pull(self, subject, reply, data, headers):
        """The tap of the consumer's inbox: one message, raw; handled with the rest of its read."""
        self._rx.append((subject, reply, data, headers))
        if not self._draining:
            self._draining = True
            asyncio.ensure_future(self._drain_pull())

    async def _drain_pull(self):
        try:
            while self._rx:
                batch, self._rx = self._rx, []
                await self._handle_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as e:                # a bug must not stop ingest: log it, go on
            log.exception("NATS ingest: handling fetched messages failed: %s", _describe(e))
        finally:
            self._draining = False

    async def _handle_batch(self, batch):
        self._last_rx = time.monotonic()
        requests = self._requests
        acks: list = []                       # reply subjects (bytes) to acknowledge
        terms: list = []                      # ... to terminate (rejected)
        refill = False
        for subject, reply, data, headers in batch:
            if not reply:                     # a status of a pull request (ADR-13)
                status = headers.get("Status") if headers else None
                if status == "100":           # idle heartbeat
                    continue
                if requests:
                    requests.popleft()        # 408: expired (the oldest one), 409: ended
                if status in ("408", "404"):
                    refill = True
                else:                         # 409 consumer deleted, ...: the watchdog decides
                    self._log_once(("pull", status), "NATS ingest: pull request ended: %s %s",
                                   status, headers.get("Description", "") if headers else "")
                    if status == "409" and "deleted" in str(headers).lower():
                        self._consumer_lost = True
                continue
            if requests:
                requests[0] -= 1
                if requests[0] <= 0:
                    requests.popleft()
            tokens = reply.split(b".")
            if len(tokens) == 9:              # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...
                delivered, seq = int(tokens[4]), int(tokens[5])
            else:                             # with a domain and account hash: nats-py reads it
                md = Msg(self._nc, subject.decode(), reply.decode(), data, headers).metadata
                delivered, seq = md.num_delivered, md.sequence.stream
            if delivered > 1:
                self.redelivered += 1
                if self._was_published(seq):
                    self.duplicates += 1
                    acks.append(reply)
                    continue
            try:
                r = self._publish_nats(subject.decode(), data, headers, seq)
            except Rejected as e:
                self._reject(e)
                terms.append(reply)
                continue
            if r is not None:                 # a shared broker's publish: acked once it is done
                await self._in_flight_add(reply.decode(), seq, r)
                continue
            self.ingested += 1
            self._note_published(seq)
            acks.append(reply)
        await self._answer(acks, ACK)
        await self._answer(terms, TERM)
        if refill or len(requests) < PULL_DEPTH:
            await self._refill()

    async def _answer(self, replies: list, what: bytes):
        """Acknowledge (or terminate) messages: one PUB each to its reply subject, written
        together (nats-py's publish() would validate and frame each on its own)."""
        nc = self._nc
        if not replies or nc is None or not nc.is_connected:
            return                            # not sent: JetStream delivers them again
        sep = b" %d\r\n%s\r\nPUB " % (len(what), what)
        await nc._send_command(b"PUB " + sep.join(replies) + sep[:-4])
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()

    # -- a shared broker's publishes: started in arrival order, awaited in that order by one
    #    task that acks each after it completed (the next ones are not held up meanwhile) -----

    async def _in_flight_add(self, reply, seq, r):
        q = self._in_flight
        q.append((reply, seq, asyncio.ensure_future(r)))
        if self._acker is None:
            self._acker = asyncio.ensure_future(self._ack_in_flight())
        while len(q) >= MAX_IN_FLIGHT:     # the broker is slow: stop taking messages
            await asyncio.sleep(0.001)

    async def _ack_in_flight(self):
        q = self._in_flight
        try:
            while q:
                reply, seq, fut = q[0]
                try:
                    await fut
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    q.popleft()
                    await self._publish_failed(e, reply)
                    continue
                q.popleft()
                self.ingested += 1
                if reply is not None:
                    self._note_published(seq)
                    await self._nc.publish(reply, ACK)
        finally:
            self._acker = None

    async def _publish_failed(self, e: BaseException, reply):
        self.publish_failures += 1
        if reply is None:
            self._log_once(("publish", type(e).__name__),
                           "NATS ingest: publish failed, message lost (core NATS): %s",
                           _describe(e))
            return
        self._log_once(("publish", type(e).__name__),
                       "NATS ingest: publish failed, message left for redelivery: %s",
                       _describe(e))
        await self._nc.publish(reply, b'-NAK {"delay": %d}' % int(NAK_DELAY * 1e9))

    # -- published stream sequences, as runs (a single reader's are one run) ------------------

    def _note_published(self, seq: int):
        if seq == self._cur_end + 1:
            self._cur_end = seq
            return
        if self._cur_end >= 0:
            self._run_starts.append(self._cur_start)
            self._run_ends.append(self._cur_end)
            if len(self._run_starts) > RUNS_MAX:
                del self._run_starts[:RUNS_MAX // 2]
                del self._run_ends[:RUNS_MAX // 2]
        self._cur_start = self._cur_end = seq

    def _was_published(self, seq: int) -> bool:
        if self._cur_start <= seq <= self._cur_end:
            return True
        # only redeliveries get here (rare): a scan of at most RUNS_MAX runs; runs are kept
        # in fetch order, which a redelivery makes unsorted, so no bisect
        for s, e in zip(self._run_starts, self._run_ends):
            if s <= seq <= e:
                return True
        return False

    # -- core NATS ---------------------------------------------------------------------------

    async def _on_core_msg(self, m):
        try:
            r = self._publish_nats(m.subject, m.data, m.headers, None)
        except Rejected as e:
            self._reject(e)
            return
        if r is not None:
            await self._in_flight_add(None, None, r)
            return
        self.ingested += 1

    # -- one message -------------------------------------------------------------------------

    def _reject(self, e: Rejected):
        self.rejected[e.kind] += 1
        if e.kind not in self._logged:
            self._logged.add(e.kind)
            log.warning("NATS ingest: message rejected (%s): %s; further %s rejections are "
                        "counted (gogin_nats_rejected_total), not logged", e.kind, e.reason,
                        e.kind)

    def _publish_nats(self, subject: str, data: bytes, headers, seq: Optional[int]):
        """Publish one NATS message; raises Rejected.  None, or an awaitable (a shared
        broker's publish) to await before the message is acknowledged."""
        if self._by_subject:
            if not subject.startswith(self._prefix) or len(subject) == self._prefix_len:
                raise Rejected("no_channel", f"subject {subject[:200]!r} names no channel "
                               f"after {self._prefix!r}")
            channels = (subject[self._prefix_len:],)
            if not data:
                raise Rejected("empty", "empty message")
            if len(data) > self._max_size:
                raise Rejected("too_large", f"{len(data)} bytes, over limits.max_message_size "
                               f"({self._max_size})")
            payload = data
            event_id = event_type = None
            binary = None
            if headers:
                event_id = headers.get("Event-Id")
                event_type = headers.get("Event-Type")
                binary = not is_text(data, headers.get("Content-Type"))
        else:
            if len(data) > self._max_size * 4 // 3 + ENVELOPE_SLACK:
                raise Rejected("too_large", f"{len(data)} bytes of envelope, over "
                               f"limits.max_message_size ({self._max_size}) once decoded")
            try:
                env = _decode_envelope(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise Rejected("bad_json", f"not a JSON envelope: {e}") from None
            if env.channel is not None:
                if env.channels is not None:
                    raise Rejected("bad_json", "both channel and channels")
                channels = (env.channel,)
            elif env.channels:
                channels = tuple(dict.fromkeys(env.channels))
            else:
                raise Rejected("no_channel", "no channel or channels in the envelope")
            if env.text is not None:
                if env.data is not None:
                    raise Rejected("bad_json", "both text and data")
                try:
                    payload = env.text.encode("utf-8")
                except UnicodeEncodeError:          # a lone surrogate escape ("\ud800")
                    raise Rejected("bad_json", "text is not valid Unicode") from None
                binary = False
            elif env.data is not None:
                payload = env.data
                binary = True
            else:
                raise Rejected("empty", "no text or data in the envelope")
            if not payload:
                raise Rejected("empty", "empty message")
            if len(payload) > self._max_size:
                raise Rejected("too_large", f"{len(payload)} bytes, over "
                               f"limits.max_message_size ({self._max_size})")
            event_id, event_type = env.event_id, env.event_type
        if event_id is not None or event_type is not None:
            err = event_field_error("event_id", event_id) or \
                event_field_error("event_type", event_type)
            if err:
                raise Rejected("bad_event_field", err)
        if event_id is None and seq is not None:
            event_id = str(seq)               # the stream sequence: resume and dedupe by it
        checked = self._checked
        for ch in channels:
            if ch not in checked:
                self._check_channel(ch)
                if len(checked) >= CHECKED_IDS_MAX:
                    checked.clear()
                checked.add(ch)
        # one publish for all the channels (a shared broker stores them in one step); the
        # memory broker answers at once, a shared one with an awaitable
        r = self.server.publish(channels[0] if len(channels) == 1 else list(channels), payload,
                                event_id=event_id, event_type=event_type, binary=binary)
        if r.__class__ is not int and hasattr(r, "__await__"):
            return r
        return None

    def _check_channel(self, ch: str):
        if ch == self._events and ch:
            raise Rejected("forbidden_channel", f"{ch!r} is the events channel "
                           "(limits.events_channel_id)")
        try:
            check_channel_id(ch, self.limits)
        except HttpError as e:
            kind = "forbidden_channel" if e.status == 403 else "bad_channel"
            raise Rejected(kind, f"channel {ch[:200]!r}: {e.explain}") from None

    # -- /healthz, /metrics ------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        """(ready, line): not ready while the start-up replay runs (a resume would miss what
        it has not published yet)."""
        state = self.state
        if state == "ok" and self._nc is not None and not self._nc.is_connected:
            state = "disconnected"
        line = f"nats: {state}"
        if state == "error" and self.error:
            line += f" ({self.error})"
        return state != "replaying", line

    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected
