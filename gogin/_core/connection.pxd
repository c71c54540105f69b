# The connection's states and transitions (sans-I/O): bytes in -> events, the bytes to send
# (100 Continue, pongs, close replies) and the timer deadlines, with no syscalls.  The hub owns
# the socket and acts on the events; the fanout reads the same Conn to queue frames.
# Tests drive the machine without sockets through connection.ConnMachine.

from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint64_t

from gogin._core.buffers cimport OutQueue
from gogin._core.frames cimport WsParser, GG_WS_MAX_HEADER, GG_WS_MAX_CONTROL
from gogin._core.http cimport Request
from gogin._core.registry cimport SubList

cdef enum ConnState:
    CS_HEAD = 1          # reading a request head (also: idle keep-alive)
    CS_BODY = 2          # reading a request body of known length
    CS_PENDING = 3       # request handed to Python; waiting for respond/upgrade/...
    CS_WEBSOCKET = 4     # upgraded: frames in, frames out
    CS_STREAM = 5        # EventSource / chunked stream response in progress
    CS_LONGPOLL = 6      # long-poll held until a message or the timeout
    CS_CLOSING = 7       # last bytes queued; then half-close and linger until EOF or timeout
    CS_CLOSED = 8

cdef enum ConnFlag:
    CF_DIRTY = 1         # on the dirty list (has bytes to flush this turn)
    CF_WRITE_ARMED = 2   # WRITABLE interest set: waiting for the socket to drain
    CF_SLOW = 4          # over the backpressure budget: to be closed after this publish
    CF_KEEPALIVE = 8     # the current request allows keep-alive
    CF_READ_PAUSED = 16  # READABLE interest dropped (buffer limit while pending)
    CF_POST = 32         # on the post-publish list (slow close or long-poll completion)
    CF_SHUT_WR = 64      # write side shut down (lingering close)
    CF_RESUME = 128      # on the resume list (pipelined bytes to parse)
    CF_ONESHOT = 256     # long-poll: the first message ends the subscription
    CF_DELIVERED = 512   # long-poll: got its message in this publish

cdef struct Conn:
    int fd
    int state                  # ConnState
    unsigned int flags         # ConnFlag bits
    int interest               # selector mask currently registered
    uint64_t id                # unique per hub, never reused
    OutQueue out
    unsigned char *rbuf        # bytes of an incomplete head/body or of pipelined requests
    Py_ssize_t rlen
    Py_ssize_t rcap
    Py_ssize_t body_need       # CS_BODY: bytes of head + body the request needs in rbuf
    PyObject *request          # CS_BODY: the Request whose body is arriving (owned reference)
    WsParser ws
    SubList subs
    int64_t deadline           # timing wheel: next tick this conn must be looked at (0 = none)
    int64_t ttl_at             # tick at which the subscription ends (0 = never)
    int64_t ping_at            # next ping tick (0 = no pings)
    int64_t ping_every         # ping period in ticks
    int wslot                  # wheel slot, -1 when not on the wheel
    Conn *wnext
    Conn *wprev
    Conn *dnext                # dirty list
    Conn *pnext                # post-publish list
    Conn *rnext                # resume list
    void *obj                  # the Connection object (borrowed; the hub's table owns it)
    int fmt                    # format of the connection's subscriptions



# The limits and timeouts every connection of a hub shares (timeouts in wheel ticks)
cdef struct ConnConfig:
    Py_ssize_t max_head_size
    int max_headers
    Py_ssize_t max_body_size
    int64_t header_ticks       # a new connection's whole first head must arrive within this
    int64_t keepalive_ticks    # an idle keep-alive connection (or its next head) within this
    int64_t linger_ticks       # a closing connection waits this long for the client's EOF


cdef enum ConnEventKind:
    CE_NONE = 0            # need more bytes / nothing due
    CE_REQUEST = 1         # a whole request (head and body): state is now CS_PENDING
    CE_BODY_PENDING = 2    # a head whose body has not all arrived: the caller admits it
                           # (conn_expect_body) or refuses it (ev.used is 0 either way)
    CE_HTTP_ERROR = 3      # answer ev.status with the X-Gogin-Explain ev.explain, then close
    CE_WS_MESSAGE = 4      # ev.opcode TEXT/BINARY, ev.data/ev.len (inflated, UTF-8 checked)
    CE_WS_PING = 5         # ev.out: the pong to queue (under the backpressure budget)
    CE_WS_CLOSE = 6        # ev.out: the close frame to queue, then conn_begin_close (the
                           # parser reads no more).  ev.code: the code received, or the one
                           # sent for a protocol error
    CE_CLOSE = 7           # timer: close now (ev.explain: why: "idle", "linger timeout")
    CE_PING = 8            # timer: queue the connection's ping (then conn_deadline)
    CE_TTL = 9             # timer: the connection's TTL is over: close it gracefully
    CE_LONGPOLL_TIMEOUT = 10   # timer: the long-poll ends with its timeout answer

