"""The Hub: the only class Python sees.  It owns every socket from accept() to close().

One thread.  The selector's fd is added to the asyncio loop (``loop.add_reader(fd, hub.poll)``);
``poll()`` waits without blocking and dispatches in C.  Python is called only at boundaries:
a complete request head (``on_request``), a complete client message (``on_message``) and a
connection that closed (``on_close``).  Timers (header timeout, pings, TTLs, long-poll
timeouts, lingering closes) live in a coarse timing wheel driven by one asyncio timer.

The protocol of one connection - request framing, WebSocket frames, the states and what a
passed deadline means - is the sans-I/O machine of connection.pyx: the hub reads, feeds the
bytes in and acts on the events it returns (a callback into Python, bytes to queue, a close,
a new wheel deadline).  The socket, the fd table, the wheel and the callbacks stay here.

Lifetime rule: a Conn is a C struct inside its Connection object.  The hub's fd table owns the
object while the socket is open; on close the reference moves to ``_closed`` and is released
only at the end of a turn (``flush``), after the dirty, post and resume lists - which hold raw
Conn pointers - have been drained.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
from cpython.ref cimport PyObject, Py_INCREF, Py_DECREF
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset

from gogin._core.buffers cimport Frame, frame_from, frame_incref, frame_decref, outq_clear
from gogin._core.connection cimport (
    Conn, ConnState, ConnConfig, ConnEvent,
    conn_init, conn_release, conn_event_clear, conn_buffer, conn_consume, conn_http_next,
    conn_expect_body, conn_dispatched, conn_upgrade, conn_ws_next, conn_close_frame, conn_open,
    conn_to_head, conn_begin_close, conn_start_stream, conn_hold, conn_start_timers,
    conn_deadline, conn_on_timer,
    CS_HEAD, CS_BODY, CS_PENDING, CS_WEBSOCKET, CS_STREAM, CS_LONGPOLL, CS_CLOSING, CS_CLOSED,
    CF_DIRTY, CF_WRITE_ARMED, CF_SLOW, CF_KEEPALIVE, CF_READ_PAUSED, CF_POST, CF_SHUT_WR,
    CF_RESUME, CF_ONESHOT, CF_DELIVERED,
    CE_NONE, CE_REQUEST, CE_BODY_PENDING, CE_HTTP_ERROR, CE_WS_MESSAGE, CE_WS_PING,
    CE_WS_CLOSE, CE_CLOSE, CE_PING, CE_TTL, CE_LONGPOLL_TIMEOUT,
)
from gogin._core.timers cimport Wheel, wheel_init, wheel_set, wheel_advance
from gogin._core.fanout cimport (
    FanoutState, fanout_init, fanout_publish, fanout_settle, conn_settle, fanout_discard,
    flush_conn, mark_dirty, enqueue_always, enqueue_control, drop_queue,
)
from gogin._core.formats cimport (
    Format, Message, message_release, ws_frame, FK_WEBSOCKET, FK_STREAM,
)
from gogin._core.frames cimport TEXT, BINARY, CLOSE, utf8_valid
from gogin._core.deflate cimport pmd_counters
from gogin._core.history cimport (
    History, Stored, history_init, history_append, history_expire, history_clear, history_free,
    history_clear_channel,
)
from gogin._core.envelope cimport Envelope, envelope_parse, ENV_BINARY, ENV_DELETED
from gogin._core.http cimport Request
from gogin._core.replay cimport find_event, replay_start, gap_record, stored_frame
from gogin._core.pubroute cimport (
    PublishRoute, publish_answer, channel_id_error, member_offsets, slot_at,
)
from gogin._core.responses cimport head_start, finish_answer, error_answer
from gogin._core.registry cimport Registry, Channel, Sub
from gogin._core.selector cimport Selector, GG_READABLE, GG_WRITABLE, GG_NONE
from gogin._core.includes.sockets cimport (
    sockaddr, sockaddr_in, sockaddr_in6, socklen_t, recv, shutdown, close,
    setsockopt, inet_ntop, ntohs, errno, timespec, clock_gettime, time,
    SHUT_WR, IPPROTO_TCP, TCP_NODELAY,
    AF_INET, AF_INET6, EAGAIN, EWOULDBLOCK, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM,
    ECONNABORTED, CLOCK_MONOTONIC, gg_would_block,
)
from gogin._core.includes.compat cimport gg_accept, gg_send, gg_nosigpipe

import errno as _errno
import logging
import socket as _socket

from gogin._core.frames import accept_key
from gogin._core.connection import STATE_NAMES
from gogin._core.responses import NO_CACHE_HEADERS
from gogin._core.formats import Format as _Format
from gogin._core.buffers import frame_counters

# the fields of a publisher WebSocket item (gogin.locations.publisher.PublishItem), in the
# order publish_items reads them
cdef tuple ITEM_FIELDS = ("id", "text", "event_id", "event_type")

log = logging.getLogger("gogin.core")

cdef enum:
    RBUF_SIZE = 65536          # one recv() per readiness: fair to other connections
    ACCEPT_BATCH = 128         # accept() calls per listener readiness
    FIRED_MAX = 1024           # selector events handled per poll()
    PENDING_READ_MAX = 65536   # bytes read ahead of an unanswered request (pipelining, or
                               # while Python decides); past it the connection is not read
    PACE_MIN_NS = 200000       # a write pass cheaper than this (200 us) never delays the next
    PACE_BATCH = 16            # frames per sendmsg from which waiting gains nothing more
    PACE_COALESCE = 8          # ... and up to which it gains nothing either: a pass where
                               # fewer than 1 sendmsg in PACE_COALESCE carried a second
                               # message (1:1 routing) would wait for nothing
    PACE_MAX_NS = 5000000      # the longest pacing wait (5 ms): a bound on the added latency
    WRITE_SLICE_NS = 2000000   # a turn's write pass stops after 2 ms and goes on next turn,
                               # so a pass over 10,000 sockets does not leave the publisher
                               # unread for its whole length
    WRITE_SLICE_CHECK = 32     # connections written between two looks at the clock


class CoreError(Exception):
    """A call the connection's state does not allow (e.g. respond() after an upgrade)."""


# Answer to a connection past max_connections: sent once without waiting, then closed.
cdef bytes OVERLOAD_RESPONSE = error_answer(503, "Too many connections.")


cdef inline int64_t _monotonic_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


cdef inline int64_t _monotonic_ms() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000 + ts.tv_nsec // 1000000


