# cython: language_level=3
"""The C-level load client of gogin-bench: N subscriber connections, one receive loop.

Everything per frame happens in C with the GIL released: the loop calls the core's selector
backend (the ``Selector``'s C ops, epoll on Linux) directly, reads into one shared buffer and
scans the server's unmasked frames with a small incremental scanner (``_feed``).  Python is
touched only to set things up, to start/stop the loop and to read the counters.

Latency: each published payload carries ``@gb:`` + 16 hex digits of CLOCK_MONOTONIC ns at send
time (``make_payload``).  The scanner looks for the marker (memchr) in the first PEEK bytes of
each data message's payload - a server template may wrap the payload, so its position is not
fixed - and records now - stamp into a log-bucketed histogram (32 sub-buckets per power of two:
<= 3 % relative error).  "now" is read once per recv(), i.e. when the bytes were seen.
"""

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memchr, memcmp, memset, memmove, strlen
from libc.stdlib cimport malloc, calloc, realloc, free, strtoull
from libc.errno cimport errno, EINPROGRESS, EINTR
from posix.unistd cimport close as c_close

from gogin._core.selector cimport Selector, gg_selector, gg_fired, GG_READABLE, GG_WRITABLE
from gogin._core.includes.sockets cimport (
    sockaddr, sockaddr_in, socklen_t, send, recv, setsockopt, shutdown, SHUT_RDWR,
    MSG_DONTWAIT, SOL_SOCKET, SO_ERROR, AF_INET,
    IPPROTO_TCP, TCP_NODELAY, gg_would_block, timespec, clock_gettime, CLOCK_MONOTONIC)
from gogin._core.includes.compat cimport GG_MSG_NOSIGNAL, gg_socket, gg_send

cdef extern from "<sys/socket.h>" nogil:
    int connect(int fd, const sockaddr *addr, socklen_t len)
    int bind(int fd, const sockaddr *addr, socklen_t len)
    int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen)
    enum:
        SOCK_STREAM
        SO_RCVBUF

cdef extern from "<time.h>" nogil:
    int nanosleep(const timespec *req, timespec *rem)

cdef extern from "<string.h>" nogil:
    void *memmem(const void *h, size_t hl, const void *n, size_t nl)
    char *strcasestr(const char *h, const char *n)

cdef extern from "<netinet/in.h>" nogil:
    enum:
        IPPROTO_IP
    unsigned short htons(unsigned short)
    unsigned int htonl(unsigned int)

cdef extern from *:
    """
    #ifndef IP_BIND_ADDRESS_NO_PORT
    #define IP_BIND_ADDRESS_NO_PORT 24
    #endif
    static inline int gg_clz64(unsigned long long v) { return __builtin_clzll(v); }
    """
    int IP_BIND_ADDRESS_NO_PORT
    int gg_clz64(unsigned long long v) nogil

# Function-pointer aliases typed nogil: the backend's C functions never touch Python (the
# same trick as selector.pyx uses for its blocking poll).
ctypedef int (*_poll_fn)(gg_selector *sel, gg_fired *fired, int maxfired,
                         int timeout_ms) noexcept nogil
ctypedef int (*_ctl_fn)(gg_selector *sel, int fd, int mask) noexcept nogil
ctypedef int (*_rm_fn)(gg_selector *sel, int fd) noexcept nogil

cdef enum:
    ST_IDLE = 0         # not started
    ST_CONNECTING = 1   # connect() in progress (waiting for WRITABLE)
    ST_HANDSHAKE = 2    # request (partly) sent / waiting for the 101 head
    ST_OPEN = 3         # upgraded: scanning frames
    ST_CLOSED = 4       # closed by the peer, an error, or a close frame
    ST_FAILED = 5       # connect or handshake failed

    PEEK = 512          # payload bytes kept per frame to find the marker in
    MARKER_LEN = 4      # "@gb:"
    STAMP_DIGITS = 16   # hex digits of the ns stamp
    HIST_SUB_BITS = 5   # 32 sub-buckets per power of two
    HIST_SIZE = 64 * 32 # covers every uint64
    RECV_BUF = 1 << 18  # shared receive buffer
    HEAD_MAX = 4096     # largest handshake answer head accepted

MARKER = b"@gb:"

include "_publisher.pxi"


cdef struct Conn:
    int fd
    int state
    int channel             # index of its channel (for per-channel totals)
    int src                 # source address index (127.0.0.<1+src>)
    char *req               # handshake request (owned until sent)
    int req_len
    int req_off
    char head[HEAD_MAX]     # handshake answer head seen so far (only its start matters)
    int head_len
    int head_match          # bytes of "\r\n\r\n" matched so far
    # frame scanner state
    uint8_t hdr[14]
    int hdr_len
    int hdr_need
    int opcode              # opcode of the current frame
    int msg_opcode          # data opcode of the message being received (fragments), or 0
    bint fin
    bint in_payload
    uint64_t remaining      # payload bytes of the current frame still to come
    uint64_t frame_len
    uint8_t peek[PEEK]      # first payload bytes of the current message
    int peek_len
    bint stamp_done         # marker already looked for in this message
    # EventSource scanner state (LoadClient(sse=True))
    bint sse_line_start     # at the start of a line
    int sse_line_kind       # of the current line: 1 data, 2 comment, 3 another field
    bint sse_has_data       # the event being read has a data line
    # counters
    uint64_t frames         # complete data messages
    uint64_t bytes          # bytes received after the handshake head
    uint64_t pings
    uint64_t closes         # close frames received