cdef enum:
    GG_CONN_OUT_MAX = GG_WS_MAX_HEADER + GG_WS_MAX_CONTROL + 1   # a control frame (or 100 Continue)

cdef struct ConnEvent:
    int kind                   # ConnEventKind
    Py_ssize_t used            # bytes of the input this event consumed
    int status                 # CE_HTTP_ERROR: the HTTP status
    const char *explain        # CE_HTTP_ERROR, CE_CLOSE: static text
    int opcode                 # CE_WS_MESSAGE
    const unsigned char *data  # CE_WS_MESSAGE: payload, valid until the next feed / clear
    Py_ssize_t len
    int code                   # CE_WS_CLOSE
    bint expect_continue       # CE_BODY_PENDING: the client waits for 100 Continue
    unsigned char *owned       # an inflated payload (freed by conn_event_clear)
    Py_ssize_t out_len         # bytes to send (0: none)
    unsigned char out[GG_CONN_OUT_MAX]


# Conn lifetime.  conn_init: a zeroed, closed Conn; conn_release: free what it holds (buffers,
# parser, a pending request), the queue excepted (the fanout's drop_queue/outq_clear own it).
cdef void conn_init(Conn *c) noexcept nogil
cdef void conn_release(Conn *c) noexcept
cdef void conn_event_clear(ConnEvent *ev) noexcept nogil

# Bytes kept for later (an incomplete head/body, pipelined requests): -1 out of memory
cdef int conn_buffer(Conn *c, const unsigned char *data, Py_ssize_t n) noexcept nogil
cdef void conn_consume(Conn *c, Py_ssize_t n) noexcept nogil

# -- HTTP (CS_HEAD / CS_BODY) --
# The next request of buf[0:n] (in CS_BODY: buf starts with the held head).  Returns the
# Request for CE_REQUEST and CE_BODY_PENDING, else None; ev.used = bytes consumed.
cdef Request conn_http_next(Conn *c, const ConnConfig *cfg, const unsigned char *buf,
                            Py_ssize_t n, ConnEvent *ev)
# Admit the body of a CE_BODY_PENDING request: CS_BODY until it arrived (ev.out: the 100
# Continue to send, if the client waits for it)
cdef void conn_expect_body(Conn *c, Request req, Py_ssize_t head_len, ConnEvent *ev) noexcept

# -- WebSocket (CS_WEBSOCKET) --
cdef void conn_upgrade(Conn *c, Py_ssize_t max_message_size, bint deflate) noexcept nogil
# The next event of data[0:n] (pongs are consumed here); ev.used = bytes consumed
cdef int conn_ws_next(Conn *c, const unsigned char *data, Py_ssize_t n,
                      ConnEvent *ev) noexcept nogil
# A close frame of code (0: no code) and reason (cut to 123 bytes) into ev.out
cdef void conn_close_frame(ConnEvent *ev, int code, const unsigned char *reason,
                           Py_ssize_t n) noexcept nogil

# -- transitions and timers (ticks of the hub's wheel; each returns the new deadline) --
cdef int64_t conn_open(Conn *c, const ConnConfig *cfg, int64_t now) noexcept nogil
cdef void conn_dispatched(Conn *c) noexcept nogil
cdef int64_t conn_to_head(Conn *c, const ConnConfig *cfg, int64_t now) noexcept nogil
cdef int64_t conn_begin_close(Conn *c, const ConnConfig *cfg, int64_t now) noexcept nogil
# Pings every ping_every ticks, the connection ends after ttl ticks (0: never)
cdef int64_t conn_start_timers(Conn *c, int64_t ping_every, int64_t ttl, int64_t now) noexcept nogil
# The next tick a subscribed connection must be looked at (its ping or its TTL; 0: none)
cdef int64_t conn_deadline(Conn *c) noexcept nogil
# Its deadline passed: what to do (ev.kind), by state
cdef int conn_on_timer(Conn *c, int64_t now, ConnEvent *ev) noexcept nogil
# Answered with a stream (EventSource, chunked) / held as a long-poll (the first message ends it)
cdef void conn_start_stream(Conn *c) noexcept nogil
cdef void conn_hold(Conn *c) noexcept nogil