cdef inline int64_t _mark_after(int64_t tag, int mod, int res) noexcept:
    """The smallest k * mod + res (k >= 0) greater than tag."""
    if tag < res:
        return res
    return ((tag - res) // mod + 1) * mod + res


@cython.final
cdef class Connection:
    """A client connection, as Python sees it.  Methods act on it; the hub does the I/O."""
    cdef Conn c
    cdef Hub _hub
    cdef public object data             # the Python layer's per-connection state
    cdef object _publish_to             # channels a trusted publisher WebSocket feeds, or None
    cdef bytes _timeout_response        # long-poll answer on timeout
    cdef bytes _footer                  # stream footer
    cdef bint _head_only                # the pending request is HEAD: no body in the answer
    cdef char _addr[28]                 # peer sockaddr (in or in6), converted on demand
    cdef socklen_t _alen
    cdef public bint peer_allowed       # its address passed the allowed networks (decided once
                                        # per connection by Python; the publisher fast path)

    def __cinit__(self):
        self.peer_allowed = False
        conn_init(&self.c)
        self._alen = 0

    def __dealloc__(self):
        # normally everything was released by Hub._close; this guards against a hub that died
        conn_release(&self.c)
        if self.c.out.items != NULL:
            outq_clear(&self.c.out)

    @property
    def id(self):
        return self.c.id

    @property
    def fileno(self):
        return self.c.fd

    @property
    def state(self):
        return STATE_NAMES.get(self.c.state, "?")

    @property
    def closed(self):
        return self.c.state == CS_CLOSED

    @property
    def format(self):
        """The Format of this connection's subscriptions."""
        return self._hub._formats[self.c.fmt] if self._hub is not None else None

    @property
    def queued_bytes(self):
        return self.c.out.bytes

    @property
    def channels(self):
        cdef Py_ssize_t i
        return [(<Channel>self.c.subs.items[i].channel).name for i in range(self.c.subs.n)]

    @property
    def peer(self):
        """(host, port) of the client, or None for a socket that is not TCP."""
        cdef char buf[64]
        cdef sockaddr_in *a4
        cdef sockaddr_in6 *a6
        # computed on each call, not kept: an idle connection holds no Python strings
        if self._alen:
            a4 = <sockaddr_in *>self._addr
            if a4.sin_family == AF_INET:
                inet_ntop(AF_INET, &a4.sin_addr, buf, sizeof(buf))
                return (buf.decode("ascii"), ntohs(a4.sin_port))
            elif a4.sin_family == AF_INET6:
                a6 = <sockaddr_in6 *>self._addr
                inet_ntop(AF_INET6, &a6.sin6_addr, buf, sizeof(buf))
                return (buf.decode("ascii"), ntohs(a6.sin6_port))
        return None

    cdef inline bint _check(self, int want) except -1:
        if self.c.state == CS_CLOSED or self.c.state == CS_CLOSING:
            return False
        if want and self.c.state != want:
            raise CoreError(f"connection is {STATE_NAMES.get(self.c.state)}, "
                            f"not {STATE_NAMES.get(want)}")
        return True

    def respond(self, int status, headers=(), body=b"", keep_alive=None):
        """Answer the pending request.  Returns False if the client is already gone.

        keep_alive None follows the request; the connection then reads the next request
        (pipelined bytes included) or closes after the answer is written.
        """
        if not self._check(CS_PENDING):
            return False
        if isinstance(body, str):
            body = body.encode("utf-8")
        keep = bool(self.c.flags & CF_KEEPALIVE) if keep_alive is None else bool(keep_alive)
        keep = keep and not self._hub._closing
        if not isinstance(body, bytes):
            body = bytes(body)
        cdef bint sent = not self._head_only
        data = finish_answer(head_start(status, headers),
                             -1 if status < 200 or status in (204, 304) else len(body), keep,
                             <const unsigned char *>PyBytes_AS_STRING(body), len(body) if sent else 0)
        self._hub._send_bytes(&self.c, data)
        if keep:
            self._hub._to_head(&self.c)
        else:
            self._hub._begin_close(&self.c)
        return True

    def upgrade(self, channels=(), Format format=None, key=None, headers=(),
                double ping_interval=0, double ttl=0, publish_to=None,
                Py_ssize_t max_message_size=0, bint deflate=False):
        """Switch the pending request to WebSocket and subscribe it.

        key: the client's Sec-WebSocket-Key (None: the handshake was done elsewhere, as for a
        socket given with adopt()).  publish_to: channels every client message is published to
        by the core itself, without calling Python (trusted publisher connections).
        max_message_size: limit of a client message on this connection (0: the hub's).
        deflate: permessage-deflate was negotiated (the caller's headers answer the offer):
        client messages may be compressed; the format says how messages are sent.
        """
        cdef Hub hub = self._hub
        if not self._check(CS_PENDING):
            return False
        fmt = hub._formats[0] if format is None else format
        if (<Format>fmt).kind != FK_WEBSOCKET:
            raise CoreError("upgrade() needs a websocket format")
        if key is not None:
            hdrs = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Accept", accept_key(key))]
            hdrs.extend(NO_CACHE_HEADERS)
            hdrs.extend(headers)
            hub._send_bytes(&self.c, finish_answer(head_start(101, hdrs), -1, True, NULL, 0))
        conn_upgrade(&self.c, max_message_size if max_message_size > 0 else hub.max_message_size,
                     deflate)
        self._publish_to = list(publish_to) if publish_to else None
        hub._subscribe_all(self, channels, fmt)
        hub._start_timers(&self.c, ping_interval, ttl)
        hub._queue_resume(&self.c)     # frames the client sent right after the head
        return True

    def start_stream(self, bytes head, channels=(), Format format=None,
                     double ping_interval=0, double ttl=0, bytes footer=b""):
        """Answer the pending request with `head` and keep it open as a stream (EventSource,
        chunked streaming): messages of `channels` are appended in `format`."""
        cdef Hub hub = self._hub
        if not self._check(CS_PENDING):
            return False
        if format is None or format.kind == FK_WEBSOCKET:
            raise CoreError("start_stream() needs a non-websocket format")
        hub._send_bytes(&self.c, head)
        conn_start_stream(&self.c)
        self._footer = footer
        hub._subscribe_all(self, channels, format)
        hub._start_timers(&self.c, ping_interval, ttl)
        return True

    def hold(self, channels, Format format, double timeout, bytes timeout_response,
             bytes head=b"", bytes footer=b""):
        """Long-poll: wait for the first message of `channels` (sent in `format`, a whole HTTP
        response) or send `timeout_response` after `timeout` seconds.

        head/footer: an answer whose head goes out now and whose end follows the message
        (JSONP: a chunked head with `callback([`, the message as a chunk, then `]);` and the
        last chunk); the timeout response then only ends that answer."""
        cdef Hub hub = self._hub
        if not self._check(CS_PENDING):
            return False
        if head:
            hub._send_bytes(&self.c, head)
        # a long-poll takes the first message only: its format must not batch several (JSONP
        # holds with a stream format); the batch of this turn, if any, is settled first
        hub._settle()
        format.held = True
        conn_hold(&self.c)
        self._timeout_response = timeout_response
        self._footer = footer
        hub._subscribe_all(self, channels, format)
        hub._start_timers(&self.c, 0, timeout)
        return True

    def end_hold(self):
        """Answer a held long-poll now with its timeout response (polling: nothing new)."""
        if self.c.state != CS_LONGPOLL:
            return False
        self._hub._leave_all(&self.c)
        if self._timeout_response:
            self._hub._send_bytes(&self.c, self._timeout_response)
        self._hub._finish_longpoll(&self.c)
        return True

    def subscribe(self, str channel, Format format=None):
        """Add a channel to an upgraded/streaming connection.  False if already on it."""
        if not self._check(0):
            return False
        if self.c.state not in (CS_WEBSOCKET, CS_STREAM, CS_LONGPOLL):
            raise CoreError("subscribe() needs an upgraded or streaming connection")
        fmt = self._hub._formats[self.c.fmt] if format is None else format
        return self._hub._subscribe(self, channel, fmt)

    def unsubscribe(self, str channel):
        cdef Sub *s = self._hub._reg.find(&self.c.subs, channel)
        if s == NULL:
            return False
        self._hub._settle_channel(<Channel>s.channel)
        self._hub._reg.unsubscribe(&self.c.subs, s)
        return True

    def send(self, payload, bint binary=False):
        """Send one message to this connection only: a WebSocket frame, or raw stream bytes."""
        cdef Frame *f
        cdef bytes data
        if not self._check(0):
            return False
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        if self.c.state == CS_WEBSOCKET:
            f = ws_frame(BINARY if binary else TEXT, <const unsigned char *>PyBytes_AS_STRING(data),
                         len(data))
        elif self.c.state == CS_STREAM:
            f = frame_from(<const unsigned char *>PyBytes_AS_STRING(data), len(data))
        else:
            raise CoreError("send() needs a websocket or stream connection")
        if f == NULL:
            raise MemoryError()
        self._hub._queue_frame(&self.c, f)
        return True

    def replay(self, str channel, Py_ssize_t last=0, since_id=None, since_time=None,
               int since_tag=-1, event_id=None, bytes gap_text=None):
        """Queue stored messages of `channel` to this connection, oldest first, before any
        live one (call it right after upgrade/start_stream/hold: nothing runs in between, so
        there is no gap and no duplicate).  Position, one of:
          last=N                       the N newest stored messages (backtrack .bN)
          since_id=I                   messages with an id > I
          since_time=T, since_tag=G    messages after (T, G) (If-Modified-Since/If-None-Match)
          event_id=E                   messages after the one whose event id is E
        Returns (sent, gap): gap is True when messages after the position were lost (evicted
        by a storage limit), or the event id is no longer stored; then a message with id -4
        and `gap_text` is queued first, dated just before the oldest message that follows
        (so a long-poll client resuming from the gap answer gets the stored messages next).
        A long-poll connection takes the first message (or the gap message) and is answered."""
        cdef Hub hub = self._hub
        cdef Channel ch
        cdef Stored *s
        cdef Py_ssize_t sent = 0
        cdef bint gap = False
        if self.c.state not in (CS_WEBSOCKET, CS_STREAM, CS_LONGPOLL):
            return (0, False)
        ch = hub._reg.channels.get(channel)
        if ch is None:
            return (0, since_id is not None and since_id > 0 or event_id is not None)
        if last == 0 and since_id is None and hub._foreign_position(ch, since_time, since_tag):
            s = NULL                   # nothing here is known to follow the client's position
            gap = True
        elif not replay_start(ch, last, since_id, since_time, since_tag, event_id, &s, &gap):
            return (0, False)
        if gap and gap_text is not None:
            hub._replay_gap(&self.c, ch, s, gap_text)
            if self.c.flags & CF_ONESHOT:
                hub._longpoll_delivered(&self.c)
                return (0, gap)
        while s != NULL and self.c.state != CS_CLOSED:
            hub._replay_one(&self.c, ch, s)
            sent += 1
            if self.c.flags & CF_ONESHOT:
                hub._longpoll_delivered(&self.c)
                break
            s = s.cnext
        return (sent, gap)

    def send_raw(self, bytes data):
        """Queue bytes exactly as given (a frame rendered by a Format, a prepared chunk)."""
        cdef Frame *f
        if not self._check(0):
            return False
        if self.c.state not in (CS_WEBSOCKET, CS_STREAM, CS_LONGPOLL):
            raise CoreError("send_raw() needs a websocket, stream or long-poll connection")
        f = frame_from(<const unsigned char *>PyBytes_AS_STRING(data), len(data))
        if f == NULL:
            raise MemoryError()
        self._hub._queue_frame(&self.c, f)
        return True

    def close(self, int code=1000, reason=""):
        """Close: WebSocket with a close frame (code, reason), a stream with its footer,
        anything else at once.  Queued bytes are written first."""
        if not self._check(0):
            return False
        self._hub._close_gracefully(self, code, reason)
        return True

    def __repr__(self):
        return f"<Connection #{self.c.id} fd={self.c.fd} {self.state} peer={self.peer}>"


cdef enum:
    EPOCH_NONE = -1            # Channel.epoch: synced with a broker that had no numbering


cdef struct BrokerCounters:        # the receive path of a shared broker (deliver_batch)
    int64_t received           # envelopes handed to the hub
    int64_t delivered          # ... published to the channel's subscribers (and stored)
    int64_t duplicates         # ... dropped: an id this node already had
    int64_t unknown            # ... for a channel this node no longer holds
    int64_t malformed          # ... that were not envelopes
    int64_t held               # ... returned to the broker (a jump, a new epoch, a control)
    int64_t gaps               # gap signals sent (messages lost or a new epoch)


@cython.final
cdef class Hub:
    """Sockets, the registry, the fanout and the timers of one gogin node (one thread).

    Callbacks (plain functions, called on the loop's thread):
      on_request(conn, request)      a complete request head (+ body): answer with conn.respond,
                                     conn.upgrade, conn.start_stream or conn.hold, now or later
      on_message(conn, opcode, data) a complete client WebSocket message (not for publisher
                                     connections, whose messages the core publishes itself)
      on_close(conn, reason)         the connection is gone; its subscriptions are already removed
    """
    cdef Selector _sel
    cdef Registry _reg
    cdef FanoutState _fs
    cdef History _hist
    cdef list _formats
    cdef public object on_request
    cdef public object on_message
    cdef public object on_close
    cdef public object on_body      # may this request send a body, and how large (or None)
    cdef PyObject **_table          # fd -> Connection (owned reference)
    cdef int _table_size
    cdef dict _listeners            # fd -> socket.socket
    cdef set _paused_listeners      # fds paused after EMFILE until the next tick
    cdef object _loop
    cdef object _tick_handle
    cdef bint _turn_scheduled
    cdef bint _mirror               # the selector has no fd (poll): mirror fds into the loop
    cdef dict _mirrored             # fd -> mask registered with the loop
    cdef bint _closing
    cdef list _closed               # [(Connection, reason)] released at the end of a turn
    cdef Conn *_resume
    cdef unsigned char *_rbuf
    cdef uint64_t _next_id
    cdef Wheel _wheel               # every connection's next deadline (timers.pyx)
    cdef int64_t _epoch_ms
    cdef int64_t _tick_ms
    cdef Frame *_close_going_away   # close 1001 frame used at shutdown
    cdef double _pacing             # next write pass waits this many times the last one's cost
    cdef int64_t _pace_until        # monotonic ns before which the dirty list waits
    cdef int64_t _pass_cost         # the write pass under way (sliced): ns spent so far,
    cdef int64_t _pass_frames       # frames and sendmsg calls so far
    cdef int64_t _pass_writes
    cdef Conn *_pass_last           # ... and the last connection it has to write (on the list)
    cdef object _pace_handle
    cdef readonly int64_t paced     # write passes that waited (pacing)
    cdef list _pending              # channels holding corked batches (fanout_publish)
    cdef Py_ssize_t _read_ahead     # bytes kept of a client's unanswered requests before its
                                    # reads pause: PENDING_READ_MAX, or a head's limit if larger
    cdef int64_t _last_time         # second and tag of the server's last message: push-stream's
    cdef int _last_tag              # tags count per server, not per channel (utils.c)
    cdef int _mark_mod              # set_position_mark: tags are k * mod + res (0: plain)
    cdef int _mark_res
    cdef BrokerCounters _bc
    cdef ConnConfig _cc             # limits and timeouts (in ticks) of every connection
    cdef bytes _gap_text            # the gap signal's text (id -4)
    cdef dict _pub_routes           # request path -> PublishRoute (the publisher fast path)
    cdef type _item_type            # publish_items: the items' class, and the slot offsets of
    cdef Py_ssize_t _item_off[4]    # its ITEM_FIELDS (-1: read by name)
    # limits (readonly for Python; set once in __init__)
    cdef readonly Py_ssize_t max_connections
    cdef readonly Py_ssize_t max_head_size
    cdef readonly int max_headers
    cdef readonly Py_ssize_t max_body_size
    cdef readonly Py_ssize_t max_message_size
    cdef readonly double header_timeout
    cdef readonly double keepalive_timeout
    cdef readonly double linger
    cdef readonly double tick
    # counters
    cdef readonly int64_t accepted
    cdef readonly int64_t rejected
    cdef readonly Py_ssize_t connections
    cdef readonly int64_t requests
    cdef readonly int64_t messages_in

    def __cinit__(self):
        self._table = NULL
        self._table_size = 0
        self._rbuf = NULL
        self._resume = NULL
        self._close_going_away = NULL
        wheel_init(&self._wheel)
        fanout_init(&self._fs)
        memset(&self._bc, 0, sizeof(BrokerCounters))
        self._gap_text = b"Messages were lost."
        self._pub_routes = {}
        history_init(&self._hist)

    def __init__(self, on_request=None, on_message=None, on_close=None, *,
                 Py_ssize_t max_connections=10000, Py_ssize_t max_head_size=8192,
                 int max_headers=100, Py_ssize_t max_body_size=1 << 20,
                 Py_ssize_t max_message_size=1 << 20, Py_ssize_t max_backpressure=1 << 20,
                 str backpressure_policy="close", double header_timeout=10.0,
                 double keepalive_timeout=60.0, double linger=2.0, double tick=0.1,
                 double flush_pacing=1.0, str backend=None):
        if backpressure_policy not in ("close", "drop"):
            raise ValueError("backpressure_policy must be 'close' or 'drop'")
        if tick <= 0 or tick > 10:
            raise ValueError("tick must be in (0, 10] seconds")
        for name, value in (("max_connections", max_connections),
                            ("max_head_size", max_head_size), ("max_headers", max_headers),
                            ("max_body_size", max_body_size),
                            ("max_message_size", max_message_size),
                            ("max_backpressure", max_backpressure)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        self._sel = Selector(backend, FIRED_MAX)
        self._reg = Registry()
        self.on_request = on_request
        self.on_message = on_message
        self.on_close = on_close
        self._listeners = {}
        self._paused_listeners = set()
        self._closed = []
        self._mirrored = {}
        self._mirror = self._sel.fileno() < 0
        self._rbuf = <unsigned char *>malloc(RBUF_SIZE)
        if self._rbuf == NULL:
            raise MemoryError()
        self.max_connections = max_connections
        self.max_head_size = max_head_size
        self._read_ahead = max(PENDING_READ_MAX, max_head_size)   # a whole head always fits
        self.max_headers = max_headers
        self.max_body_size = max_body_size
        self.max_message_size = max_message_size
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.linger = linger
        self.tick = tick
        if flush_pacing < 0:
            raise ValueError("flush_pacing must be >= 0")
        self._pacing = flush_pacing
        self._pace_until = 0
        self.paced = 0
        self._pending = []
        self._fs.max_backpressure = max_backpressure
        self._fs.drop_policy = backpressure_policy == "drop"
        self._tick_ms = max(1, <int64_t>(tick * 1000))
        self._cc.max_head_size = max_head_size
        self._cc.max_headers = max_headers
        self._cc.max_body_size = max_body_size
        self._cc.header_ticks = self._ticks(header_timeout)
        self._cc.keepalive_ticks = self._ticks(keepalive_timeout)
        self._cc.linger_ticks = self._ticks(linger)
        self._epoch_ms = _monotonic_ms()
        self._wheel.now = 0
        self._next_id = 1
        # format 0: the raw WebSocket format (the message as it is)
        self._formats = [_Format(0, "websocket", b"~text~")]
        cdef bytes going_away = b"\x03\xe9server shutting down"     # 1001 + reason
        self._close_going_away = ws_frame(CLOSE, <const unsigned char *>PyBytes_AS_STRING(going_away),
                                          len(going_away))

    def __dealloc__(self):
        cdef int fd
        cdef Connection conn
        history_free(&self._hist)
        if self._pending:
            for ch in self._pending:
                fanout_discard(<Channel>ch)
            self._pending = None
        if self._table != NULL:
            for fd in range(self._table_size):
                if self._table[fd] != NULL:
                    conn = <Connection>self._table[fd]
                    self._release_conn(&conn.c)
                    self._table[fd] = NULL
                    Py_DECREF(conn)
            free(self._table)
            self._table = NULL
        free(self._rbuf)
        self._rbuf = NULL
        if self._close_going_away != NULL:
            frame_decref(self._close_going_away)
            self._close_going_away = NULL

    # -- formats, listeners, loop integration ------------------------------------------------

    def format(self, str kind, template="~text~", *, bytes ping=b"", bytes head=b"",
               bint chunked=True, bytes footer=b"", int deflate=0, Py_ssize_t deflate_min=0):
        """Register a wire format; subscribers of one format share every message's bytes.
        deflate: permessage-deflate window bits of the connections using it (websocket), so
        each message is compressed once for all of them; messages under deflate_min bytes go
        uncompressed."""
        fmt = _Format(len(self._formats), kind, template, ping=ping, head=head,
                      chunked=chunked, footer=footer, deflate=deflate, deflate_min=deflate_min)
        self._formats.append(fmt)
        return fmt

    @property
    def formats(self):
        return list(self._formats)

    def listen(self, host="127.0.0.1", int port=0, *, int backlog=511, bint reuse_port=False,
               sock=None):
        """Listen on host:port (or take a bound socket); returns the bound (host, port)."""
        if sock is None:
            family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
            sock = _socket.socket(family, _socket.SOCK_STREAM)
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEPORT, 1)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
        sock.listen(backlog)
        sock.setblocking(False)
        fd = sock.fileno()
        self._listeners[fd] = sock
        self._sel_add(fd, GG_READABLE)
        return sock.getsockname()[:2]

    @property
    def sockets(self):
        return list(self._listeners.values())

    def fileno(self):
        return self._sel.fileno()

    @property
    def backend(self):
        return self._sel.name

    def attach(self, loop=None):
        """Run on an asyncio loop (uvloop or not): the selector fd becomes a reader of the loop
        and the timing wheel ticks with loop.call_later."""
        import asyncio
        if self._loop is not None:
            raise CoreError("hub already attached to a loop")
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        if self._mirror:
            for fd, mask in list(self._mirrored.items()):
                self._mirror_set(fd, 0)
                self._mirror_set(fd, mask)
        else:
            self._loop.add_reader(self._sel.fileno(), self.poll)
        self._tick_handle = self._loop.call_later(self.tick, self._on_tick)

    def detach(self):
        if self._loop is None:
            return
        if self._pace_handle is not None:
            self._pace_handle.cancel()
            self._pace_handle = None
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._mirror:
            for fd in list(self._mirrored):
                mask = self._mirrored[fd]
                if mask & GG_READABLE:
                    self._loop.remove_reader(fd)
                if mask & GG_WRITABLE:
                    self._loop.remove_writer(fd)
        else:
            self._loop.remove_reader(self._sel.fileno())
        self._loop = None

    cdef _mirror_set(self, int fd, int mask):
        # poll backend: a poll set has no fd for the loop, so each socket is given to the loop
        # (once per interest change, never per message)
        old = self._mirrored.get(fd, 0)
        if mask:
            self._mirrored[fd] = mask
        else:
            self._mirrored.pop(fd, None)
        if self._loop is None:
            return
        if (old & GG_READABLE) and not (mask & GG_READABLE):
            self._loop.remove_reader(fd)
        if not (old & GG_READABLE) and (mask & GG_READABLE):
            self._loop.add_reader(fd, self.poll)
        if (old & GG_WRITABLE) and not (mask & GG_WRITABLE):
            self._loop.remove_writer(fd)
        if not (old & GG_WRITABLE) and (mask & GG_WRITABLE):
            self._loop.add_writer(fd, self.poll)

    cdef int _sel_add(self, int fd, int mask) except -1:
        self._sel.add(fd, mask)
        if self._mirror:
            self._mirror_set(fd, mask)
        return 0

    cdef int _sel_mod(self, int fd, int mask) except -1:
        self._sel.mod(fd, mask)
        if self._mirror:
            self._mirror_set(fd, mask)
        return 0

    cdef int _sel_remove(self, int fd) except -1:
        try:
            self._sel.remove(fd)
        except OSError:
            pass
        if self._mirror:
            self._mirror_set(fd, 0)
        return 0

    cdef int _interest(self, Conn *c, int mask) except -1:
        if c.interest != mask:
            c.interest = mask
            self._sel_mod(c.fd, mask)
        return 0

    cdef void _schedule_turn(self):
        if not self._turn_scheduled and self._loop is not None:
            self._turn_scheduled = True
            self._loop.call_soon(self._loop_turn)

    def _loop_turn(self):
        self._turn(WRITE_SLICE_NS)

    # -- the event loop side -----------------------------------------------------------------

    def poll(self, *args):
        """Handle every ready socket without blocking, then flush.  Called by the loop."""
        cdef int n, i, fd, mask
        n = self._sel.wait(0)
        for i in range(n):
            fd = self._sel._fired[i].fd
            mask = self._sel._fired[i].mask
            if fd < self._table_size and self._table[fd] != NULL:
                self._on_event(&(<Connection>self._table[fd]).c, mask)
            elif fd in self._listeners:
                self._accept(fd)
        self._turn(WRITE_SLICE_NS)
        return n

    def flush(self):
        """End of a loop turn: parse pipelined bytes, finish post-publish work, write every
        dirty connection once (one sendmsg each), then report closed connections.

        Pacing: when the last write pass was expensive (many subscribers), the next one waits
        `flush_pacing` times as long, so the publishes arriving meanwhile leave together, in one
        sendmsg per connection, instead of one each.  Light load is never delayed.

        Called here, the pass writes every dirty connection; in the loop's own turns it is
        sliced (WRITE_SLICE_NS) and goes on in the next turn."""
        self._turn(0)

    cdef int _turn(self, int64_t slice_ns) except -1:
        cdef list closed
        cdef bint waiting = False
        self._turn_scheduled = False
        for _ in range(8):            # bounded: callbacks below may create more work
            self._settle()
            if self._resume != NULL:
                self._process_resume()
            if self._fs.post != NULL:
                self._process_post()
            if self._fs.dirty != NULL:
                if self._pace_wait():
                    waiting = True
                else:
                    # sliced, unless closed connections wait to be released: they may be on
                    # the dirty list, and they go only once it is empty
                    self._flush_dirty_timed(slice_ns if not self._closed else 0)
            # closed connections may still be on the dirty list: they go once it is written
            if not self._closed or self._fs.dirty != NULL:
                break
            closed = self._closed
            self._closed = []
            cb = self.on_close
            for conn, reason in closed:
                if cb is not None:
                    try:
                        cb(conn, reason)
                    except Exception:
                        log.exception("on_close callback failed")
            closed = None             # the Connection objects may go now: no list holds them
        if waiting:
            return 0                  # the pacing timer runs the next turn
        if self._resume != NULL or self._fs.post != NULL or self._fs.dirty != NULL or self._closed:
            self._schedule_turn()
        return 0

    cdef bint _pace_wait(self):
        cdef int64_t now
        if self._pacing <= 0 or self._loop is None or self._closing or self._pace_until == 0:
            return False
        now = _monotonic_ns()
        if now >= self._pace_until:
            return False
        if self._pace_handle is None:
            self._pace_handle = self._loop.call_later((self._pace_until - now) / 1e9,
                                                      self._on_pace)
            self.paced += 1
        return True

    def _on_pace(self):
        self._pace_handle = None
        self._turn(WRITE_SLICE_NS)

    cdef void _flush_dirty_timed(self, int64_t slice_ns):
        cdef int64_t t0 = _monotonic_ns()
        cdef int64_t frames0 = self._fs.delivered_frames, writes0 = self._fs.writes
        cdef int64_t cost, frames, writes
        cdef bint done = self._flush_dirty(t0, slice_ns)
        # a pass cut into slices is judged whole: its cost, frames and writes add up
        self._pass_cost += _monotonic_ns() - t0
        self._pass_frames += self._fs.delivered_frames - frames0
        self._pass_writes += self._fs.writes - writes0
        if not done:
            # cut short: the rest goes on at once, next turn (after the sockets were read);
            # pacing waits only after a whole pass
            self._pace_until = 0
            return
        cost, frames, writes = self._pass_cost, self._pass_frames, self._pass_writes
        self._pass_cost = self._pass_frames = self._pass_writes = 0
        # Wait only while the writes are dominated by their fixed cost (few frames each): a
        # pass that already carried PACE_BATCH frames per sendmsg gains nothing from waiting,
        # and waiting then would leave the core idle while the backlog grows.  Nor does one
        # whose connections got one message each: messages then reach each connection less
        # often than once a pass (routing: 10,000 channels x 1 subscriber), so a wait
        # coalesces nothing and only delays - it cost the publisher WebSocket 5-10 % of the
        # core and pipelined HTTP publishers their throughput (their windows wait on it).
        # Where messages do come faster than passes (fanout), some connections already got
        # two in this pass, and a wait gathers more.
        if cost >= PACE_MIN_NS and self._pacing > 0 and frames < PACE_BATCH * writes \
                and (frames - writes) * PACE_COALESCE >= writes:
            # capped: with many connections a pass costs tens of ms, and waiting as long
            # again would add that much latency for little gain
            self._pace_until = _monotonic_ns() + min(<int64_t>(cost * self._pacing),
                                                     PACE_MAX_NS)
        else:
            self._pace_until = 0

    cdef bint _flush_dirty(self, int64_t t0=0, int64_t slice_ns=0):
        """Write the dirty connections, oldest first, one pass: the connections dirty when the
        pass began (those that become dirty meanwhile are the next pass's).  With slice_ns,
        stop once that long has passed since t0: the connections not written yet stay first on
        the dirty list (still marked dirty) and the pass goes on from there in the next call.
        True: the pass is done."""
        cdef Conn *c = self._fs.dirty
        cdef Conn *tail = self._fs.dirty_tail
        cdef Conn *last = self._pass_last if slice_ns > 0 and self._pass_last != NULL else tail
        cdef Conn *nxt
        cdef int k = 0
        self._fs.dirty = NULL
        self._fs.dirty_tail = NULL
        self._pass_last = NULL
        while c != NULL:
            nxt = c.dnext
            c.dnext = NULL
            c.flags &= ~CF_DIRTY
            if c.state != CS_CLOSED and not (c.flags & CF_WRITE_ARMED):
                self._write(c)
            if c == last:
                if nxt != NULL:
                    self._requeue(nxt, tail)
                return True
            c = nxt
            k += 1
            if slice_ns > 0 and c != NULL and k % WRITE_SLICE_CHECK == 0 and \
                    _monotonic_ns() - t0 >= slice_ns:
                self._requeue(c, tail)
                self._pass_last = last
                return False
        return True

    cdef void _requeue(self, Conn *first, Conn *tail) noexcept:
        """first..tail, still marked dirty, go back in front of what became dirty since."""
        tail.dnext = self._fs.dirty
        if self._fs.dirty == NULL:
            self._fs.dirty_tail = tail
        self._fs.dirty = first

    cdef void _write(self, Conn *c):
        cdef int r = flush_conn(&self._fs, c)
        if r < 0:
            self._close(c, "write error")
            return
        if r == 1:
            if not (c.flags & CF_WRITE_ARMED):
                c.flags |= CF_WRITE_ARMED
                self._interest(c, c.interest | GG_WRITABLE)
            return
        if c.flags & CF_WRITE_ARMED:
            c.flags &= ~CF_WRITE_ARMED
            self._interest(c, c.interest & ~GG_WRITABLE)
        if c.state == CS_HEAD:
            # the answers drained: parse the requests held behind them, read again
            if c.rlen > 0:
                self._queue_resume(c)
            elif c.flags & CF_READ_PAUSED:
                c.flags &= ~CF_READ_PAUSED
                self._interest(c, c.interest | GG_READABLE)
        if c.state == CS_CLOSING and not (c.flags & CF_SHUT_WR):
            # everything is written: half-close and linger until the client closes too, so the
            # last bytes are not destroyed by a RST (RFC 6455 §7.1.1, RFC 9112 §9.6)
            c.flags |= CF_SHUT_WR
            shutdown(c.fd, SHUT_WR)

    cdef void _on_event(self, Conn *c, int mask):
        if mask & GG_WRITABLE:
            self._write(c)
            if c.state == CS_CLOSED:
                return
        if mask & GG_READABLE:
            self._read(c)

    cdef void _accept(self, int lfd):
        cdef int fd, i, one = 1
        cdef char addr[28]
        cdef socklen_t alen
        cdef Connection conn
        for i in range(ACCEPT_BATCH):
            alen = sizeof(addr)
            fd = gg_accept(lfd, <sockaddr *>addr, &alen)
            if fd < 0:
                if errno == EINTR or errno == ECONNABORTED:
                    continue
                if errno == EMFILE or errno == ENFILE or errno == ENOBUFS or errno == ENOMEM:
                    # out of descriptors: stop watching this listener until the next tick, or
                    # a level-triggered selector would spin on it
                    log.warning("accept: %s; pausing the listener for one tick",
                                _errno.errorcode.get(errno, errno))
                    self._paused_listeners.add(lfd)
                    self._sel_mod(lfd, GG_NONE)
                return
            if self.connections >= self.max_connections or self._closing:
                gg_send(fd, PyBytes_AS_STRING(OVERLOAD_RESPONSE), len(OVERLOAD_RESPONSE))
                close(fd)
                self.rejected += 1
                continue
            if (<sockaddr *>addr).sa_family == AF_INET or (<sockaddr *>addr).sa_family == AF_INET6:
                # the fanout corks by itself: Nagle would only add latency
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            conn = self._register(fd)
            memcpy(conn._addr, addr, min(alen, sizeof(conn._addr)))
            conn._alen = alen
            self.accepted += 1

    cdef Connection _register(self, int fd):
        cdef Connection conn = Connection.__new__(Connection)
        cdef PyObject **table
        cdef int newsize
        cdef int64_t deadline
        if fd >= self._table_size:
            newsize = max(fd + 1, self._table_size * 2, 64)
            table = <PyObject **>realloc(self._table, newsize * sizeof(PyObject *))
            if table == NULL:
                close(fd)
                raise MemoryError()
            memset(table + self._table_size, 0, (newsize - self._table_size) * sizeof(PyObject *))
            self._table = table
            self._table_size = newsize
        conn._hub = self
        conn.c.fd = fd
        conn.c.id = self._next_id
        self._next_id += 1
        deadline = conn_open(&conn.c, &self._cc, self._wheel.now)
        conn.c.obj = <void *>conn
        conn.c.interest = GG_READABLE
        try:
            self._sel_add(fd, GG_READABLE)
        except OSError:
            close(fd)
            raise
        Py_INCREF(conn)
        self._table[fd] = <PyObject *>conn
        self.connections += 1
        self._wheel_set(&conn.c, deadline)
        return conn

    def adopt(self, int fd):
        """Take over a connected socket fd (socketpair, inherited socket) as a new connection
        in the request-head state.  The hub owns and closes the fd from now on."""
        import os
        os.set_blocking(fd, False)
        gg_nosigpipe(fd)              # what gg_accept does for accepted ones (native/compat.h)
        return self._register(fd)

    def adopt_pending(self, int fd, bint keep_alive=True):
        """adopt() straight into the pending state, as if a request had been read: lets a
        caller upgrade() or start_stream() a socket whose handshake happened elsewhere."""
        cdef Connection conn = self.adopt(fd)
        conn_dispatched(&conn.c)
        if keep_alive:
            conn.c.flags |= CF_KEEPALIVE
        self._wheel_set(&conn.c, 0)
        return conn

    # -- reading -----------------------------------------------------------------------------

    cdef void _read(self, Conn *c):
        cdef Py_ssize_t n = recv(c.fd, self._rbuf, RBUF_SIZE, 0)
        if n == 0:
            self._close(c, "eof")
            return
        if n < 0:
            if gg_would_block(errno) or errno == EINTR:
                return
            self._close(c, "read error")
            return
        if c.state == CS_HEAD or c.state == CS_BODY:
            self._feed_http(c, self._rbuf, n)
            if c.state == CS_CLOSED:
                return
            if c.state == CS_HEAD and (c.rlen >= self._read_ahead or self._backlogged(c)):
                # pipelined requests the client does not read the answers of: stop reading
                # until they drain (the keep-alive timeout closes a client that never reads)
                c.flags |= CF_READ_PAUSED
                self._interest(c, c.interest & ~GG_READABLE)
        elif c.state == CS_WEBSOCKET:
            self._feed_ws(c, self._rbuf, n)
        elif c.state == CS_PENDING or c.state == CS_LONGPOLL:
            # a pipelined request while Python decides or a long-poll waits: keep it for later
            # (bounded; past the bound, stop reading until the connection is back to reading)
            if self._stash(c, self._rbuf, n) < 0:
                return
            if c.rlen >= self._read_ahead:
                c.flags |= CF_READ_PAUSED
                self._interest(c, c.interest & ~GG_READABLE)
        # CS_STREAM, CS_CLOSING: a client has nothing to say there; bytes are dropped

    cdef int _stash(self, Conn *c, const unsigned char *data, Py_ssize_t n) except -1:
        if conn_buffer(c, data, n) < 0:
            self._close(c, "out of memory")
            return -1
        return 0

    cdef void _feed_http(self, Conn *c, const unsigned char *data, Py_ssize_t n):
        """Bytes in CS_HEAD/CS_BODY.  Parses straight from the read buffer when the whole
        request arrived at once (the usual case), else accumulates in c.rbuf."""
        cdef const unsigned char *buf
        cdef Py_ssize_t len_, used
        if c.rlen > 0 or c.state == CS_BODY:
            if self._stash(c, data, n) < 0:
                return
            buf = c.rbuf
            len_ = c.rlen
            used = self._parse_pipeline(c, buf, len_)
            if c.state != CS_CLOSED:
                conn_consume(c, used)
        else:
            used = self._parse_pipeline(c, data, n)
            if c.state != CS_CLOSED and c.state != CS_CLOSING and used < n:
                self._stash(c, data + used, n - used)
        # The request may have been answered (or upgraded) inside on_request, before the bytes
        # after it were stashed: those bytes (pipelined requests, frames sent right behind the
        # handshake) are parsed at the end of this turn.
        # (Only after progress: an incomplete head waits for more bytes, not for another turn.)
        if used > 0 and c.rlen > 0 and (c.state == CS_HEAD or c.state == CS_WEBSOCKET):
            self._queue_resume(c)
        if c.out.count > 0 and c.state != CS_CLOSED and not (c.flags & CF_WRITE_ARMED):
            # Answers are not paced: what these requests were answered leaves now, in one
            # sendmsg, not after the subscribers' bytes.  A publisher that waits for its
            # answers (requests in flight) would else slow down with every wait, and leave the
            # core idle meanwhile.  Not only while the dirty list waits (pacing): during a
            # sliced pass the connection would join the next pass, and that pass may be the
            # one that waits (pipelined HTTP routing: 132 k/s at 78 % of the core, 160 k/s
            # at 94 % with this).
            self._write(c)

    cdef inline bint _backlogged(self, Conn *c) noexcept:
        # answers queued to a client that does not read them: parse no more of its requests
        return self._fs.max_backpressure > 0 and c.out.bytes > self._fs.max_backpressure

    cdef Py_ssize_t _parse_pipeline(self, Conn *c, const unsigned char *buf, Py_ssize_t n):
        """Parse requests from buf while each is answered at once (pipelining): the work is
        linear in the bytes, and stops at an incomplete request, a request Python answers
        later, a state change (upgrade, close) or a backlog of unread answers.  Returns the
        bytes used; the caller keeps the rest."""
        cdef Py_ssize_t used = 0, k
        if c.state == CS_BODY:
            # the head of a request whose body is arriving is kept at buf's start
            used = self._parse_requests(c, buf, n)
            if used == 0:
                return 0
        while used < n and c.state == CS_HEAD and not self._backlogged(c):
            k = self._parse_requests(c, buf + used, n - used)
            if k == 0:
                break
            used += k
        return used

    cdef Py_ssize_t _parse_requests(self, Conn *c, const unsigned char *buf, Py_ssize_t n):
        """Parse one request from buf (head + body, connection.conn_http_next); returns the
        bytes used.  Leaves the connection pending (Python decides) or waiting for more."""
        cdef ConnEvent ev
        cdef Request req = conn_http_next(c, &self._cc, buf, n, &ev)
        if ev.kind == CE_REQUEST:
            self._dispatch(c, req)
            return ev.used
        if ev.kind == CE_HTTP_ERROR:
            self._error_response(c, ev.status, ev.explain.decode("latin-1"))
            return ev.used
        if ev.kind == CE_BODY_PENDING:
            # ask first whether this request may send a body, and how large (in Python)
            if not self._admit_body(c, req):
                return n
            conn_expect_body(c, req, ev.used, &ev)
            if ev.out_len:
                self._send_out(c, &ev)
        return 0                        # incomplete, or the head kept until the body is complete

    cdef bint _admit_body(self, Conn *c, Request req):
        """on_body(conn, req) answers an int (the most body bytes this request may send) or
        bytes (a whole answer: sent, then the connection closes unread).  Without on_body
        every body up to max_body_size is read."""
        cdef Connection conn = <Connection>c.obj
        cb = self.on_body
        if cb is None:
            return True
        req.peer = conn.peer
        try:
            verdict = cb(conn, req)
        except Exception:
            log.exception("on_body callback failed")
            self._error_response(c, 500, "Internal error.")
            return False
        if isinstance(verdict, bytes):
            self._send_bytes(c, verdict)
            self._begin_close(c)
            return False
        if req.content_length > verdict:
            self._error_response(c, 413, "Request body too large.")
            return False
        return True

    cdef void _dispatch(self, Conn *c, Request req):
        cdef Connection conn = <Connection>c.obj
        self._wheel_set(c, 0)           # Python's decision has its own timeouts
        self.requests += 1
        conn._head_only = req.method == "HEAD"
        cb = self.on_request
        if cb is None:
            self._error_response(c, 503, "No request handler.")
            return
        if self._closing:
            # draining: subscribers have their close frames queued already, so a publish now
            # would be answered 200 and reach no one; refuse every request instead
            self._error_response(c, 503, "Server is shutting down.")
            return
        if self._pub_routes:
            try:
                if self._fast_publish(c, conn, req):
                    return
            except Exception:
                log.exception("publisher fast path failed")
                if c.state == CS_PENDING:
                    self._error_response(c, 500, "Internal error.")
                return
        req.peer = conn.peer            # after the fast path: it never needs the text form
        try:
            cb(conn, req)
        except Exception:
            log.exception("on_request callback failed")
            if c.state == CS_PENDING:
                self._error_response(c, 500, "Internal error.")

    # -- the publisher fast path ----------------------------------------------------------------
    #
    # The common publish (POST/PUT to a publisher location, from an allowed peer, with the API
    # key, to plain channel ids, answered with one channel's JSON info or an empty 200) is
    # answered here without calling Python.  Anything else - an error, a header or query that
    # needs Python's rules, a new channel while the events channel is on, several channels with
    # the info answer, another Accept format - goes to on_request unchanged: the fast path
    # decides before it changes anything, and it answers only what Python would answer the same.

    def publish_route(self, str path, *, bint public=False, api_key=None, bint info=True,
                      events_channel=None, Py_ssize_t max_channel_id_length=1024,
                      Py_ssize_t max_message_size=1 << 20, bint cors=False):
        """Let the core answer the common publish to `path` (exact match) itself."""
        cdef PublishRoute r = PublishRoute(
            public=public, api_key=api_key, info=info, events_channel=events_channel,
            max_channel_id_length=max_channel_id_length, max_message_size=max_message_size,
            cors=cors)
        self._pub_routes[path] = r

    def clear_publish_routes(self):
        self._pub_routes.clear()

    @property
    def publish_routes(self):
        """path -> requests the core answered there."""
        return {k: (<PublishRoute>v).answered for k, v in self._pub_routes.items()}

    cdef bint _fast_publish(self, Conn *c, Connection conn, Request req) except -1:
        """The common publish answered without Python (pubroute.pyx decides, before anything
        changes); False: Python takes the request."""
        cdef PublishRoute r = self._pub_routes.get(req.path)
        cdef list names
        cdef bint binary = False, keep, created
        cdef int answer = 0
        cdef Channel ch = None
        cdef str name
        if r is None:
            return False
        names = r.decide(req, conn.peer_allowed, self._reg.channels, &binary, &answer)
        if names is None:
            return False
        body = req.body
        for name in names:
            ch = self._creating(name, &created)
            self._publish_ch(ch, <const unsigned char *>PyBytes_AS_STRING(body),
                             PyBytes_GET_SIZE(body), binary, None, None)
        r.answered += 1
        keep = bool(c.flags & CF_KEEPALIVE) and not self._closing
        self._send_bytes(c, publish_answer(answer, ch, keep))
        if keep:
            self._to_head(c)
        else:
            self._begin_close(c)
        return True

    cdef void _error_response(self, Conn *c, int status, str explain):
        """Answer a bad request with its status and explain header, then close: after a
        malformed head, the stream position of the next request is unknown."""
        self._send_bytes(c, error_answer(status, explain))
        self._begin_close(c)

    cdef void _feed_ws(self, Conn *c, const unsigned char *data, Py_ssize_t n):
        """Frames in CS_WEBSOCKET: the machine (connection.conn_ws_next) gives one event at a
        time; the hub publishes or calls Python, queues pongs and close replies."""
        cdef Py_ssize_t pos = 0
        cdef ConnEvent ev
        cdef int kind
        cdef Connection conn = <Connection>c.obj
        cdef Frame *f
        ev.owned = NULL
        while pos < n and c.state == CS_WEBSOCKET:
            kind = conn_ws_next(c, data + pos, n - pos, &ev)
            pos += ev.used
            if kind == CE_NONE:
                break
            if kind == CE_WS_MESSAGE:
                self.messages_in += 1
                if conn._publish_to is not None:
                    # trusted publisher: the core publishes without calling Python
                    for ch in conn._publish_to:
                        self._publish_ch(self._reg.channels.get(ch), ev.data, ev.len,
                                         ev.opcode == BINARY, None, None)
                elif self.on_message is not None:
                    payload = PyBytes_FromStringAndSize(<const char *>ev.data, ev.len)
                    try:
                        self.on_message(conn, ev.opcode, payload)
                    except Exception:
                        log.exception("on_message callback failed")
                        self._close_ws(c, 1011, b"internal error")
            elif kind == CE_WS_PING:
                # The pong counts against the backpressure budget like any frame: a client
                # that pings and never reads would else make us queue pongs without end.  Under
                # the drop policy it is skipped (RFC 6455 §5.5.3: a pong may answer only the
                # latest ping).
                f = frame_from(ev.out, ev.out_len)
                if f != NULL:
                    self._queue_frame(c, f, True)
                    if self._fs.post != NULL:
                        self._process_post()     # closes it if it became a slow consumer
            elif kind == CE_WS_CLOSE:
                # the client's close echoed, or a protocol error's close: the machine is closing
                self._send_close(c, &ev)
        conn_event_clear(&ev)

    cdef void _queue_resume(self, Conn *c):
        if c.rlen > 0 and not (c.flags & CF_RESUME):
            c.flags |= CF_RESUME
            c.rnext = self._resume
            self._resume = c
            self._schedule_turn()

    cdef void _process_resume(self):
        cdef Conn *c = self._resume
        cdef Conn *nxt
        cdef unsigned char *buf
        cdef Py_ssize_t n
        self._resume = NULL
        while c != NULL:
            nxt = c.rnext
            c.rnext = NULL
            c.flags &= ~CF_RESUME
            if c.rlen > 0 and (c.state == CS_HEAD or c.state == CS_WEBSOCKET):
                # take the stash: the feeders below may stash again
                buf = c.rbuf
                n = c.rlen
                c.rbuf = NULL
                c.rlen = 0
                c.rcap = 0
                if c.state == CS_HEAD:
                    self._feed_http(c, buf, n)
                else:
                    self._feed_ws(c, buf, n)
                free(buf)
            if (c.flags & CF_READ_PAUSED and c.state != CS_CLOSED and c.state != CS_PENDING
                    and c.rlen < self._read_ahead and not self._backlogged(c)):
                c.flags &= ~CF_READ_PAUSED
                self._interest(c, c.interest | GG_READABLE)
            c = nxt

    # -- writing helpers ---------------------------------------------------------------------

    cdef void _queue_frame(self, Conn *c, Frame *f, bint control=False):
        """Queue a frame to one connection (takes over the caller's reference).  Every such
        frame, an answer, a ping or pong, a close, goes through here, so the corked batches of
        c's own groups are queued first in this one place (ordering without a global
        settle).  control: a pong, under the backpressure budget (skipped past it; the close
        policy marks the connection slow); anything else is queued whatever the budget."""
        cdef int r
        self._settle_conn(c)
        r = enqueue_control(&self._fs, c, f) if control else enqueue_always(&self._fs, c, f)
        frame_decref(f)
        if r < 0:
            self._close(c, "out of memory")
        elif r > 0 or not control:
            self._schedule_turn()

    cdef void _send_out(self, Conn *c, ConnEvent *ev):
        """Queue the bytes the machine asks to send (ev.out)."""
        cdef Frame *f = frame_from(ev.out, ev.out_len)
        if f == NULL:
            self._close(c, "out of memory")
            return
        self._queue_frame(c, f)

    cdef void _send_bytes(self, Conn *c, bytes data):
        cdef Frame *f = frame_from(<const unsigned char *>PyBytes_AS_STRING(data), len(data))
        if f == NULL:
            self._close(c, "out of memory")
            return
        self._queue_frame(c, f)

    cdef void _to_head(self, Conn *c):
        """Back to reading requests on a keep-alive connection."""
        self._wheel_set(c, conn_to_head(c, &self._cc, self._wheel.now))
        self._queue_resume(c)
        if (c.flags & CF_READ_PAUSED) and c.rlen == 0 and not self._backlogged(c):
            c.flags &= ~CF_READ_PAUSED
            self._interest(c, c.interest | GG_READABLE)

    cdef void _begin_close(self, Conn *c):
        """Write what is queued, half-close, then close on EOF or after `linger`."""
        if c.state == CS_CLOSED:
            return
        self._leave_all(c)
        cdef int64_t at = conn_begin_close(c, &self._cc, self._wheel.now)
        if c.flags & CF_READ_PAUSED:
            c.flags &= ~CF_READ_PAUSED
            self._interest(c, c.interest | GG_READABLE)
        self._wheel_set(c, at)
        mark_dirty(&self._fs, c)     # writes the rest, then shuts down the write side
        self._schedule_turn()

    cdef void _close_ws(self, Conn *c, int code, bytes reason):
        cdef ConnEvent ev
        if c.state != CS_WEBSOCKET:
            return
        conn_close_frame(&ev, code, <const unsigned char *>PyBytes_AS_STRING(reason),
                         PyBytes_GET_SIZE(reason))
        self._send_close(c, &ev)

    cdef void _send_close(self, Conn *c, ConnEvent *ev):
        """Queue a close frame (ev.out) whatever the budget, then close after it."""
        cdef Frame *f = frame_from(ev.out, ev.out_len)
        if f != NULL:
            self._queue_frame(c, f)
        self._begin_close(c)

    cdef _close_gracefully(self, Connection conn, int code, reason):
        cdef Conn *c = &conn.c
        cdef bytes r = reason.encode("utf-8") if isinstance(reason, str) else bytes(reason)
        if c.state == CS_WEBSOCKET:
            self._close_ws(c, code, r)
        elif c.state == CS_STREAM:
            if conn._footer:
                self._send_bytes(c, conn._footer)
            self._begin_close(c)
        else:
            self._begin_close(c)

    cdef void _close(self, Conn *c, str reason):
        """Close now: unsubscribe, forget the fd, release buffers; on_close runs at turn end."""
        cdef Connection conn
        if c.state == CS_CLOSED:
            return
        conn = <Connection>c.obj
        self._release_conn(c)
        self.connections -= 1
        # the table's reference moves to _closed: released after the lists are drained
        self._table[c.fd] = NULL
        self._closed.append((conn, reason))
        Py_DECREF(conn)
        c.fd = -1
        self._schedule_turn()

    cdef void _release_conn(self, Conn *c):
        self._leave_all(c)
        self._wheel_set(c, 0)
        self._sel_remove(c.fd)
        close(c.fd)
        drop_queue(&self._fs, c)
        conn_release(c)
        c.state = CS_CLOSED

    # -- subscriptions and publishing --------------------------------------------------------

    cdef _subscribe_all(self, Connection conn, channels, Format fmt):
        conn.c.fmt = fmt.index
        for ch in channels:
            self._subscribe(conn, ch, fmt)

    cdef bint _subscribe(self, Connection conn, str channel, Format fmt) except -1:
        if fmt.index >= len(self._formats) or self._formats[fmt.index] is not fmt:
            raise CoreError("format belongs to another hub")
        ch = self._reg.channels.get(channel)
        if ch is not None:
            self._settle_channel(<Channel>ch)
        return self._reg.subscribe(&conn.c.subs, <void *>&conn.c, channel, fmt.index) != NULL

    def publish(self, channels, payload, event_id=None, event_type=None, binary=None,
                bint create=False):
        """Publish one message to one channel (a str) or to several (a list or tuple, in
        order, duplicates included); one call for all of them.

        A str returns how many connections it was queued to (0 when the channel has no
        subscribers).  A list or tuple returns one ``(channel, queued, created)`` per name:
        the Channel (None if it does not exist and create is false), the connections queued to,
        and whether this call created it.  create: a channel that does not exist is created
        (persistent, as ensure_channel) and numbered from 1; without it such a channel is
        skipped (counted in published, nothing stored).
        binary None: the payload goes out as text if it is valid UTF-8 (checked here, in C),
        else as binary (a text frame must be UTF-8, RFC 6455 §5.6).

        Policy of the fanout path:
        - The message is rendered once per wire format present among the subscribers (one
          refcounted frame each); every subscriber's queue gets a reference, never a copy.
        - Nothing is written here: the first publish of a loop turn schedules one flush, which
          writes each dirty connection with one sendmsg for everything queued to it.
        - Corking per channel: for a group of 8 or more WebSocket/stream subscribers sharing a
          format, the turn's messages are appended to one batch (a copy per message, not per
          subscriber) that each subscriber's queue references once at the end of the turn -
          one iovec per subscriber however many messages.  Anything else reaching a connection
          (a direct send, a ping, a close, a direct publish of another channel) first settles
          the batches of that connection's own groups, and a subscription change those of its
          channel, so every connection receives its bytes in the order of the calls and a
          batch is never split by bytes for a connection outside it.  The count
          returned for such a group is its subscribers at the time of the call.
        - A subscriber whose queue already holds bytes and would exceed `max_backpressure`
          is a slow consumer.  Policy "close" (default): it is closed (WebSocket close 1008
          "slow consumer", counted in closed_slow) and its queued frames are released at once.
          Policy "drop": this message is skipped for it (counted in dropped) and it stays.
          The publisher never blocks; memory stays bounded by subscribers x budget.
        - Binary messages go to WebSocket subscribers as binary frames, untemplated.
        - Connections that are closing or closed are skipped.
        - A long-poll subscriber takes the first message and its subscription ends.
        """
        cdef bytes data
        cdef const unsigned char *p
        cdef Py_ssize_t n, queued
        cdef bint is_binary
        cdef Channel ch
        cdef bint created
        cdef list out
        if isinstance(payload, str):
            data = (<str>payload).encode("utf-8")
        elif type(payload) is bytes:
            data = <bytes>payload
        else:
            data = bytes(payload)
        p = <const unsigned char *>PyBytes_AS_STRING(data)
        n = PyBytes_GET_SIZE(data)
        if binary is None:
            is_binary = not utf8_valid(p, n)
        else:
            is_binary = bool(binary)
        if isinstance(channels, str):
            ch = self._creating(<str>channels, &created) if create else \
                self._reg.channels.get(<str>channels)
            return self._publish_ch(ch, p, n, is_binary, event_id, event_type)
        if not isinstance(channels, (list, tuple)):
            raise TypeError("channels must be a str, or a list or tuple of str")
        out = []
        for name in channels:
            if not isinstance(name, str):
                raise TypeError("channel names must be str")
            created = False
            ch = self._creating(<str>name, &created) if create else self._reg.channels.get(name)
            queued = self._publish_ch(ch, p, n, is_binary, event_id, event_type)
            out.append((ch, queued, created))
        return out

    def publish_items(self, list items, Py_ssize_t max_id_len):
        """The multi-channel publisher WebSocket's common case in one call: items are its
        decoded JSON items (objects with ``id`` (a str or a list of str), ``text`` (str),
        ``event_id`` and ``event_type`` (str or None): gogin's PublishItem), published in
        order as text messages, each to its channels (a channel is created on its first
        publish, as ``publish(..., create=True)``).

        An item is refused, with the same reason and in the same order of checks as the
        Python publisher location gives it: no channel ("id must be ..."), empty text, an
        event field with CR or LF, a channel id the rules of every location refuse
        (``channel_id_problem`` with ``max_id_len``), the text not being valid Unicode.  The
        events channel is not checked here: the caller takes this path only without one
        (its channel_created events go out between the publishes).

        Returns None when every item was published, else the list of (index, reason) of
        those that were not."""
        cdef Py_ssize_t i, j, k, plen
        cdef object item, ids, text, eid, etype, err
        cdef list names, errors = None
        cdef str name
        cdef const char *p = NULL
        cdef bint created
        cdef int status
        cdef PyObject *v
        cdef Py_ssize_t *off = self._item_off
        for i in range(len(items)):
            item = items[i]
            if type(item) is not self._item_type:
                member_offsets(type(item), ITEM_FIELDS, off)
                self._item_type = type(item)
            # the fields straight from their slots (a msgspec Struct), else by name
            v = slot_at(item, off[0])
            ids = <object>v if v != NULL else item.id
            v = slot_at(item, off[1])
            text = <object>v if v != NULL else item.text
            v = slot_at(item, off[2])
            eid = <object>v if v != NULL else item.event_id
            v = slot_at(item, off[3])
            etype = <object>v if v != NULL else item.event_type
            if type(ids) is str:
                names = None
                k = 1
            elif type(ids) is list and len(<list>ids) > 0:
                names = <list>ids
                k = len(names)
                for j in range(k):
                    if type(names[j]) is not str:
                        k = 0
                        break
            else:
                k = 0
            err = None
            if k == 0:
                err = "id must be a channel id or a list of them"
            elif type(text) is not str or len(<str>text) == 0:
                err = "text must be a non-empty string"
            elif eid is not None and (type(eid) is not str or "\r" in eid or "\n" in eid):
                err = ("event_id must be a string." if type(eid) is not str
                       else "event_id must not contain CR or LF.")
            elif etype is not None and (type(etype) is not str or "\r" in etype
                                        or "\n" in etype):
                err = ("event_type must be a string." if type(etype) is not str
                       else "event_type must not contain CR or LF.")
            else:
                for j in range(k):
                    name = <str>ids if names is None else <str>names[j]
                    err = channel_id_error(name, max_id_len, &status)
                    if err is not None:
                        break
            if err is None:
                try:
                    p = PyUnicode_AsUTF8AndSize(text, &plen)
                except UnicodeEncodeError:       # a lone surrogate escape ("\ud800")
                    err = "text is not valid Unicode"
            if err is not None:
                if errors is None:
                    errors = []
                errors.append((i, err))
                continue
            for j in range(k):
                name = <str>ids if names is None else <str>names[j]
                self._publish_ch(self._creating(name, &created), <const unsigned char *>p, plen,
                                 False, eid, etype)
        return errors

    cdef Channel _creating(self, str name, bint *created):
        """The channel a creating publish goes to (every publish of the core's own paths, and
        publish(create=True)): made on its first publish, numbered from 1, and kept while
        empty (persistent, as ensure_channel)."""
        cdef Channel ch = self._reg.channels.get(name)
        created[0] = ch is None
        if ch is None:
            ch = self._reg.get_or_create(name)
        ch.persistent = True
        return ch

    cdef Py_ssize_t _publish_ch(self, Channel ch, const unsigned char *data, Py_ssize_t n,
                                bint binary, event_id, event_type) except -1:
        """A local publish: counted; a channel that does not exist (None) gets nothing, else
        this node numbers the message (id, time, tag), then _emit."""
        cdef bytes eid = b"", etype = b""
        cdef int64_t now
        self._fs.published += 1
        if ch is None:
            return 0
        now = self._next_position()
        if event_id is not None:
            eid = event_id.encode("utf-8") if isinstance(event_id, str) else bytes(event_id)
        if event_type is not None:
            etype = event_type.encode("utf-8") if isinstance(event_type, str) else bytes(event_type)
        return self._emit(ch, data, n, binary, ch.last_id + 1, now, self._last_tag,
                          <const unsigned char *>PyBytes_AS_STRING(eid), len(eid),
                          <const unsigned char *>PyBytes_AS_STRING(etype), len(etype), 0)

    cdef int64_t _next_position(self) noexcept:
        """The (time, tag) of this node's next message: returns the time, sets _last_tag.
        tag (utils.c, add_msg_to_channel): the server's previous tag + 1 for a message in the
        same second as the server's previous message, else 1; so (time, tag) orders every
        message of the server, whatever its channel.  With a position mark (a broker without
        shared numbering, set_position_mark) tags are k * mod + res instead, and the time
        never goes back, so positions this node gives out stay ordered and recognisable."""
        cdef int64_t now = time(NULL)
        cdef int64_t t
        if self._mark_mod == 0:
            self._last_tag = self._last_tag + 1 if now == self._last_time else 1
            self._last_time = now
            return now
        if now < self._last_time:
            now = self._last_time
        if now == self._last_time:
            t = _mark_after(self._last_tag, self._mark_mod, self._mark_res)
            if t > 0x7FFFFFFF:
                now += 1                    # this second's tags are used up: the next second
                t = self._mark_res
        else:
            t = self._mark_res
        self._last_time = now
        self._last_tag = <int>t
        return now

    cdef bint _foreign_position(self, Channel ch, since_time, int since_tag) except -1:
        """With a position mark: True when (since_time, since_tag) is not a position this
        node can have given out (its tag is not one of this node's, nor just before one): a
        resume from another node.  The channel's position then moves past it (the gap signal
        is dated there) and the node's next messages come after it."""
        cdef int64_t t, tag, now
        if self._mark_mod == 0 or since_time is None or since_tag < 0:
            return False
        tag = since_tag % self._mark_mod
        if tag == self._mark_res or tag == self._mark_res - 1:
            return False
        t = since_time
        now = max(<int64_t>time(NULL), self._last_time)
        if t < now:
            t = now
        if t == self._last_time and self._last_tag > since_tag:
            tag = self._last_tag
        elif t == since_time:
            tag = since_tag
        else:
            tag = -1
        # the gap's tag: just before a tag of this node's (res - 1), after both positions
        tag = _mark_after(tag, self._mark_mod, self._mark_res) - 1
        if tag > 0x7FFFFFFF:
            t += 1
            tag = self._mark_res - 1
        self._last_time = t
        self._last_tag = <int>tag
        ch.last_time = t
        ch.last_tag = <int>tag
        return True

    cdef Py_ssize_t _emit(self, Channel ch, const unsigned char *data, Py_ssize_t n,
                          bint binary, int64_t id, int64_t t, int tag,
                          const unsigned char *eid, Py_ssize_t eid_len,
                          const unsigned char *etype, Py_ssize_t etype_len,
                          int64_t age_ms) except -1:
        """Store (history on) and fan out one numbered message: the channel's next one, from a
        local publish or from a shared broker.  age_ms: how long ago it was published (a
        message read from the broker's history expires that much sooner)."""
        cdef Message m
        cdef Py_ssize_t queued
        ch.published += 1 if ch.epoch == 0 else max(0, id - ch.last_id)
        ch.last_id = id
        ch.last_tag = tag
        ch.last_time = t
        if self._hist.max_per_channel > 0:
            history_append(&self._hist, &ch.hist, id, t, tag, binary, data, n,
                           eid, eid_len, etype, etype_len, _monotonic_ms() - age_ms)
        if ch.subscribers == 0:
            return 0
        memset(&m, 0, sizeof(Message))
        m.data = data
        m.len = n
        m.binary = binary
        m.id = id
        m.time = t
        m.tag = tag
        m.event_id = eid
        m.event_id_len = eid_len
        m.event_type = etype
        m.event_type_len = etype_len
        return self._fanout(ch, &m)

    cdef Py_ssize_t _fanout(self, Channel ch, Message *m) except -1:
        cdef Py_ssize_t queued
        m.channel = <const unsigned char *>PyBytes_AS_STRING(ch.name_utf8)
        m.channel_len = len(ch.name_utf8)
        m.channel_json = <const unsigned char *>PyBytes_AS_STRING(ch.name_json)
        m.channel_json_len = len(ch.name_json)
        try:
            queued = fanout_publish(&self._fs, ch, self._formats, m, self._pending)
        finally:
            message_release(m)
        if self._fs.post != NULL:
            self._process_post()
        if self._fs.dirty != NULL or self._pending:
            self._schedule_turn()
        return queued

    # -- a shared broker's receive path (gogin/brokers, docs/deployment.md) -------------------
    #
    # A broker numbers each channel's messages (an epoch and an id from 1 in it) and gives every
    # node the same envelope (envelope.pyx).  Order, duplicates and gaps are decided here from
    # the ids: the next id is delivered, an old one dropped; anything else (a jump, a new epoch,
    # a control envelope) goes back to the broker, which reads the channel's stored messages and
    # hands them, with what it held meanwhile, to deliver_fill.

    def deliver_batch(self, list replies, Py_ssize_t prefix_len):
        """Messages one read of a PUB/SUB connection brought: [kind, channel, envelope] lists
        (as hiredis reads RESP `message` pushes), channel = prefix + channel id.  Each next
        message is stored and fanned out here, in the core; returns [(name, envelope)] of those
        the broker must handle (a jump or a new epoch: fill from history; a deletion), or None."""
        cdef list report = None
        cdef list r
        cdef bytes chan, env
        cdef Channel ch
        cdef Envelope e
        cdef str name
        for item in replies:
            r = <list>item
            chan = <bytes>r[1]
            env = <bytes>r[2]
            self._bc.received += 1
            try:
                name = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(chan) + prefix_len,
                                            PyBytes_GET_SIZE(chan) - prefix_len, NULL)
            except UnicodeDecodeError:
                self._bc.malformed += 1
                continue
            ch = self._received(name, env, &e)
            if ch is None:
                continue
            if e.flags & ENV_DELETED:
                pass
            elif e.epoch == ch.epoch:
                if e.id <= ch.last_id:
                    self._bc.duplicates += 1
                    continue
                if e.id == ch.last_id + 1:
                    self._deliver_env(ch, &e, 0)
                    continue
            elif ch.epoch == EPOCH_NONE and e.id == 1:
                # the first message of a channel the broker had no numbering for when this
                # node subscribed: the numbering starts here, nothing came before it
                ch.epoch = e.epoch
                self._deliver_env(ch, &e, 0)
                continue
            self._bc.held += 1
            if report is None:
                report = []
            report.append((name, env))
        return report

    cdef inline Channel _received(self, str name, bytes env, Envelope *e):
        """The channel a received envelope is for, with the envelope parsed into e; None (and
        counted) for a channel this node no longer holds or bytes that are no envelope."""
        cdef Channel ch = self._reg.channels.get(name)
        if ch is None:
            self._bc.unknown += 1
            return None
        if envelope_parse(<const unsigned char *>PyBytes_AS_STRING(env),
                          PyBytes_GET_SIZE(env), e) != 0:
            self._bc.malformed += 1
            return None
        return ch

    def deliver_fill(self, str name, list envelopes):
        """A channel's stored messages read from the broker (oldest first), then the live ones
        held meanwhile: each is delivered in id order, duplicates dropped.  A real gap (ids
        skipped: trimmed or expired before this node read them; or a new epoch: the broker lost
        the channel's data) sends the gap signal (id -4) to the channel's subscribers once,
        before the message after it.  A channel this node had no numbering for yet adopts the
        first one silently (nobody here has missed anything).  Returns messages delivered."""
        cdef Channel ch = self._reg.channels.get(name)
        cdef Envelope e
        cdef Py_ssize_t done = 0
        cdef int64_t now = time(NULL)
        if ch is None:
            return 0
        for item in envelopes:
            env = <bytes>item
            if envelope_parse(<const unsigned char *>PyBytes_AS_STRING(env),
                              PyBytes_GET_SIZE(env), &e) != 0:
                self._bc.malformed += 1
                continue
            if e.flags & ENV_DELETED:
                continue
            if e.epoch != ch.epoch:
                if ch.epoch > 0 or ch.last_id != 0:
                    # the numbering this node knew is gone with the broker's data
                    history_clear_channel(&self._hist, &ch.hist)
                    self._signal_gap(ch, &e)
                    ch.last_id = e.id - 1
                elif ch.epoch == EPOCH_NONE:
                    # the broker had no numbering when this node synced: every id from 1 was
                    # published since, so ids before this one are lost here
                    ch.last_id = 0
                    if e.id > 1:
                        self._signal_gap(ch, &e)
                        ch.last_id = e.id - 1
                else:
                    self._mark_unseen(ch, e.id - 1, e.time, e.tag - 1)
                    ch.last_id = e.id - 1
                ch.epoch = e.epoch
            elif e.id <= ch.last_id:
                self._bc.duplicates += 1
                continue
            elif e.id > ch.last_id + 1:
                self._signal_gap(ch, &e)
            self._deliver_env(ch, &e, max(0, now - e.time) * 1000)
            done += 1
        return done

    def sync_position(self, str name, int64_t epoch, int64_t last_id):
        """After a fill: the broker's own count for the channel (epoch, last id; epoch 0: the
        broker has none, and the channel's epoch becomes -1, "synced, nothing before").  Messages up
        to it that no stored copy brought are lost for this node's subscribers (gap signal);
        for a channel new here, the position is taken silently, and a client resuming from
        before it is told of the gap."""
        cdef Channel ch = self._reg.channels.get(name)
        cdef Envelope e
        if ch is None:
            return
        if epoch == 0:
            # the broker has no numbering for it (never published, deleted, or lost): from
            # now on this node knows every id from 1 is new (deliver_fill)
            if ch.epoch == 0 and ch.last_id == 0:
                ch.epoch = EPOCH_NONE
            return
        if ch.epoch == 0 and ch.last_id == 0:
            ch.epoch = epoch
            if last_id > 0:
                self._mark_unseen(ch, last_id, time(NULL), 0)
                ch.last_id = last_id
                ch.published = last_id
            return
        if epoch == ch.epoch and last_id <= ch.last_id:
            return
        memset(&e, 0, sizeof(Envelope))
        e.time = time(NULL)
        e.tag = 1
        if epoch != ch.epoch:
            history_clear_channel(&self._hist, &ch.hist)
        self._signal_gap(ch, &e)
        ch.epoch = epoch
        ch.last_id = last_id
        ch.published = max(ch.published, last_id)

    def set_gap_text(self, bytes text):
        self._gap_text = text

    def broker_counters(self):
        return {"received": self._bc.received, "delivered": self._bc.delivered,
                "duplicates": self._bc.duplicates, "unknown": self._bc.unknown,
                "malformed": self._bc.malformed, "held": self._bc.held, "gaps": self._bc.gaps}

    # -- a broker without shared numbering (NATS: docs/deployment.md) -----------------------
    #
    # Every node numbers what it receives itself, in the order it arrives, like a local
    # publish; positions (time, tag) are therefore this node's own, and carry its mark.

    def set_position_mark(self, int modulus, int residue):
        """Tags this node gives out are k * modulus + residue (0 < residue < modulus), and its
        times never go back.  A resume from a (time, tag) whose tag is neither such a tag nor
        one below it came from another node: it gets the gap signal and no stored message
        (nothing here is known to follow it).  modulus 0: plain push-stream tags."""
        if modulus < 0 or (modulus > 0 and not 0 < residue < modulus):
            raise ValueError("the mark needs 0 < residue < modulus")
        self._mark_mod = modulus
        self._mark_res = residue if modulus else 0

    def deliver_local(self, list items):
        """Messages a broker without numbering brought, in arrival order: a flat list
        [name, envelope, name, envelope, ...].  Each one is numbered here (the channel's next
        id, this node's time and tag), stored and fanned out, in the core; returns
        [(name, envelope)] of the control envelopes (a deletion), or None."""
        cdef list report = None
        cdef Py_ssize_t i, n = len(items)
        cdef Channel ch
        cdef Envelope e
        cdef bytes env
        cdef int64_t now
        if n % 2:
            raise ValueError("deliver_local takes name, envelope pairs")
        for i in range(0, n, 2):
            env = <bytes>items[i + 1]
            self._bc.received += 1
            ch = self._received(<str>items[i], env, &e)
            if ch is None:
                continue
            if e.flags & ENV_DELETED:
                self._bc.held += 1
                if report is None:
                    report = []
                report.append((items[i], env))
                continue
            now = self._next_position()
            self._bc.delivered += 1
            self._emit(ch, e.data, e.len, e.flags & ENV_BINARY, ch.last_id + 1, now,
                       self._last_tag, e.eid, e.eid_len, e.etype, e.etype_len, 0)
        return report

    def mark_gap(self, str name, bint signal=True):
        """What was published to the channel until now may not have reached this node (it
        just started receiving it, or its broker connection was down): a replay from a
        position before now reports the gap; signal: the gap signal (id -4) goes to the
        channel's subscribers now too."""
        cdef Channel ch = self._reg.channels.get(name)
        cdef Envelope e
        if ch is None:
            return
        memset(&e, 0, sizeof(Envelope))
        e.time = self._next_position()
        e.tag = self._last_tag
        if signal:
            self._signal_gap(ch, &e)
            ch.last_time = e.time
            ch.last_tag = e.tag - 1
        self._mark_unseen(ch, max(ch.last_id, 1), e.time, e.tag - 1)

    cdef void _mark_unseen(self, Channel ch, int64_t id, int64_t t, int tag) noexcept:
        """Messages up to `id` exist but were never here: a replay from before it reports the
        gap (history.pyx's lost marks)."""
        if id <= 0:
            return
        ch.hist.lost += 1
        ch.hist.lost_id = id
        ch.hist.lost_time = t
        ch.hist.lost_tag = tag

    cdef int _deliver_env(self, Channel ch, Envelope *e, int64_t age_ms) except -1:
        self._bc.delivered += 1
        self._emit(ch, e.data, e.len, e.flags & ENV_BINARY, e.id, e.time, e.tag,
                   e.eid, e.eid_len, e.etype, e.etype_len, age_ms)
        return 0

    cdef int _signal_gap(self, Channel ch, Envelope *next_) except -1:
        """The gap signal (id -4) to every subscriber of ch, dated just before next_; and a
        replay from before next_ reports it too."""
        cdef Message m
        self._bc.gaps += 1
        self._mark_unseen(ch, max(ch.last_id, next_.id - 1), next_.time, next_.tag - 1)
        if ch.subscribers == 0:
            return 0
        memset(&m, 0, sizeof(Message))
        m.data = <const unsigned char *>PyBytes_AS_STRING(self._gap_text)
        m.len = len(self._gap_text)
        m.id = -4
        m.time = next_.time
        m.tag = next_.tag - 1
        self._fanout(ch, &m)
        return 0

    cdef void _settle(self):
        """Queue every corked batch to its subscribers (fanout_publish): done at the end of
        the turn and before anything else is queued to a connection or a subscription
        changes, so each connection gets its bytes in the order of the calls."""
        cdef list pending = self._pending
        if not pending:
            return
        self._pending = []
        for ch in pending:
            fanout_settle(&self._fs, <Channel>ch)
        if self._fs.post != NULL or self._fs.dirty != NULL:
            self._schedule_turn()

    cdef void _settle_conn(self, Conn *c):
        """Before bytes reach c or c leaves its channels: the corked batches of c's own groups
        are queued (to every member of those groups: a batch holds the turn's messages so
        far, so each member still gets its bytes in the order of the calls).  Batches of
        channels c is not on stay corked until the turn's end: an unrelated answer splits
        nothing."""
        if self._pending and conn_settle(&self._fs, c):
            if self._fs.post != NULL or self._fs.dirty != NULL:
                self._schedule_turn()

    cdef void _leave_all(self, Conn *c):
        """c leaves every channel it is on: its groups' corked batches are queued first, to
        every member they were built for (c included: it still gets what was published
        before it left)."""
        self._settle_conn(c)
        self._reg.unsubscribe_all(&c.subs)

    cdef void _settle_channel(self, Channel ch):
        """A subscription of ch changes: its batches go to the subscribers they were built
        for, before anyone joins or leaves."""
        if ch.corked:
            fanout_settle(&self._fs, ch)
            if self._fs.post != NULL or self._fs.dirty != NULL:
                self._schedule_turn()

    cdef void _replay_gap(self, Conn *c, Channel ch, Stored *next_, bytes text):
        """The gap signal (_gap_record), rendered and queued like a stored message."""
        cdef Stored g
        gap_record(ch, next_, text, &g)
        self._replay_one(c, ch, &g)

    cdef void _replay_one(self, Conn *c, Channel ch, Stored *s):
        """Render one stored message in c's format and queue it (catch-up)."""
        self._queue_frame(c, stored_frame(ch, s, <Format>self._formats[c.fmt]))

    cdef void _process_post(self):
        """After a publish: close slow consumers, complete long-polls that got their message."""
        cdef Conn *c = self._fs.post
        cdef Conn *nxt
        self._fs.post = NULL
        while c != NULL:
            nxt = c.pnext
            c.pnext = NULL
            c.flags &= ~CF_POST
            if c.state != CS_CLOSED:
                if c.flags & CF_SLOW:
                    self._fs.closed_slow += 1
                    drop_queue(&self._fs, c)      # its memory goes back now
                    if c.state == CS_WEBSOCKET:
                        self._close_ws(c, 1008, b"slow consumer")
                    else:
                        self._begin_close(c)
                elif c.flags & CF_DELIVERED:
                    self._longpoll_delivered(c)
            c = nxt

    cdef void _longpoll_delivered(self, Conn *c):
        """A long-poll got its message (or the gap signal): end its answer and finish."""
        cdef Connection conn = <Connection>c.obj
        if conn._footer:
            self._send_bytes(c, conn._footer)
            conn._footer = None
        self._finish_longpoll(c)

    cdef void _finish_longpoll(self, Conn *c):
        (<Connection>c.obj)._footer = None
        self._leave_all(c)
        if c.flags & CF_KEEPALIVE and not self._closing:
            self._to_head(c)
        else:
            self._begin_close(c)

    def channel(self, str name):
        """The Channel object (subscribers, published, last_id, ...) or None."""
        return self._reg.channels.get(name)

    def channel_names(self):
        return list(self._reg.channels)

    def ensure_channel(self, str name, bint persistent=True):
        """Create a channel with no subscribers (kept while persistent)."""
        cdef Channel ch = self._reg.get_or_create(name)
        ch.persistent = persistent
        return ch

    def set_history(self, Py_ssize_t max_per_channel, double ttl=0, Py_ssize_t max_bytes=0):
        """Store up to max_per_channel messages per channel (0: off) for `ttl` seconds (0: no
        expiry), at most max_bytes over all channels (0: no cap; the oldest goes first)."""
        if max_per_channel < 0 or ttl < 0 or max_bytes < 0:
            raise ValueError("history limits must be >= 0")
        self._hist.max_per_channel = max_per_channel
        self._hist.ttl_ms = <int64_t>(ttl * 1000)
        self._hist.max_bytes = max_bytes

    def has_replay(self, str channel, Py_ssize_t last=0, since_id=None, since_time=None,
                   int since_tag=-1, event_id=None):
        """Whether Connection.replay() with this position would send anything (a stored
        message after it, or the gap signal): a poll answered without holding (JSONP)."""
        cdef Channel ch = self._reg.channels.get(channel)
        cdef Stored *s = NULL
        cdef bint gap = False
        if ch is None:
            return since_id is not None and since_id > 0 or event_id is not None
        if last == 0 and since_id is None and self._foreign_position(ch, since_time, since_tag):
            return True
        if not replay_start(ch, last, since_id, since_time, since_tag, event_id, &s, &gap):
            return False
        return s != NULL or gap

    def render_stored(self, str channel, Format fmt, Py_ssize_t last=0, since_id=None,
                      since_time=None, int since_tag=-1, event_id=None, bytes gap_text=None):
        """The stored messages of `channel` after a position (as for Connection.replay), each
        rendered in `fmt`, oldest first, as [(time, tag, bytes)]; the gap message (id -4,
        `gap_text`) first when messages after the position were lost.  Nothing is queued:
        polling and long-polling build one answer of every channel's messages from this."""
        cdef Channel ch = self._reg.channels.get(channel)
        cdef Stored *s = NULL
        cdef Stored g
        cdef bint gap = False
        cdef Frame *f
        out = []
        if ch is None:
            return out
        if last == 0 and since_id is None and self._foreign_position(ch, since_time, since_tag):
            s = NULL
            gap = True
        elif not replay_start(ch, last, since_id, since_time, since_tag, event_id, &s, &gap):
            return out
        if gap and gap_text is not None:
            gap_record(ch, s, gap_text, &g)
            f = stored_frame(ch, &g, fmt)
            out.append((g.time, g.tag, f.data[:f.len]))
            frame_decref(f)
        while s != NULL:
            f = stored_frame(ch, s, fmt)
            out.append((s.time, s.tag, f.data[:f.len]))
            frame_decref(f)
            s = s.cnext
        return out

    def event_position(self, str channel, event_id):
        """(time, tag) of the newest stored message of `channel` with this event id, or None.
        Tags count per server, so that pair is a position in every channel."""
        cdef Channel ch = self._reg.channels.get(channel)
        cdef Stored *s
        if ch is None:
            return None
        s = find_event(ch, event_id)
        return None if s == NULL else (s.time, s.tag)

    def clear_history(self, str name):
        """Forget a channel's stored messages (the channel was deleted)."""
        cdef Channel ch = self._reg.channels.get(name)
        if ch is not None:
            history_clear_channel(&self._hist, &ch.hist)
            self._reg.drop_if_empty(ch)

    def stored(self, str name):
        """The stored messages of a channel as (id, time, tag, event_id, payload) tuples."""
        cdef Channel ch = self._reg.channels.get(name)
        cdef Stored *s
        out = []
        if ch is None:
            return out
        s = ch.hist.first
        while s != NULL:
            out.append((s.id, s.time, s.tag, s.data[s.len:s.len + s.eid_len].decode("utf-8", "replace"),
                        s.data[:s.len]))
            s = s.cnext
        return out

    def drop_channel(self, str name):
        """Forget a channel that is no longer wanted (kept only while it has subscribers)."""
        cdef Channel ch = self._reg.channels.get(name)
        if ch is not None:
            ch.persistent = False
            self._reg.drop_if_empty(ch)

    def subscribers(self, str name):
        """Connections subscribed to a channel (walks the C arrays: for admin, not hot paths)."""
        cdef Channel ch = self._reg.channels.get(name)
        cdef int gi
        cdef Py_ssize_t i
        out = []
        if ch is None:
            return out
        for gi in range(ch.ngroups):
            for i in range(ch.groups[gi].n):
                out.append(<Connection>(<Conn *>ch.groups[gi].subs[i].conn).obj)
        return out

    def stats(self):
        """Counters for /channels-stats and /metrics."""
        self._settle()                # corked messages count as queued
        allocated, live = frame_counters()
        return {
            "connections": self.connections,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "requests": self.requests,
            "subscribers": self._reg.subscriptions,
            "channels": len(self._reg.channels),
            "published": self._fs.published,
            "queued_frames": self._fs.queued_frames,
            "delivered_frames": self._fs.delivered_frames,
            "delivered_bytes": self._fs.delivered_bytes,
            "queued_bytes": self._fs.queued_bytes,
            "dropped": self._fs.dropped,
            "closed_slow": self._fs.closed_slow,
            "writes": self._fs.writes,
            "paced": self.paced,
            "frames_built": self._fs.frames_built,
            "frames_live": live,
            "messages_in": self.messages_in,
            "stored_messages": self._hist.count,
            "stored_bytes": self._hist.bytes,
            "evicted_messages": self._hist.evicted,
            # permessage-deflate (process-wide: the zlib streams are the process's)
            "deflate_compressed": pmd_counters().compressed,
            "deflate_bytes_in": pmd_counters().bytes_in,
            "deflate_bytes_out": pmd_counters().bytes_out,
            "deflate_inflated": pmd_counters().inflated,
        }

    # -- timers ------------------------------------------------------------------------------

    cdef inline int64_t _ticks(self, double seconds):
        if seconds <= 0:
            return 0
        return max(1, <int64_t>(seconds * 1000 + self._tick_ms - 1) // self._tick_ms)

    cdef inline void _wheel_set(self, Conn *c, int64_t at) noexcept:
        wheel_set(&self._wheel, c, at)

    cdef void _start_timers(self, Conn *c, double ping_interval, double ttl):
        self._wheel_set(c, conn_start_timers(c, self._ticks(ping_interval),
                                             self._ticks(ttl) if ttl > 0 else 0, self._wheel.now))

    def _on_tick(self):
        self._tick_handle = None
        try:
            self.run_timers()
        finally:
            if self._loop is not None:
                self._tick_handle = self._loop.call_later(self.tick, self._on_tick)

    def run_timers(self):
        """Advance the timing wheel to now and fire what is due (the loop does this by itself
        every `tick`; tests without a loop call it)."""
        cdef int64_t now = (_monotonic_ms() - self._epoch_ms) // self._tick_ms
        cdef Conn *c
        cdef Conn *nxt
        if self._paused_listeners:
            for fd in self._paused_listeners:
                if fd in self._listeners:
                    self._sel_mod(fd, GG_READABLE)
            self._paused_listeners.clear()
        if self._hist.head != NULL:
            history_expire(&self._hist, _monotonic_ms())
        c = wheel_advance(&self._wheel, now)
        while c != NULL:
            nxt = c.wnext
            c.wnext = NULL
            self._on_deadline(c, now)
            c = nxt
        self.flush()

    cdef void _on_deadline(self, Conn *c, int64_t now):
        """A connection's deadline passed: the machine says what is due (conn_on_timer)."""
        cdef Connection conn = <Connection>c.obj
        cdef ConnEvent ev
        cdef Frame *ping
        cdef int kind = conn_on_timer(c, now, &ev)
        if kind == CE_HTTP_ERROR:
            self._error_response(c, ev.status, ev.explain.decode("latin-1"))
        elif kind == CE_CLOSE:
            self._close(c, ev.explain.decode("latin-1"))
        elif kind == CE_LONGPOLL_TIMEOUT:
            self._leave_all(c)
            if conn._timeout_response:
                self._send_bytes(c, conn._timeout_response)
            self._finish_longpoll(c)
        elif kind == CE_TTL:
            self._close_gracefully(conn, 1000, "connection ttl")
        elif c.state == CS_WEBSOCKET or c.state == CS_STREAM:
            if kind == CE_PING:
                ping = (<Format>self._formats[c.fmt]).ping_frame()
                if c.state == CS_WEBSOCKET and ping == NULL:
                    ping = (<Format>self._formats[0]).ping_frame()
                if ping != NULL:
                    frame_incref(ping)           # the format's shared ping keeps its own
                    self._queue_frame(c, ping)
            self._wheel_set(c, conn_deadline(c))

    # -- shutdown ----------------------------------------------------------------------------

    cdef list _open_connections(self):
        """Every open connection (a snapshot: closing them changes the table)."""
        cdef int fd
        return [<Connection>self._table[fd] for fd in range(self._table_size)
                if self._table[fd] != NULL]

    def stop_listening(self):
        for fd, sock in list(self._listeners.items()):
            self._sel_remove(fd)
            sock.close()
        self._listeners.clear()

    async def shutdown(self, double timeout=5.0):
        """Graceful stop: no more accepts; WebSocket clients get close 1001, streams their
        footer, idle connections close; waits up to `timeout` for clients, then closes."""
        import asyncio
        cdef Connection conn
        self._closing = True
        self.stop_listening()
        self._settle()
        for conn in self._open_connections():
            if conn.c.state == CS_WEBSOCKET:
                self._close_ws(&conn.c, 1001, b"server shutting down")
            elif conn.c.state in (CS_STREAM, CS_HEAD, CS_LONGPOLL):
                self._close_gracefully(conn, 1001, "")
        self.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections > 0 and loop.time() < deadline:
            await asyncio.sleep(0.02)
            if self._loop is None:
                self.poll()
        self.close()

    def close(self):
        """Close every socket now (WebSocket clients get a best-effort close 1001)."""
        cdef Connection conn
        self._closing = True
        self.stop_listening()
        self._settle()
        for conn in self._open_connections():
            if conn.c.state == CS_WEBSOCKET:
                drop_queue(&self._fs, &conn.c)
                gg_send(conn.c.fd, self._close_going_away.data, self._close_going_away.len)
            self._close(&conn.c, "shutdown")
        self.flush()
        self.detach()

    def __repr__(self):
        return (f"<Hub backend={self._sel.name} connections={self.connections} "
                f"channels={len(self._reg.channels)}>")