cdef struct Stats:
    uint64_t frames
    uint64_t bytes
    uint64_t stamped        # messages with a stamp (latency recorded)
    uint64_t unstamped
    uint64_t pings
    uint64_t pongs_sent
    uint64_t close_frames
    uint64_t disconnects    # connections lost after the upgrade (EOF, error, close frame)
    uint64_t bad_frames     # protocol surprises (masked server frame, reserved opcode)
    uint64_t lat_max
    uint64_t hist[HIST_SIZE]
    # stamps seen lately (the 16 digit bytes -> value): a fanout delivers each stamp to every
    # subscriber, and the C publisher stamps a whole pass's messages alike, so few distinct
    # stamps are in flight; parsing 16 hex digits per frame was the client's largest cost
    uint64_t sc_k0[256]
    uint64_t sc_k1[256]
    uint64_t sc_v[256]
    uint8_t sc_ok[256]


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef inline int hist_index(uint64_t v) noexcept nogil:
    cdef int e
    if v < 32:
        return <int>v
    e = 63 - gg_clz64(v)                              # 2^e <= v < 2^(e+1), e >= 5
    return (e - HIST_SUB_BITS + 1) * 32 + <int>((v >> (e - HIST_SUB_BITS)) & 31)


cdef inline uint64_t hist_low(int idx) noexcept nogil:
    """Smallest value of bucket idx (inverse of hist_index)."""
    cdef int e, sub
    if idx < 64:
        return <uint64_t>idx
    e = idx // 32 + HIST_SUB_BITS - 1
    sub = idx % 32
    return (<uint64_t>(32 + sub)) << (e - HIST_SUB_BITS)


cdef extern from *:
    """
    /* hex digit value, or -1: a table instead of branches (the stamp is read per frame) */
    static const signed char gg_hexval[256] = {
        ['0'] = 0+1, ['1'] = 1+1, ['2'] = 2+1, ['3'] = 3+1, ['4'] = 4+1, ['5'] = 5+1,
        ['6'] = 6+1, ['7'] = 7+1, ['8'] = 8+1, ['9'] = 9+1,
        ['a'] = 10+1, ['b'] = 11+1, ['c'] = 12+1, ['d'] = 13+1, ['e'] = 14+1, ['f'] = 15+1,
        ['A'] = 10+1, ['B'] = 11+1, ['C'] = 12+1, ['D'] = 13+1, ['E'] = 14+1, ['F'] = 15+1,
    };
    /* 16 hex digits at p -> *out; 0 when one is not a hex digit (table holds value + 1).
       uint64_t, exactly the caller's type: through an `unsigned long long *` the inlined
       store would not alias the caller's uint64_t under strict aliasing (it read back 0). */
    #include <stdint.h>
    static inline int gg_hex16(const unsigned char *p, uint64_t *out) {
        uint64_t v = 0;
        int bad = 0, i;
        for (i = 0; i < 16; i++) {
            int d = gg_hexval[p[i]];
            bad |= (d == 0);
            v = (v << 4) | (uint64_t)((d - 1) & 15);
        }
        *out = v;
        return !bad;
    }
    """
    int gg_hex16(const uint8_t *p, uint64_t *out) nogil


cdef bint find_stamp(const uint8_t *p, Py_ssize_t n, uint64_t *out) noexcept nogil:
    """Find '@gb:' + 16 hex digits in p[0:n]; *out = the stamp."""
    cdef const uint8_t *q = p
    cdef const uint8_t *end = p + n
    while end - q >= MARKER_LEN + STAMP_DIGITS:
        q = <const uint8_t *>memchr(q, 64, <size_t>(end - q - MARKER_LEN - STAMP_DIGITS + 1))
        if q is NULL:
            return False
        if q[1] == 103 and q[2] == 98 and q[3] == 58 and gg_hex16(q + MARKER_LEN, out):  # "gb:"
            return True
        q += 1
    return False


cdef inline bint cached_stamp(Stats *st, const uint8_t *digits, uint64_t *out) noexcept nogil:
    """The stamp of 16 digit bytes, through the small cache of recent stamps."""
    cdef uint64_t k0, k1
    cdef int h
    memcpy(&k0, digits, 8)
    memcpy(&k1, digits + 8, 8)
    h = <int>(((k0 ^ (k1 * 0x9E3779B97F4A7C15ULL)) * 0x9E3779B97F4A7C15ULL) >> 56)
    if st.sc_ok[h] and st.sc_k0[h] == k0 and st.sc_k1[h] == k1:
        out[0] = st.sc_v[h]
        return True
    if not gg_hex16(digits, out):
        return False
    st.sc_k0[h] = k0
    st.sc_k1[h] = k1
    st.sc_v[h] = out[0]
    st.sc_ok[h] = 1
    return True


