# The C publisher of gogin-bench, included into _loadclient.pyx (uvloop-style include: it runs
# inside the LoadClient's receive loop, on the same selector, with the GIL released).
#
# Why in C: a fanout step at 10 M deliveries/s to 1,000 subscribers is 10k publishes/s, and
# 1:1 routing wants 150k+ publishes/s; an asyncio publisher in the same process would take the
# CPU the receive loop needs (and could not reach those rates at all).
#
# Three framings, all driven by one token schedule (message k is due at t0 + k / rate):
#   PK_WS       one WebSocket connection per channel; every message is one masked Text frame
#               (mask key 0: RFC 6455 §5.3 asks for a mask, not a random one, from a client
#               that is a load generator - the server unmasks either way).  Credited when
#               queued; the step ends when every queued byte went to the kernel.
#   PK_WS_JSON  one WebSocket connection to a multi-channel publisher (gogin's publisher
#               location without ?id=, the peers' /pub): every message due in a loop pass is
#               one item {"id": channel, "text": payload} of one JSON array frame.  Error
#               answers ({"error": ...}) are counted as errors.
#   PK_HTTP     keep-alive HTTP/1.1 POSTs, pipelined up to `window` per connection; a 2xx
#               answer credits the request's channel, anything else is an error.
# Each payload is make_payload's: "@gb:" + 16 hex digits of the send time (the pass's clock
# reading) + 'x' padding, so it needs no JSON escaping.

cdef enum:
    PK_HTTP = 0
    PK_WS = 1
    PK_WS_JSON = 2
    PUB_OUT_MAX = 1 << 20       # bytes queued on one connection before the schedule waits
    JSON_BATCH_MAX = 1 << 16    # bytes of one JSON publish frame (servers allow >= 1 MiB)
    PUB_PASS_MAX = 20000        # messages generated per loop pass (a late schedule catches up)


cdef struct PubConn:
    int fd
    char *out                   # bytes queued for the kernel: out[off:len]
    Py_ssize_t out_len
    Py_ssize_t out_off
    Py_ssize_t out_cap
    bint armed                  # WRITABLE interest is on
    int *fifo                   # HTTP: channel of each request in flight (ring of `window`)
    int fifo_head
    int fifo_n
    char head[HEAD_MAX]         # HTTP: answer head seen so far
    int head_len
    int head_match
    uint64_t body_left          # HTTP: answer body bytes still to skip
    bint dead


cdef struct PubState:
    int kind
    int nconns
    PubConn *conns
    int nch
    char **ch_prefix            # per channel: HTTP request head up to "Content-Length: ",
    int *ch_prefix_len          # or the JSON item's '{"id":"...","text":"'
    uint64_t *per_ch            # publishes credited per channel
    int size                    # payload bytes
    int window                  # HTTP: requests in flight per connection
    char *scratch               # JSON: the array being built
    # the step (written by Python while inactive, then `active` is set after a fence)
    double rate
    uint64_t t0
    uint64_t end                # no message is due at or after this (0: `count` decides)
    uint64_t count              # exact number of messages (0: `end` decides)
    uint64_t k                  # next message
    uint64_t sent
    uint64_t acked
    uint64_t errors
    uint64_t t_done
    int rr                      # next connection to try
    gg_selector *sel            # the loop's selector, to drop a dead connection's fd
    _rm_fn sel_remove
    char err[200]
    int err_len
    volatile int active
    volatile int done


cdef extern from *:
    """
    static inline void gg_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    """
    void gg_fence() nogil


cdef inline void pub_error(PubState *p, const char *msg, Py_ssize_t n) noexcept nogil:
    p.errors += 1
    if p.err_len == 0:
        if n > <Py_ssize_t>sizeof(p.err) - 1:
            n = sizeof(p.err) - 1
        memcpy(p.err, msg, n)
        p.err_len = <int>n


