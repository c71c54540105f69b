# cython: language_level=3
"""One connection's protocol, sans-I/O: bytes in -> events, bytes to send, timer deadlines.

The states (connection.pxd, ``ConnState``) and their transitions live here; the hub owns the
socket, reads into its buffer, feeds it in and acts on each event (the callbacks into Python,
the queueing of the bytes the machine asks to send, the timing wheel).  No syscalls here, so
kqueue, epoll and poll builds share it unchanged and tests drive it without sockets
(``ConnMachine``).

One event at a time (like ``ws_parser_feed``): an event may make Python change the state
(answer, upgrade, close) before the bytes behind it are looked at, so the caller feeds the
rest again only if the state still reads them.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from libc.stdint cimport int64_t
from libc.stdlib cimport realloc, free
from libc.string cimport memcpy, memset, memmove

from gogin._core.buffers cimport outq_init, outq_clear
from gogin._core.deflate cimport pmd_inflate
from gogin._core.frames cimport (
    WsFrameEvent, ws_parser_init, ws_parser_free, ws_parser_feed, ws_write_header, utf8_valid,
    WS_NONE, WS_MESSAGE, WS_PING, WS_PONG, WS_CLOSE, WS_ERROR, TEXT, CLOSE, PONG,
)
from gogin._core.http cimport HeadResult, parse_head
from gogin._core.registry cimport sublist_init
from gogin._core.responses cimport write_continue

cdef enum:
    CONN_BUF_MIN = 1024        # first allocation of a connection's read-ahead buffer


# -- lifetime and the read-ahead buffer ------------------------------------------------------

cdef void conn_init(Conn *c) noexcept nogil:
    memset(c, 0, sizeof(Conn))
    c.fd = -1
    c.state = CS_CLOSED
    c.wslot = -1
    outq_init(&c.out)
    sublist_init(&c.subs)


cdef void conn_release(Conn *c) noexcept:
    cdef PyObject *req = c.request
    free(c.rbuf)
    c.rbuf = NULL
    c.rlen = c.rcap = 0
    c.body_need = 0
    ws_parser_free(&c.ws)
    c.request = NULL
    Py_XDECREF(req)


cdef void conn_event_clear(ConnEvent *ev) noexcept nogil:
    if ev.owned != NULL:
        free(ev.owned)
        ev.owned = NULL
    ev.kind = CE_NONE
    ev.used = 0
    ev.out_len = 0


cdef int conn_buffer(Conn *c, const unsigned char *data, Py_ssize_t n) noexcept nogil:
    cdef unsigned char *p
    cdef Py_ssize_t cap
    if c.rlen + n > c.rcap:
        cap = c.rlen + n
        if cap < 2 * c.rcap:
            cap = 2 * c.rcap
        if cap < CONN_BUF_MIN:
            cap = CONN_BUF_MIN
        p = <unsigned char *>realloc(c.rbuf, cap)
        if p == NULL:
            return -1
        c.rbuf = p
        c.rcap = cap
    memcpy(c.rbuf + c.rlen, data, n)
    c.rlen += n
    return 0


cdef void conn_consume(Conn *c, Py_ssize_t n) noexcept nogil:
    if n >= c.rlen:
        free(c.rbuf)           # idle connections keep no buffer
        c.rbuf = NULL
        c.rlen = 0
        c.rcap = 0
    else:
        memmove(c.rbuf, c.rbuf + n, c.rlen - n)
        c.rlen -= n


# -- HTTP --------------------------------------------------------------------------------------

cdef inline void _http_error(ConnEvent *ev, int status, const char *explain,
                             Py_ssize_t n) noexcept nogil:
    # after a malformed head the position of the next request is unknown: the whole input is
    # consumed and the connection closes after the answer
    ev.kind = CE_HTTP_ERROR
    ev.status = status
    ev.explain = explain
    ev.used = n


cdef void conn_dispatched(Conn *c) noexcept nogil:
    c.state = CS_PENDING
    c.body_need = 0


cdef Request conn_http_next(Conn *c, const ConnConfig *cfg, const unsigned char *buf,
                            Py_ssize_t n, ConnEvent *ev):
    cdef HeadResult res
    cdef Request req
    cdef Py_ssize_t used, end
    ev.kind = CE_NONE
    ev.used = 0
    ev.out_len = 0
    ev.expect_continue = False
    if c.state == CS_BODY:
        # buf holds the head, then the body: complete once body_need bytes are there
        if n < c.body_need:
            return None
        req = <Request>c.request
        Py_XDECREF(c.request)        # req holds its own reference now
        c.request = NULL
        end = c.body_need
        req.body = PyBytes_FromStringAndSize(<const char *>buf + end - req.content_length,
                                             req.content_length)
        conn_dispatched(c)
        ev.kind = CE_REQUEST
        ev.used = end
        return req
    req = parse_head(buf, n, cfg.max_head_size, cfg.max_headers, &res)
    if res.status != 0:
        _http_error(ev, res.status, res.explain, n)
        return None
    if req is None:
        return None                  # incomplete: wait (the header timeout is running)
    used = res.consumed
    if req.content_length > cfg.max_body_size:
        _http_error(ev, 413, b"Request body too large.", n)
        return None
    if req.keep_alive:
        c.flags |= CF_KEEPALIVE
    else:
        c.flags &= ~CF_KEEPALIVE
    if req.content_length > 0:
        if n - used < req.content_length:
            # the body would be held across reads: the caller first asks whether this request
            # may send one (its location and access check), so that an unauthenticated client
            # cannot make the server hold max_body_size per connection
            ev.kind = CE_BODY_PENDING
            ev.used = used               # the head's size (nothing is consumed yet)
            expect = req.get("expect")
            ev.expect_continue = (expect is not None and expect.lower() == "100-continue"
                                  and n == used)
            return req
        req.body = PyBytes_FromStringAndSize(<const char *>buf + used, req.content_length)
        used += req.content_length
    else:
        req.body = b""
    conn_dispatched(c)
    ev.kind = CE_REQUEST
    ev.used = used
    return req


cdef void conn_expect_body(Conn *c, Request req, Py_ssize_t head_len, ConnEvent *ev) noexcept:
    # the head stays at the buffer's start until the body is complete
    c.state = CS_BODY
    c.body_need = head_len + req.content_length
    Py_INCREF(req)
    Py_XDECREF(c.request)
    c.request = <PyObject *>req
    ev.used = 0
    ev.out_len = 0
    if ev.expect_continue:
        # RFC 9110 §10.1.1: the client waits for this before it sends the body
        ev.out_len = write_continue(ev.out)


# -- WebSocket -------------------------------------------------------------------------------

cdef void conn_upgrade(Conn *c, Py_ssize_t max_message_size, bint deflate) noexcept nogil:
    ws_parser_init(&c.ws, max_message_size)
    c.ws.deflate = deflate
    c.state = CS_WEBSOCKET


cdef inline void _control_frame(ConnEvent *ev, int opcode, const unsigned char *data,
                                Py_ssize_t n) noexcept nogil:
    # a server control frame: unmasked header, then the payload (RFC 6455 §5.5: n <= 125)
    cdef Py_ssize_t hl = ws_write_header(ev.out + GG_WS_MAX_HEADER, opcode,
                                         <unsigned long long>n, True)
    if n:
        memcpy(ev.out + GG_WS_MAX_HEADER, data, n)
    memmove(ev.out, ev.out + GG_WS_MAX_HEADER - hl, hl + n)
    ev.out_len = hl + n


cdef void conn_close_frame(ConnEvent *ev, int code, const unsigned char *reason,
                           Py_ssize_t n) noexcept nogil:
    cdef unsigned char payload[GG_WS_MAX_CONTROL]
    cdef Py_ssize_t len_ = 0
    if code:
        payload[0] = (code >> 8) & 0xff
        payload[1] = code & 0xff
        if n > GG_WS_MAX_CONTROL - 2:
            n = GG_WS_MAX_CONTROL - 2
        if n > 0:
            memcpy(payload + 2, reason, n)
        else:
            n = 0
        len_ = n + 2
    _control_frame(ev, CLOSE, payload, len_)


cdef inline int _ws_close(Conn *c, ConnEvent *ev, int code, const char *reason) noexcept nogil:
    # the connection's last frame: the parser reads no more (it failed or saw the close); the
    # caller queues ev.out and then closes (conn_begin_close).  The state is left to the
    # caller: the fanout queues a connection's corked messages only while it is CS_WEBSOCKET,
    # and they must go out before this close frame.
    cdef Py_ssize_t n = 0
    if reason != NULL:
        while reason[n]:
            n += 1
    conn_close_frame(ev, code, <const unsigned char *>reason, n)
    ev.kind = CE_WS_CLOSE
    ev.code = code
    ev.explain = reason
    return CE_WS_CLOSE


cdef inline bint _inflate(Conn *c, ConnEvent *ev, WsFrameEvent *fe) noexcept nogil:
    # a compressed client message (RFC 7692 §6.2): ev.data becomes its inflated bytes once they
    # are checked; else the close event is set
    cdef unsigned char *out = NULL
    cdef Py_ssize_t n = 0
    cdef int r = pmd_inflate(fe.data, fe.len, c.ws.max_message_size, &out, &n)
    if r == -1:
        _ws_close(c, ev, 1009, b"message too big")
    elif r == -2:
        _ws_close(c, ev, 1007, b"invalid compressed data")
    elif r < 0:
        _ws_close(c, ev, 1011, b"out of memory")
    elif fe.opcode == TEXT and not utf8_valid(out, n):
        _ws_close(c, ev, 1007, b"invalid UTF-8")
    else:
        ev.owned = out
        ev.data = out
        ev.len = n
        return True
    free(out)
    return False


cdef int conn_ws_next(Conn *c, const unsigned char *data, Py_ssize_t n,
                      ConnEvent *ev) noexcept nogil:
    cdef WsFrameEvent fe
    cdef Py_ssize_t pos = 0, used
    cdef int kind
    if ev.owned != NULL:             # the previous message's inflated bytes
        free(ev.owned)
        ev.owned = NULL
    ev.kind = CE_NONE
    ev.out_len = 0
    if c.state != CS_WEBSOCKET:
        ev.used = 0
        return CE_NONE
    while pos < n:
        used = 0
        kind = ws_parser_feed(&c.ws, data + pos, n - pos, &used, &fe)
        pos += used
        if kind == WS_NONE:
            break
        if kind == WS_PONG:
            continue                     # unsolicited or late: nothing to do (§5.5.3)
        ev.used = pos
        if kind == WS_MESSAGE:
            if fe.compressed:
                if not _inflate(c, ev, &fe):
                    return CE_WS_CLOSE   # invalid or oversized compressed data
            else:
                ev.data = fe.data
                ev.len = fe.len
            ev.opcode = fe.opcode
            ev.kind = CE_WS_MESSAGE
            return CE_WS_MESSAGE
        elif kind == WS_PING:
            # RFC 6455 §5.5.2: a pong carrying the same payload
            _control_frame(ev, PONG, fe.data, fe.len)
            ev.kind = CE_WS_PING
            return CE_WS_PING
        elif kind == WS_CLOSE:
            # RFC 6455 §5.5.1: echo the code; 1005 (no code) is answered with an empty close
            _ws_close(c, ev, 0 if fe.code == 1005 else fe.code, NULL)
            ev.code = fe.code
            return CE_WS_CLOSE
        else:                            # WS_ERROR
            return _ws_close(c, ev, fe.code, fe.reason)
    ev.used = pos
    return CE_NONE


# -- transitions and timers --------------------------------------------------------------------

cdef int64_t conn_open(Conn *c, const ConnConfig *cfg, int64_t now) noexcept nogil:
    c.state = CS_HEAD
    return now + cfg.header_ticks


cdef void conn_start_stream(Conn *c) noexcept nogil:
    c.state = CS_STREAM


cdef void conn_hold(Conn *c) noexcept nogil:
    c.state = CS_LONGPOLL
    c.flags |= CF_ONESHOT


cdef int64_t conn_to_head(Conn *c, const ConnConfig *cfg, int64_t now) noexcept nogil:
    # back to reading requests on a keep-alive connection
    c.state = CS_HEAD
    c.flags &= ~(CF_ONESHOT | CF_DELIVERED)
    return now + cfg.keepalive_ticks


cdef int64_t conn_begin_close(Conn *c, const ConnConfig *cfg, int64_t now) noexcept nogil:
    # the queued bytes are written, then the write side is shut and the client's EOF awaited
    # (RFC 6455 §7.1.1, RFC 9112 §9.6): what the client still sends is not read
    c.state = CS_CLOSING
    free(c.rbuf)
    c.rbuf = NULL
    c.rlen = c.rcap = 0
    return now + cfg.linger_ticks


cdef int64_t conn_start_timers(Conn *c, int64_t ping_every, int64_t ttl,
                               int64_t now) noexcept nogil:
    c.ping_every = ping_every
    c.ping_at = now + ping_every if ping_every else 0
    c.ttl_at = now + ttl if ttl > 0 else 0
    return conn_deadline(c)


cdef int64_t conn_deadline(Conn *c) noexcept nogil:
    cdef int64_t at = c.ping_at
    if c.ttl_at and (at == 0 or c.ttl_at < at):
        at = c.ttl_at
    return at


cdef int conn_on_timer(Conn *c, int64_t now, ConnEvent *ev) noexcept nogil:
    ev.kind = CE_NONE
    ev.used = 0
    ev.out_len = 0
    if c.state == CS_HEAD or c.state == CS_BODY:
        if c.rlen > 0 or c.state == CS_BODY:
            _http_error(ev, 408, b"Request header timeout.", 0)     # slowloris
        else:
            ev.kind = CE_CLOSE
            ev.explain = b"idle"
    elif c.state == CS_CLOSING:
        ev.kind = CE_CLOSE
        ev.explain = b"linger timeout"
    elif c.state == CS_LONGPOLL:
        ev.kind = CE_LONGPOLL_TIMEOUT
    elif c.state == CS_WEBSOCKET or c.state == CS_STREAM:
        if c.ttl_at and c.ttl_at <= now:
            ev.kind = CE_TTL
        elif c.ping_at and c.ping_at <= now:
            # a connection still writing is alive enough: no ping then
            if c.out.bytes == 0:
                ev.kind = CE_PING
            c.ping_at = now + c.ping_every
    return ev.kind


# -- the test wrapper --------------------------------------------------------------------------

STATE_NAMES = {CS_HEAD: "head", CS_BODY: "body", CS_PENDING: "pending",
               CS_WEBSOCKET: "websocket", CS_STREAM: "stream", CS_LONGPOLL: "longpoll",
               CS_CLOSING: "closing", CS_CLOSED: "closed"}


@cython.final
cdef class ConnMachine:
    """The machine of one connection without a socket (tests).  ``feed(data)`` returns the
    events as the hub would act on them, as tuples: ``("request", Request)``,
    ``("continue", bytes)``, ``("http_error", status, explain)``, ``("message", opcode,
    payload)``, ``("pong", frame bytes)``, ``("close", code, frame bytes)``.

    answer=True: every request is answered at once with keep-alive (``to_head``), as the
    publisher fast path does, so pipelined requests come out of one feed; else the machine
    waits in "pending" with the bytes behind the request kept, and ``to_head()`` /
    ``upgrade()`` take them up.  Time is in ticks (``now``); ``deadline`` is the tick the
    hub's wheel would wake it at.
    """
    cdef Conn c
    cdef ConnConfig cfg
    cdef ConnEvent ev
    cdef bint _answer
    cdef readonly int64_t deadline
    cdef readonly int64_t now

    def __cinit__(self, Py_ssize_t max_head_size=8192, int max_headers=100,
                  Py_ssize_t max_body_size=1 << 20, int64_t header_ticks=100,
                  int64_t keepalive_ticks=600, int64_t linger_ticks=20, bint answer=False):
        conn_init(&self.c)
        memset(&self.ev, 0, sizeof(ConnEvent))
        self.cfg.max_head_size = max_head_size
        self.cfg.max_headers = max_headers
        self.cfg.max_body_size = max_body_size
        self.cfg.header_ticks = header_ticks
        self.cfg.keepalive_ticks = keepalive_ticks
        self.cfg.linger_ticks = linger_ticks
        self._answer = answer
        self.now = 0
        self.deadline = conn_open(&self.c, &self.cfg, 0)

    def __dealloc__(self):
        conn_release(&self.c)
        conn_event_clear(&self.ev)
        if self.c.out.items != NULL:
            outq_clear(&self.c.out)

    @property
    def state(self):
        return STATE_NAMES.get(self.c.state, "?")

    @property
    def keep_alive(self):
        return bool(self.c.flags & CF_KEEPALIVE)

    @property
    def buffered(self):
        """Bytes kept for later (an incomplete request, or what follows a pending one)."""
        return self.c.rlen

    def feed(self, data):
        cdef bytes b = bytes(data)
        cdef list out = []
        self._feed(<const unsigned char *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b), out)
        return out

    def to_head(self):
        """Answer the pending request with keep-alive; parse what was kept behind it."""
        if self.c.state != CS_PENDING:
            raise RuntimeError(f"connection is {self.state}")
        self.deadline = conn_to_head(&self.c, &self.cfg, self.now)
        return self._resume()

    def upgrade(self, Py_ssize_t max_message_size=1 << 20, bint deflate=False,
                int64_t ping_every=0, int64_t ttl=0):
        """Switch the pending request to WebSocket; frames sent behind the head are parsed."""
        if self.c.state != CS_PENDING:
            raise RuntimeError(f"connection is {self.state}")
        conn_upgrade(&self.c, max_message_size, deflate)
        self.deadline = conn_start_timers(&self.c, ping_every, ttl, self.now)
        return self._resume()

    def advance(self, int64_t now):
        """The clock reaches tick `now`: the timer's action if the deadline passed, as
        ``("http_error", status, explain)``, ``("close", explain)``, ``("ping",)``, ``("ttl",)``,
        ``("longpoll_timeout",)``; None when nothing is due."""
        cdef int kind
        self.now = now
        if self.deadline <= 0 or now < self.deadline:
            return None
        self.deadline = 0
        kind = conn_on_timer(&self.c, now, &self.ev)
        if kind == CE_HTTP_ERROR:
            self._close()
            return ("http_error", self.ev.status, self.ev.explain.decode("ascii"))
        if kind == CE_CLOSE:
            self.c.state = CS_CLOSED
            return ("close", self.ev.explain.decode("ascii"))
        if self.c.state == CS_WEBSOCKET or self.c.state == CS_STREAM:
            if kind == CE_TTL:
                return ("ttl",)
            self.deadline = conn_deadline(&self.c)
            return ("ping",) if kind == CE_PING else None
        return ("longpoll_timeout",) if kind == CE_LONGPOLL_TIMEOUT else None

    cdef _close(self):
        self.deadline = conn_begin_close(&self.c, &self.cfg, self.now)

    cdef list _resume(self):
        # the hub's resume list: the kept bytes are taken and fed again
        cdef unsigned char *buf = self.c.rbuf
        cdef Py_ssize_t n = self.c.rlen
        cdef list out = []
        self.c.rbuf = NULL
        self.c.rlen = self.c.rcap = 0
        try:
            if n:
                self._feed(buf, n, out)
        finally:
            free(buf)
        return out

    cdef _feed(self, const unsigned char *data, Py_ssize_t n, list out):
        cdef Py_ssize_t used
        cdef Request req
        if self.c.state == CS_HEAD or self.c.state == CS_BODY:
            if self.c.rlen > 0 or self.c.state == CS_BODY:
                if conn_buffer(&self.c, data, n) < 0:
                    raise MemoryError()
                used = self._requests(self.c.rbuf, self.c.rlen, out)
                if self.c.state != CS_CLOSING:
                    conn_consume(&self.c, used)
                return
            used = self._requests(data, n, out)
            if self.c.state != CS_CLOSING and used < n:
                if conn_buffer(&self.c, data + used, n - used) < 0:
                    raise MemoryError()
        elif self.c.state == CS_WEBSOCKET:
            self._frames(data, n, out)
        elif self.c.state == CS_PENDING:
            if conn_buffer(&self.c, data, n) < 0:
                raise MemoryError()

    cdef Py_ssize_t _requests(self, const unsigned char *buf, Py_ssize_t n, list out) except -1:
        cdef Py_ssize_t used = 0
        cdef Request req
        cdef int kind
        while used < n or self.c.state == CS_BODY:
            req = conn_http_next(&self.c, &self.cfg, buf + used, n - used, &self.ev)
            kind = self.ev.kind
            if kind == CE_NONE:
                break
            if kind == CE_HTTP_ERROR:
                out.append(("http_error", self.ev.status, self.ev.explain.decode("ascii")))
                self._close()
                return n
            if kind == CE_BODY_PENDING:
                conn_expect_body(&self.c, req, self.ev.used, &self.ev)
                if self.ev.out_len:
                    out.append(("continue", _bytes(self.ev.out, self.ev.out_len)))
                break
            used += self.ev.used
            out.append(("request", req))
            if not self._answer:
                break
            self.deadline = conn_to_head(&self.c, &self.cfg, self.now)
        if self.c.state == CS_PENDING:
            self.deadline = 0            # Python's decision has its own timeouts
        return used

    cdef _frames(self, const unsigned char *data, Py_ssize_t n, list out):
        cdef Py_ssize_t pos = 0
        cdef int kind
        while pos < n and self.c.state == CS_WEBSOCKET:
            kind = conn_ws_next(&self.c, data + pos, n - pos, &self.ev)
            pos += self.ev.used
            if kind == CE_NONE:
                break
            if kind == CE_WS_MESSAGE:
                out.append(("message", self.ev.opcode, _bytes(self.ev.data, self.ev.len)))
            elif kind == CE_WS_PING:
                out.append(("pong", _bytes(self.ev.out, self.ev.out_len)))
            elif kind == CE_WS_CLOSE:
                out.append(("close", self.ev.code, _bytes(self.ev.out, self.ev.out_len)))
                self._close()


cdef inline bytes _bytes(const unsigned char *p, Py_ssize_t n):
    if n <= 0:
        return b""
    return PyBytes_FromStringAndSize(<const char *>p, n)