cdef inline void record(Stats *st, uint64_t now, const uint8_t *p, Py_ssize_t n) noexcept nogil:
    cdef uint64_t stamp = 0, lat
    cdef bint found
    # the usual case first: the template is the payload as it is, the marker comes first
    if n >= MARKER_LEN + STAMP_DIGITS and p[0] == 64 and p[1] == 103 and p[2] == 98 \
            and p[3] == 58:
        found = cached_stamp(st, p + MARKER_LEN, &stamp) or find_stamp(p + 1, n - 1, &stamp)
    else:
        found = find_stamp(p, n, &stamp)
    if found:
        lat = now - stamp if now > stamp else 0
        st.stamped += 1
        st.hist[hist_index(lat)] += 1
        if lat > st.lat_max:
            st.lat_max = lat
    else:
        st.unstamped += 1


cdef void send_pong(Conn *c, Stats *st) noexcept nogil:
    """RFC 6455 §5.5.3: a pong echoes the ping's payload; client frames are masked (§5.3) -
    with an all-zero key the payload goes out unchanged."""
    cdef uint8_t out[6 + 125]
    cdef int n = c.peek_len if c.peek_len < 125 else 125
    out[0] = 0x8A
    out[1] = 0x80 | <uint8_t>n
    memset(&out[2], 0, 4)
    memcpy(&out[6], c.peek, n)
    if c.fd >= 0 and send(c.fd, out, 6 + n, GG_MSG_NOSIGNAL | MSG_DONTWAIT) == 6 + n:
        st.pongs_sent += 1


cdef int frame_done(Conn *c, Stats *st, uint64_t now) noexcept nogil:
    """The current frame is complete.  Returns -1 if the connection must close."""
    cdef int op = c.opcode
    c.in_payload = False
    c.hdr_len = 0
    if op == 1 or op == 2 or op == 0:
        if op != 0:
            c.msg_opcode = op
        if not c.stamp_done:
            record(st, now, c.peek, c.peek_len)
            c.stamp_done = True
        if c.fin:
            c.frames += 1
            st.frames += 1
            c.msg_opcode = 0
            c.stamp_done = False
            c.peek_len = 0
        return 0
    if op == 9:
        c.pings += 1
        st.pings += 1
        send_pong(c, st)
    elif op == 8:
        c.closes += 1
        st.close_frames += 1
        return -1
    # pong (10): nothing
    c.peek_len = 0 if c.msg_opcode == 0 else c.peek_len
    return 0


cdef int _feed(Conn *c, Stats *st, const uint8_t *data, Py_ssize_t n, uint64_t now) noexcept nogil:
    """Scan n bytes of server frames.  Returns 0, or -1 when the connection must close (close
    frame, or a frame a server must not send)."""
    cdef Py_ssize_t i = 0, avail, take, keep
    cdef uint64_t ln
    cdef uint8_t b1
    cdef int k
    cdef bint control
    while i < n:
        if not c.in_payload:
            # header: 2 bytes, then 2 or 8 length bytes (RFC 6455 §5.2); a mask would be 4 more
            if c.hdr_len == 0 and n - i >= 10:
                # fast path: the whole header is in the buffer (no copy into c.hdr)
                k = data[i + 1] & 0x7F
                c.hdr_need = 2 + (2 if k == 126 else (8 if k == 127 else 0))
                memcpy(c.hdr, data + i, c.hdr_need)
                c.hdr_len = c.hdr_need
                i += c.hdr_need
            while c.hdr_len < 2 and i < n:
                c.hdr[c.hdr_len] = data[i]
                c.hdr_len += 1
                i += 1
            if c.hdr_len < 2:
                return 0
            b1 = c.hdr[1]
            if b1 & 0x80:
                st.bad_frames += 1              # §5.1: servers never mask
                return -1
            c.hdr_need = 2 + (2 if (b1 & 0x7F) == 126 else (8 if (b1 & 0x7F) == 127 else 0))
            while c.hdr_len < c.hdr_need and i < n:
                c.hdr[c.hdr_len] = data[i]
                c.hdr_len += 1
                i += 1
            if c.hdr_len < c.hdr_need:
                return 0
            ln = b1 & 0x7F
            if ln == 126:
                ln = (<uint64_t>c.hdr[2] << 8) | c.hdr[3]
            elif ln == 127:
                ln = 0
                for k in range(8):
                    ln = (ln << 8) | c.hdr[2 + k]
            c.opcode = c.hdr[0] & 0x0F
            c.fin = (c.hdr[0] & 0x80) != 0
            if c.opcode not in (0, 1, 2, 8, 9, 10):
                st.bad_frames += 1
                return -1
            control = c.opcode >= 8
            if control:
                # control frames may come between fragments (§5.4): keep the message's peek
                # apart only when no message is in progress (the usual case).
                if c.msg_opcode == 0:
                    c.peek_len = 0
            elif c.opcode != 0:
                c.peek_len = 0
                c.stamp_done = False
            c.frame_len = ln
            c.remaining = ln
            c.in_payload = True
            if ln == 0:
                if frame_done(c, st, now) < 0:
                    return -1
            continue
        # payload
        avail = n - i
        take = <Py_ssize_t>c.remaining if c.remaining < <uint64_t>avail else avail
        if c.opcode >= 8 or not c.stamp_done:
            keep = PEEK - c.peek_len
            if keep > take:
                keep = take
            if c.opcode < 8 and c.peek_len == 0 and take == <Py_ssize_t>c.remaining:
                # fast path: the whole (first) payload is in this buffer - scan it in place
                record(st, now, data + i, take if take < PEEK else PEEK)
                c.stamp_done = True
            elif keep > 0:
                memcpy(c.peek + c.peek_len, data + i, keep)
                c.peek_len += <int>keep
        i += take
        c.remaining -= <uint64_t>take
        if c.remaining == 0:
            if frame_done(c, st, now) < 0:
                return -1
    return 0