cdef int out_reserve(PubConn *c, Py_ssize_t extra) noexcept nogil:
    """Room for `extra` more bytes at c.out[c.out_len:].  Returns -1 on allocation failure."""
    cdef Py_ssize_t need, cap
    cdef char *nb
    if c.out_off > 0 and c.out_off == c.out_len:
        c.out_off = 0
        c.out_len = 0
    need = c.out_len + extra
    if need <= c.out_cap:
        return 0
    if c.out_off > 0:                   # slide the unsent rest to the front first
        memmove(c.out, c.out + c.out_off, c.out_len - c.out_off)
        c.out_len -= c.out_off
        c.out_off = 0
        need = c.out_len + extra
        if need <= c.out_cap:
            return 0
    cap = c.out_cap * 2 if c.out_cap else 65536
    while cap < need:
        cap *= 2
    nb = <char *>realloc(c.out, cap)
    if nb is NULL:
        return -1
    c.out = nb
    c.out_cap = cap
    return 0


cdef inline Py_ssize_t put_payload(char *dst, int size, uint64_t stamp) noexcept nogil:
    """make_payload() in place: '@gb:' + 16 lowercase hex digits + 'x' * (size - 20)."""
    cdef int i
    cdef const char *hexd = b"0123456789abcdef"
    memcpy(dst, b"@gb:", 4)
    for i in range(16):
        dst[4 + i] = hexd[(stamp >> (60 - 4 * i)) & 15]
    if size > 20:
        memset(dst + 20, 120, size - 20)
    return size if size > 20 else 20


cdef inline Py_ssize_t put_ws_header(char *dst, Py_ssize_t n) noexcept nogil:
    """Masked Text frame header (key 0) for an n-byte payload; minimal length (§5.2)."""
    dst[0] = <char>0x81
    if n < 126:
        dst[1] = <char>(0x80 | n)
        memset(dst + 2, 0, 4)
        return 6
    if n < 65536:
        dst[1] = <char>(0x80 | 126)
        dst[2] = <char>((n >> 8) & 0xFF)
        dst[3] = <char>(n & 0xFF)
        memset(dst + 4, 0, 4)
        return 8
    dst[1] = <char>(0x80 | 127)
    cdef int i
    for i in range(8):
        dst[2 + i] = <char>((<uint64_t>n >> (56 - 8 * i)) & 0xFF)
    memset(dst + 10, 0, 4)
    return 14