cdef void conn_reset_scanner(Conn *c) noexcept nogil:
    c.hdr_len = 0
    c.hdr_need = 2
    c.opcode = 0
    c.msg_opcode = 0
    c.fin = False
    c.in_payload = False
    c.remaining = 0
    c.frame_len = 0
    c.peek_len = 0
    c.stamp_done = False
    c.sse_line_start = True
    c.sse_line_kind = 0
    c.sse_has_data = False


cdef int _feed_sse(Conn *c, Stats *st, const uint8_t *data, Py_ssize_t n,
                   uint64_t now) noexcept nogil:
    """Scan an EventSource body (text/event-stream, unchunked): an event ends at an empty
    line and counts as one message when it had a data line; comments (':' lines, pings) and
    other fields do not count.  The first PEEK bytes of the event's data lines are kept to
    find the stamp in."""
    cdef Py_ssize_t i = 0, end, take
    cdef const uint8_t *q
    cdef uint8_t b
    while i < n:
        if c.sse_line_start:
            b = data[i]
            if b == 10:                                  # empty line: the event is complete
                i += 1
                if c.sse_has_data:
                    record(st, now, c.peek, c.peek_len)
                    c.frames += 1
                    st.frames += 1
                c.sse_has_data = False
                c.peek_len = 0
                continue
            if b == 13:                                  # CR of a CRLF line end
                i += 1
                continue
            # "data" is the only field that starts with 'd' (WHATWG HTML §9.2.6)
            c.sse_line_kind = 1 if b == 100 else (2 if b == 58 else 3)
            c.sse_line_start = False
        q = <const uint8_t *>memchr(data + i, 10, <size_t>(n - i))
        end = (q - data) if q is not NULL else n
        if c.sse_line_kind == 1:
            c.sse_has_data = True
            take = end - i
            if take > PEEK - c.peek_len:
                take = PEEK - c.peek_len
            if take > 0:
                memcpy(c.peek + c.peek_len, data + i, take)
                c.peek_len += <int>take
        i = end
        if q is not NULL:
            i += 1
            c.sse_line_start = True
    return 0


def make_payload(int size, uint64_t stamp=0):
    """A payload of `size` bytes (at least 20) carrying the stamp marker: '@gb:' + 16 hex digits
    of `stamp` (CLOCK_MONOTONIC ns; 0: now), padded with 'x'."""
    if stamp == 0:
        with nogil:
            stamp = now_ns()
    head = b"@gb:%016x" % stamp
    if size < len(head):
        size = len(head)
    return head + b"x" * (size - len(head))


def monotonic_ns():
    """CLOCK_MONOTONIC in ns, the clock of the stamps (same as time.monotonic_ns on Linux)."""
    return now_ns()


cdef dict _stats_dict(Stats *st):
    return {
        "frames": st.frames, "bytes": st.bytes, "stamped": st.stamped,
        "unstamped": st.unstamped, "pings": st.pings, "pongs_sent": st.pongs_sent,
        "close_frames": st.close_frames, "disconnects": st.disconnects,
        "bad_frames": st.bad_frames,
    }


cdef dict _latency(Stats *st):
    """p50/p90/p99/p999/max in ns from the histogram (bucket midpoints, max exact)."""
    cdef uint64_t total = 0, acc = 0
    cdef int i
    for i in range(HIST_SIZE):
        total += st.hist[i]
    out = {"count": total}
    if total == 0:
        for k in ("p50", "p90", "p99", "p999", "max"):
            out[k] = None
        return out
    targets = [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999)]
    j = 0
    for i in range(HIST_SIZE):
        if st.hist[i] == 0:
            continue
        acc += st.hist[i]
        while j < len(targets) and acc >= targets[j][1] * total:
            lo = hist_low(i)
            hi = hist_low(i + 1) if i + 1 < HIST_SIZE else lo
            mid = (lo + hi) // 2
            out[targets[j][0]] = min(mid, st.lat_max)
            j += 1
    out["max"] = st.lat_max
    return out


def scan_chunks(chunks, uint64_t now=0, bint sse=False):
    """Test hook: run the frame scanner of one connection over a list of byte chunks (any
    split) and return its counters, the latency summary and whether it asked to close.
    `now` is the receive time used for every chunk (0: the real clock); sse: the chunks are
    an EventSource body instead of WebSocket frames."""
    cdef Conn *c = <Conn *>calloc(1, sizeof(Conn))
    cdef Stats *st = <Stats *>calloc(1, sizeof(Stats))
    cdef const uint8_t[:] view
    cdef bint closed = False
    cdef uint64_t t
    if c is NULL or st is NULL:
        free(c)
        free(st)
        raise MemoryError()
    try:
        c.fd = -1
        conn_reset_scanner(c)
        for chunk in chunks:
            if closed:
                break
            b = bytes(chunk)
            if not b:
                continue
            view = b
            t = now if now else now_ns()
            if sse:
                _feed_sse(c, st, &view[0], len(b), t)
            elif _feed(c, st, &view[0], len(b), t) < 0:
                closed = True
        res = _stats_dict(st)
        res["closed"] = closed
        res["conn_frames"] = c.frames
        res["latency"] = _latency(st)
        return res
    finally:
        free(c)
        free(st)


@cython.final
cdef class LoadClient:
    """LoadClient(host, port, requests, channels=None, sources=1, max_inflight=512, sse=False)

    `requests`: one handshake request (bytes) per connection (sse: an EventSource GET, whose
    answer must be a 200 with an unchunked text/event-stream body); `channels`: the channel index of
    each connection (for per-channel totals); `sources`: how many 127.0.0.x source addresses
    to rotate over (127.0.0.1 .. 127.0.0.<sources>; one address gives ~28k connections to one
    server port).  Call connect_all() once, then run() in a thread, stop() from another.
    """
    cdef Selector _selector
    cdef Conn *_conns
    cdef int _n
    cdef int _next              # next connection to start
    cdef int _inflight
    cdef int _max_inflight
    cdef int _sources
    cdef sockaddr_in _dest
    cdef Stats *_st
    cdef uint8_t *_buf
    cdef volatile int _stop
    cdef public int opened
    cdef public int failed
    cdef int _nchannels
    cdef uint64_t _first_fail_errno
    cdef bytes _fail_reason
    cdef int *_fdmap            # fd -> connection index (fds are small integers), -1: none,
    cdef int _fdmap_len         # <= -2: publisher connection -2 - value
    cdef PubState *_pub         # the C publisher (pub_attach), or NULL
    cdef bint _sse              # subscribers are EventSource streams, not WebSockets

    def __cinit__(self, host, int port, requests, channels=None, int sources=1,
                  int max_inflight=512, bint sse=False):
        cdef int i
        cdef bytes r
        self._n = len(requests)
        self._conns = <Conn *>calloc(max(self._n, 1), sizeof(Conn))
        self._st = <Stats *>calloc(1, sizeof(Stats))
        self._buf = <uint8_t *>malloc(RECV_BUF)
        if self._conns is NULL or self._st is NULL or self._buf is NULL:
            raise MemoryError()
        self._selector = Selector(maxfired=1024)
        self._sse = sse
        self._max_inflight = max(1, max_inflight)
        self._sources = max(1, min(sources, 254))
        self._fail_reason = b""
        a, b_, c_, d = (int(x) for x in host.split("."))
        memset(&self._dest, 0, sizeof(sockaddr_in))
        self._dest.sin_family = AF_INET
        self._dest.sin_port = htons(port)
        self._dest.sin_addr.s_addr = htonl((a << 24) | (b_ << 16) | (c_ << 8) | d)
        self._nchannels = 1
        for i in range(self._n):
            r = bytes(requests[i])
            self._conns[i].fd = -1
            self._conns[i].req = <char *>malloc(len(r))
            if self._conns[i].req is NULL:
                raise MemoryError()
            memcpy(self._conns[i].req, <char *>r, len(r))
            self._conns[i].req_len = len(r)
            self._conns[i].channel = channels[i] if channels is not None else 0
            if self._conns[i].channel + 1 > self._nchannels:
                self._nchannels = self._conns[i].channel + 1
            self._conns[i].src = i % self._sources
            conn_reset_scanner(&self._conns[i])

    def __dealloc__(self):
        cdef int i
        if self._conns is not NULL:
            for i in range(self._n):
                if self._conns[i].fd >= 0:
                    c_close(self._conns[i].fd)
                free(self._conns[i].req)
            free(self._conns)
        free(self._st)
        free(self._buf)
        free(self._fdmap)
        self._pub_free()

    # -- connection state machine (nogil) ----------------------------------------------------

    cdef void _fail(self, Conn *c, bint after_open) noexcept nogil:
        if c.fd >= 0:
            (<_rm_fn>self._selector._ops.remove)(self._selector._sel, c.fd)
            c_close(c.fd)
            c.fd = -1
        if c.state == ST_CONNECTING or c.state == ST_HANDSHAKE:
            self._inflight -= 1
            self.failed += 1
            c.state = ST_FAILED
        elif c.state == ST_OPEN:
            self._st.disconnects += 1
            c.state = ST_CLOSED

    cdef void _start(self, Conn *c) noexcept nogil:
        cdef int fd, one = 1, r
        cdef sockaddr_in src
        fd = gg_socket(AF_INET, SOCK_STREAM, 0)
        self._inflight += 1
        c.state = ST_CONNECTING
        if fd < 0:
            if self._first_fail_errno == 0:
                self._first_fail_errno = errno
            self._fail(c, False)
            return
        c.fd = fd
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
        if self._sources > 1:
            # several source addresses: each (src, dst:port) pair has its own ~28k ports;
            # IP_BIND_ADDRESS_NO_PORT defers the port choice to connect() so it can be shared
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one))
            memset(&src, 0, sizeof(src))
            src.sin_family = AF_INET
            src.sin_port = 0
            src.sin_addr.s_addr = htonl(0x7F000001 + <unsigned int>c.src)
            if bind(fd, <sockaddr *>&src, sizeof(src)) < 0:
                if self._first_fail_errno == 0:
                    self._first_fail_errno = errno
                self._fail(c, False)
                return
        r = connect(fd, <sockaddr *>&self._dest, sizeof(self._dest))
        if r < 0 and errno != EINPROGRESS:
            if self._first_fail_errno == 0:
                self._first_fail_errno = errno
            self._fail(c, False)
            return
        if (<_ctl_fn>self._selector._ops.add)(self._selector._sel, fd, GG_WRITABLE) < 0:
            self._fail(c, False)

    cdef void _writable(self, Conn *c) noexcept nogil:
        cdef int err = 0
        cdef socklen_t el = sizeof(err)
        cdef Py_ssize_t w
        if c.state == ST_CONNECTING:
            getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &el)
            if err != 0:
                if self._first_fail_errno == 0:
                    self._first_fail_errno = err
                self._fail(c, False)
                return
            c.state = ST_HANDSHAKE
        if c.state == ST_HANDSHAKE and c.req_off < c.req_len:
            w = gg_send(c.fd, c.req + c.req_off, c.req_len - c.req_off)
            if w < 0:
                if not gg_would_block(errno):
                    self._fail(c, False)
                return
            c.req_off += <int>w
            if c.req_off == c.req_len:
                (<_ctl_fn>self._selector._ops.mod)(self._selector._sel, c.fd, GG_READABLE)

    cdef void _readable(self, Conn *c) noexcept nogil:
        cdef Py_ssize_t got, i, rest
        cdef uint64_t now
        cdef int loops = 0
        while loops < 4:
            loops += 1
            got = recv(c.fd, self._buf, RECV_BUF, 0)
            if got <= 0:
                if got < 0 and (gg_would_block(errno) or errno == EINTR):
                    return
                self._fail(c, True)             # EOF or error
                return
            now = now_ns()
            i = 0
            if c.state == ST_HANDSHAKE:
                # find the end of the head; keep its start to check the status line
                while i < got:
                    if c.head_len < HEAD_MAX:
                        c.head[c.head_len] = <char>self._buf[i]
                        c.head_len += 1
                    if self._buf[i] == (10 if (c.head_match & 1) else 13):
                        c.head_match += 1
                    else:
                        c.head_match = 1 if self._buf[i] == 13 else 0
                    i += 1
                    if c.head_match == 4:
                        break
                if c.head_match < 4:
                    if c.head_len >= HEAD_MAX:
                        self._fail(c, False)
                    continue
                if c.head_len < 12 or memcmp(c.head, b"HTTP/1.1 200" if self._sse
                                             else b"HTTP/1.1 101", 12) != 0:
                    self._fail(c, False)
                    return
                c.state = ST_OPEN
                self._inflight -= 1
                self.opened += 1
            rest = got - i
            if rest > 0:
                c.bytes += <uint64_t>rest
                self._st.bytes += <uint64_t>rest
                if self._sse:
                    _feed_sse(c, self._st, self._buf + i, rest, now)
                elif _feed(c, self._st, self._buf + i, rest, now) < 0:
                    self._fail(c, True)
                    return
            if got < RECV_BUF:
                return

    cdef int _loop_once(self, int timeout_ms) noexcept nogil:
        cdef int k, i, fd, mask, idx, t
        cdef Conn *c
        cdef PubConn *pc
        cdef gg_fired *fired = self._selector._fired
        cdef PubState *p = self._pub
        if p is not NULL and p.active:
            t = pub_tick(p, now_ns(), self._selector._sel, <_ctl_fn>self._selector._ops.mod)
            if t < timeout_ms:
                timeout_ms = t
        k = (<_poll_fn>self._selector._ops.poll)(self._selector._sel, fired,
                                                  self._selector._maxfired, timeout_ms)
        if k < 0:
            return 0
        for i in range(k):
            fd = fired[i].fd
            mask = fired[i].mask
            if fd < 0 or fd >= self._fdmap_len:
                continue
            idx = self._fdmap[fd]
            if idx <= -2:
                # a publisher connection
                if p is NULL or -2 - idx >= p.nconns:
                    continue
                pc = &p.conns[-2 - idx]
                if pc.dead or pc.fd != fd:
                    continue
                if mask & GG_READABLE:
                    pub_readable(p, pc, self._buf, RECV_BUF)
                if not pc.dead and mask & GG_WRITABLE:
                    pub_flush(p, pc, self._selector._sel, <_ctl_fn>self._selector._ops.mod)
                continue
            c = self._by_fd(fd)
            if c is NULL:
                continue
            if mask & GG_WRITABLE and (c.state == ST_CONNECTING or c.state == ST_HANDSHAKE):
                self._writable(c)
            if c.fd >= 0 and mask & GG_READABLE:
                self._readable(c)
        return k

    cdef Conn *_by_fd(self, int fd) noexcept nogil:
        cdef int idx
        if fd < 0 or fd >= self._fdmap_len:
            return NULL
        idx = self._fdmap[fd]
        if idx < 0:
            return NULL
        if self._conns[idx].fd != fd:
            return NULL
        return &self._conns[idx]

    cdef int _ensure_fdmap(self) except -1:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        n = int(soft if soft != resource.RLIM_INFINITY else 1 << 20) + 16
        if self._fdmap is NULL:
            self._fdmap = <int *>malloc(n * sizeof(int))
            if self._fdmap is NULL:
                raise MemoryError()
            self._fdmap_len = n
            memset(self._fdmap, 0xFF, n * sizeof(int))
        return 0

    # -- Python API ------------------------------------------------------------------------

    def connect_all(self, double timeout=30.0):
        """Open every connection (at most max_inflight at a time) and wait for each 101.
        Returns (opened, failed, seconds).  Errors are counted, not raised."""
        cdef uint64_t t0, deadline
        cdef int i
        cdef Conn *c
        self._ensure_fdmap()
        t0 = now_ns()
        deadline = t0 + <uint64_t>(timeout * 1e9)
        with nogil:
            while self.opened + self.failed < self._n and now_ns() < deadline:
                while self._next < self._n and self._inflight < self._max_inflight:
                    c = &self._conns[self._next]
                    self._start(c)
                    if c.fd >= 0 and c.fd < self._fdmap_len:
                        self._fdmap[c.fd] = self._next
                    self._next += 1
                self._loop_once(20)
        for i in range(self._n):
            c = &self._conns[i]
            if c.state != ST_OPEN and c.state != ST_FAILED and c.state != ST_CLOSED:
                # timed out
                if c.state == ST_IDLE:
                    c.state = ST_CONNECTING
                    self._inflight += 1
                self._fail(c, False)
            if c.req is not NULL:
                free(c.req)
                c.req = NULL
        return self.opened, self.failed, (now_ns() - t0) / 1e9

    def run(self, double max_seconds=1e9, double min_pass_ms=0.0):
        """The receive loop: runs with the GIL released until stop() (or max_seconds).

        min_pass_ms: a loop pass that found events is followed by a sleep up to that many ms
        since it began.  Bytes then pile up in the socket buffers and one recv() takes many
        frames: on loopback a recv() costs microseconds of kernel time (the ACK it sends runs
        the server side's receive path too), so reading every frame as it comes would make
        the client, not the server, the limit.  The cost: up to min_pass_ms of added
        latency, and the publisher's messages leave in bursts of one pass."""
        cdef uint64_t deadline = now_ns() + <uint64_t>(max_seconds * 1e9)
        cdef uint64_t pass_ns = <uint64_t>(min_pass_ms * 1e6) if min_pass_ms > 0 else 0
        cdef uint64_t t_pass, spent
        cdef int k
        cdef timespec ts
        self._stop = 0
        with nogil:
            while not self._stop:
                t_pass = now_ns()
                if t_pass >= deadline:
                    break
                k = self._loop_once(20)
                if pass_ns and k > 0:
                    spent = now_ns() - t_pass
                    if spent < pass_ns:
                        ts.tv_sec = 0
                        ts.tv_nsec = <long>(pass_ns - spent)
                        nanosleep(&ts, NULL)

    def stop(self):
        self._stop = 1

    # -- the C publisher (_publisher.pxi) ----------------------------------------------------

    def pub_attach(self, kind, fds, prefixes, int size, int window=64):
        """Hand connected publisher sockets to the loop (before run() starts).

        kind: "ws" (fds[i] publishes to channel i, raw frames), "ws-json" (fds[0] is a
        multi-channel JSON publisher; prefixes[i] = b'{"id":"<channel i>","text":"'), or
        "http" (keep-alive connections; prefixes[i] = the POST head of channel i up to and
        including "Content-Length: ").  The client owns the fds from now on."""
        cdef int i, n = len(fds), nch
        cdef PubState *p
        cdef bytes b
        if self._pub is not NULL:
            raise RuntimeError("a publisher is attached already")
        kinds = {"http": PK_HTTP, "ws": PK_WS, "ws-json": PK_WS_JSON}
        if kind not in kinds or n < 1:
            raise ValueError(f"bad publisher kind {kind!r} or no connection")
        nch = len(prefixes) if kind != "ws" else n
        if nch < 1:
            raise ValueError("no channel")
        self._ensure_fdmap()
        p = <PubState *>calloc(1, sizeof(PubState))
        if p is NULL:
            raise MemoryError()
        self._pub = p
        p.kind = kinds[kind]
        p.sel = self._selector._sel
        p.sel_remove = <_rm_fn>self._selector._ops.remove
        p.size = max(20, size)
        p.window = max(1, window)
        p.nch = nch
        p.nconns = n
        p.conns = <PubConn *>calloc(n, sizeof(PubConn))
        p.per_ch = <uint64_t *>calloc(nch, sizeof(uint64_t))
        p.ch_prefix = <char **>calloc(nch, sizeof(char *))
        p.ch_prefix_len = <int *>calloc(nch, sizeof(int))
        p.scratch = <char *>malloc(JSON_BATCH_MAX + 64)
        if (p.conns is NULL or p.per_ch is NULL or p.ch_prefix is NULL
                or p.ch_prefix_len is NULL or p.scratch is NULL):
            raise MemoryError()
        if kind != "ws":
            for i in range(nch):
                b = bytes(prefixes[i])
                if kind == "ws-json" and len(b) + p.size + 32 > JSON_BATCH_MAX:
                    raise ValueError("JSON publish item too large")
                p.ch_prefix[i] = <char *>malloc(max(1, len(b)))
                if p.ch_prefix[i] is NULL:
                    raise MemoryError()
                memcpy(p.ch_prefix[i], <char *>b, len(b))
                p.ch_prefix_len[i] = len(b)
        for i in range(n):
            p.conns[i].fd = -1
            p.conns[i].fifo = <int *>calloc(p.window, sizeof(int))
            if p.conns[i].fifo is NULL:
                raise MemoryError()
        for i in range(n):
            fd = int(fds[i])
            if fd < 0 or fd >= self._fdmap_len:
                raise ValueError(f"publisher fd {fd} out of range")
            self._selector.add(fd, GG_READABLE)
            p.conns[i].fd = fd
            self._fdmap[fd] = -2 - i

    cdef void _pub_free(self):
        cdef int i
        cdef PubState *p = self._pub
        if p is NULL:
            return
        self._pub = NULL
        if p.conns is not NULL:
            for i in range(p.nconns):
                if p.conns[i].fd >= 0:
                    c_close(p.conns[i].fd)
                free(p.conns[i].out)
                free(p.conns[i].fifo)
            free(p.conns)
        if p.ch_prefix is not NULL:
            for i in range(p.nch):
                free(p.ch_prefix[i])
            free(p.ch_prefix)
        free(p.ch_prefix_len)
        free(p.per_ch)
        free(p.scratch)
        free(p)

    def pub_start(self, double rate, double duration, count=None):
        """Start a step: message k is due at now + k / rate, none at or after `duration`
        (or exactly `count` messages).  run() must be running (or be called) to send them."""
        cdef PubState *p = self._pub
        if p is NULL:
            raise RuntimeError("no publisher attached")
        if p.active:
            raise RuntimeError("a publish step is running")
        if rate <= 0:
            raise ValueError("rate must be > 0")
        memset(p.per_ch, 0, p.nch * sizeof(uint64_t))
        p.rate = rate
        p.k = 0
        p.sent = p.acked = p.errors = 0
        p.err_len = 0
        p.count = <uint64_t>count if count is not None else 0
        p.done = 0
        p.t0 = now_ns()
        p.end = p.t0 + <uint64_t>(duration * 1e9)
        p.t_done = 0
        gg_fence()
        p.active = 1

    def pub_result(self):
        """None while the step runs; then {sent, acked, errors, seconds, per_channel, error}."""
        cdef PubState *p = self._pub
        cdef int i
        if p is NULL:
            raise RuntimeError("no publisher attached")
        if not p.done:
            return None
        gg_fence()
        return {"sent": p.sent, "acked": p.acked, "errors": p.errors,
                "seconds": (p.t_done - p.t0) / 1e9,
                "per_channel": [p.per_ch[i] for i in range(p.nch)],
                "error": p.err[:p.err_len].decode("utf-8", "replace")}

    def pub_progress(self):
        """Messages queued so far in the current step (a snapshot)."""
        return 0 if self._pub is NULL else self._pub.sent

    def pub_live(self):
        """Publisher connections still open."""
        cdef int i, k = 0
        if self._pub is NULL:
            return 0
        for i in range(self._pub.nconns):
            if not self._pub.conns[i].dead:
                k += 1
        return k


    def kill(self, int count):
        """shutdown() the first `count` open connections (tests: forced loss).  Safe while
        run() is active in another thread: the loop sees EOF and closes them."""
        cdef int i, done = 0
        for i in range(self._n):
            if done >= count:
                break
            if self._conns[i].state == ST_OPEN and self._conns[i].fd >= 0:
                shutdown(self._conns[i].fd, SHUT_RDWR)
                done += 1
        return done

    def close(self):
        cdef int i
        for i in range(self._n):
            if self._conns[i].fd >= 0:
                (<_rm_fn>self._selector._ops.remove)(self._selector._sel, self._conns[i].fd)
                c_close(self._conns[i].fd)
                self._conns[i].fd = -1
                if self._conns[i].state == ST_OPEN:
                    self._conns[i].state = ST_CLOSED

    @property
    def connections(self):
        return self._n

    @property
    def open_connections(self):
        cdef int i, k = 0
        for i in range(self._n):
            if self._conns[i].state == ST_OPEN:
                k += 1
        return k

    @property
    def first_error(self):
        """errno of the first connect failure (0: none)."""
        return self._first_fail_errno

    def stats(self):
        """Totals since the last reset (a snapshot; the loop may be running)."""
        return _stats_dict(self._st)

    @property
    def frames(self):
        return self._st.frames

    def latency(self):
        return _latency(self._st)

    def reset_latency(self):
        """Clear the histogram and the max (call between sweep steps, when idle)."""
        memset(self._st.hist, 0, sizeof(self._st.hist))
        self._st.lat_max = 0
        self._st.stamped = 0
        self._st.unstamped = 0

    def per_channel_frames(self):
        """Messages received, summed per channel index."""
        cdef int i
        out = [0] * self._nchannels
        for i in range(self._n):
            out[self._conns[i].channel] += self._conns[i].frames
        return out

    def per_connection_frames(self):
        cdef int i
        return [self._conns[i].frames for i in range(self._n)]

    def open_per_channel(self):
        """Open connections per channel index (expected receivers of each publish)."""
        cdef int i
        out = [0] * self._nchannels
        for i in range(self._n):
            if self._conns[i].state == ST_OPEN:
                out[self._conns[i].channel] += 1
        return out