cdef inline Py_ssize_t put_decimal(char *dst, uint64_t v) noexcept nogil:
    cdef char tmp[24]
    cdef int n = 0, i
    while True:
        tmp[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        dst[i] = tmp[n - 1 - i]
    return n


cdef inline uint64_t pub_due_at(PubState *p) noexcept nogil:
    """When message p.k is due."""
    return p.t0 + <uint64_t>(<double>p.k * 1e9 / p.rate)


cdef inline bint pub_schedule_over(PubState *p) noexcept nogil:
    """No message is left in the step."""
    if p.count:
        return p.k >= p.count
    return pub_due_at(p) >= p.end


cdef inline bint pub_due(PubState *p, uint64_t now) noexcept nogil:
    """Message p.k exists and is due by `now`."""
    return not pub_schedule_over(p) and pub_due_at(p) <= now


cdef void pub_flush(PubState *p, PubConn *c, gg_selector *sel, _ctl_fn mod) noexcept nogil:
    cdef Py_ssize_t w
    while c.out_off < c.out_len:
        w = gg_send(c.fd, c.out + c.out_off, c.out_len - c.out_off)
        if w < 0:
            if gg_would_block(errno):
                break
            if errno == EINTR:
                continue
            pub_conn_dead(p, c, b"publisher connection: send failed")
            return
        c.out_off += w
    if c.out_off < c.out_len:
        if not c.armed:
            mod(sel, c.fd, GG_READABLE | GG_WRITABLE)
            c.armed = True
    else:
        c.out_off = 0
        c.out_len = 0
        if c.armed:
            mod(sel, c.fd, GG_READABLE)
            c.armed = False


cdef void pub_conn_dead(PubState *p, PubConn *c, const char *why) noexcept nogil:
    if c.dead:
        return
    c.dead = True
    pub_error(p, why, strlen(why))
    if c.fd >= 0:
        p.sel_remove(p.sel, c.fd)
        c_close(c.fd)
        c.fd = -1
    # requests in flight are lost: counted as errors, never credited
    p.errors += <uint64_t>c.fifo_n
    c.fifo_n = 0
    c.out_len = 0
    c.out_off = 0


cdef int pub_generate(PubState *p, uint64_t now) noexcept nogil:
    """Queue every message due by `now`.  Returns how many were queued."""
    cdef int made = 0, tries, ch
    cdef PubConn *c
    cdef Py_ssize_t n, hl, at
    cdef char *s
    if p.kind == PK_WS_JSON:
        c = &p.conns[0]
        if c.dead or c.out_len - c.out_off > PUB_OUT_MAX:
            return 0
        s = p.scratch
        at = 1
        s[0] = 91                                         # '['
        while made < PUB_PASS_MAX and pub_due(p, now):
            ch = <int>(p.k % <uint64_t>p.nch)
            if at + p.ch_prefix_len[ch] + p.size + 24 > JSON_BATCH_MAX:
                break
            if made:
                s[at] = 44                                # ','
                at += 1
            memcpy(s + at, p.ch_prefix[ch], p.ch_prefix_len[ch])
            at += p.ch_prefix_len[ch]
            at += put_payload(s + at, p.size, now)
            s[at] = 34                                    # '"'
            s[at + 1] = 125                               # '}'
            at += 2
            p.per_ch[ch] += 1
            p.k += 1
            made += 1
        if made == 0:
            return 0
        s[at] = 93                                        # ']'
        at += 1
        if out_reserve(c, at + 14) < 0:
            pub_conn_dead(p, c, b"publisher: out of memory")
            return made
        hl = put_ws_header(c.out + c.out_len, at)
        memcpy(c.out + c.out_len + hl, s, at)
        c.out_len += hl + at
        p.sent += <uint64_t>made
        p.acked += <uint64_t>made
        return made
    while made < PUB_PASS_MAX and pub_due(p, now):
        ch = <int>(p.k % <uint64_t>p.nch)
        if p.kind == PK_WS:
            c = &p.conns[ch if ch < p.nconns else ch % p.nconns]
            if c.dead or c.out_len - c.out_off > PUB_OUT_MAX:
                break
            if out_reserve(c, p.size + 14) < 0:
                pub_conn_dead(p, c, b"publisher: out of memory")
                break
            n = p.size if p.size > 20 else 20
            hl = put_ws_header(c.out + c.out_len, n)
            put_payload(c.out + c.out_len + hl, p.size, now)
            c.out_len += hl + n
            p.per_ch[ch] += 1
            p.acked += 1
        else:
            # HTTP: the next connection (round robin) with room in its pipeline
            c = NULL
            for tries in range(p.nconns):
                c = &p.conns[p.rr]
                p.rr = (p.rr + 1) % p.nconns
                if not c.dead and c.fifo_n < p.window and c.out_len - c.out_off <= PUB_OUT_MAX:
                    break
                c = NULL
            if c is NULL:
                break
            if out_reserve(c, p.ch_prefix_len[ch] + 28 + p.size) < 0:
                pub_conn_dead(p, c, b"publisher: out of memory")
                break
            s = c.out + c.out_len
            memcpy(s, p.ch_prefix[ch], p.ch_prefix_len[ch])
            at = p.ch_prefix_len[ch]
            n = p.size if p.size > 20 else 20
            at += put_decimal(s + at, <uint64_t>n)
            memcpy(s + at, b"\r\n\r\n", 4)
            at += 4
            at += put_payload(s + at, p.size, now)
            c.out_len += at
            c.fifo[(c.fifo_head + c.fifo_n) % p.window] = ch
            c.fifo_n += 1
        p.sent += 1
        p.k += 1
        made += 1
    return made


cdef int http_answers(PubState *p, PubConn *c, const uint8_t *data, Py_ssize_t n) noexcept nogil:
    """Consume pipelined answers: status line, headers (Content-Length), body."""
    cdef Py_ssize_t i = 0, take
    cdef int status, ch
    cdef const char *cl
    while i < n:
        if c.body_left:
            take = <Py_ssize_t>c.body_left if c.body_left < <uint64_t>(n - i) else n - i
            c.body_left -= <uint64_t>take
            i += take
            continue
        # head: find "\r\n\r\n", keep the bytes (to read the status and Content-Length)
        while i < n and c.head_match < 4:
            if c.head_len < HEAD_MAX - 1:
                c.head[c.head_len] = <char>data[i]
                c.head_len += 1
            if data[i] == (10 if (c.head_match & 1) else 13):
                c.head_match += 1
            else:
                c.head_match = 1 if data[i] == 13 else 0
            i += 1
        if c.head_match < 4:
            return 0
        c.head[c.head_len] = 0
        c.head_match = 0
        if c.fifo_n == 0:
            pub_error(p, b"publish answer without a request", 32)
            return -1
        ch = c.fifo[c.fifo_head]
        c.fifo_head = (c.fifo_head + 1) % p.window
        c.fifo_n -= 1
        status = 0
        if c.head_len >= 12 and memcmp(c.head, b"HTTP/1.", 7) == 0:
            status = (c.head[9] - 48) * 100 + (c.head[10] - 48) * 10 + (c.head[11] - 48)
        if 200 <= status < 300:
            p.acked += 1
            p.per_ch[ch] += 1
        else:
            pub_error(p, c.head, c.head_len if c.head_len < 60 else 60)
        cl = strcasestr(c.head, b"\r\ncontent-length:")
        if cl is not NULL:
            c.body_left = strtoull(cl + 17, NULL, 10)
        elif strcasestr(c.head, b"\r\ntransfer-encoding:") is not NULL:
            pub_error(p, b"chunked publish answers are not supported", 41)
            c.head_len = 0
            return -1
        c.head_len = 0
    return 0


cdef void pub_readable(PubState *p, PubConn *c, uint8_t *buf, Py_ssize_t cap) noexcept nogil:
    cdef Py_ssize_t got
    cdef int loops = 0
    cdef const uint8_t *q
    while loops < 4:
        loops += 1
        got = recv(c.fd, buf, cap, 0)
        if got <= 0:
            if got < 0 and (gg_would_block(errno) or errno == EINTR):
                return
            pub_conn_dead(p, c, b"publisher connection closed by the server")
            return
        if p.kind == PK_HTTP:
            if http_answers(p, c, buf, got) < 0:
                pub_conn_dead(p, c, b"publisher connection: bad answer")
                return
        elif p.kind == PK_WS_JSON:
            # anything a JSON publisher answers is an error report ({"error": ..., "index": N})
            q = buf
            while q < buf + got:
                q = <const uint8_t *>memmem(q, got - (q - buf), b'"error"', 7)
                if q is NULL:
                    break
                pub_error(p, <const char *>q, (buf + got - q) if (buf + got - q) < 120 else 120)
                q += 7
        # PK_WS: whatever comes back (Nchan's status frames) is discarded
        if got < cap:
            return


cdef int pub_tick(PubState *p, uint64_t now, gg_selector *sel, _ctl_fn mod) noexcept nogil:
    """One pass: generate what is due, flush, see whether the step is over.  Returns the poll
    timeout (ms) the schedule needs: 0 when a message is already due, else until the next."""
    cdef int i, live = 0
    cdef bint busy = False
    cdef PubConn *c
    cdef uint64_t due
    cdef int made
    if not p.active:
        return 20
    made = pub_generate(p, now)
    for i in range(p.nconns):
        c = &p.conns[i]
        if c.dead:
            continue
        live += 1
        if c.out_len > c.out_off and not c.armed:
            pub_flush(p, c, sel, mod)
        if c.out_len > c.out_off or c.fifo_n > 0:
            busy = True
    if (pub_schedule_over(p) and not busy) or live == 0:
        p.t_done = now
        gg_fence()
        p.active = 0
        p.done = 1
        return 20
    if pub_schedule_over(p):
        return 1
    due = pub_due_at(p)
    if due <= now:
        return 0 if made else 1          # blocked (pipeline full, backlog): wait for events
    # round up: a 0 ms wait would spin the loop until the message is due
    return <int>((due - now + 999999) // 1000000) if due - now < 20000000 else 20
