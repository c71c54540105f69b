"""Wire formats: a message rendered once per format, in the bytes every subscriber of that
format is sent (a WebSocket frame, an EventSource event, a stream chunk, a whole long-poll
answer), from a template with push-stream's tokens; and the JSON escaping of its ~*-json~ tokens.

Sans-I/O: bytes in, a Frame out.  fanout.pyx decides who gets the frame; this module only
decides what its bytes are.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset
from libc.stdio cimport snprintf

from gogin._core.buffers cimport Frame, frame_new, frame_from, frame_decref
from gogin._core.frames cimport ws_write_header, GG_WS_MAX_HEADER, PING, BINARY, TEXT
from gogin._core.deflate cimport pmd_frame, GG_PMD_MIN_BITS, GG_PMD_MAX_BITS
from gogin._core.includes.sockets cimport time_t, tm, gmtime_r, strftime

# JSON string escaping (RFC 8259 §7) for the ~text-json~ and ~channel-json~ tokens
cdef const char *HEX = "0123456789abcdef"

cdef inline Py_ssize_t _esc_len(unsigned char c) noexcept nogil:
    if c == 34 or c == 92 or c == 8 or c == 12 or c == 10 or c == 13 or c == 9:
        return 2
    if c < 0x20 or c == 0x7f:
        return 6
    return 1


cdef Py_ssize_t json_escaped_size(const unsigned char *src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, total = 0
    for i in range(n):
        total += _esc_len(src[i])
    return total


cdef Py_ssize_t json_escape_into(const unsigned char *src, Py_ssize_t n, unsigned char *dst) noexcept nogil:
    cdef Py_ssize_t i, o = 0
    cdef unsigned char c
    for i in range(n):
        c = src[i]
        if c == 34 or c == 92:
            dst[o] = 92; dst[o + 1] = c; o += 2
        elif c == 10:
            dst[o] = 92; dst[o + 1] = 110; o += 2
        elif c == 13:
            dst[o] = 92; dst[o + 1] = 114; o += 2
        elif c == 9:
            dst[o] = 92; dst[o + 1] = 116; o += 2
        elif c == 8:
            dst[o] = 92; dst[o + 1] = 98; o += 2
        elif c == 12:
            dst[o] = 92; dst[o + 1] = 102; o += 2
        elif c < 0x20 or c == 0x7f:
            dst[o] = 92; dst[o + 1] = 117; dst[o + 2] = 48; dst[o + 3] = 48
            dst[o + 4] = HEX[c >> 4]; dst[o + 5] = HEX[c & 15]; o += 6
        else:
            dst[o] = c; o += 1
    return o


cdef bytes json_escape(bytes raw):
    cdef const unsigned char *src = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t n = len(raw)
    cdef Py_ssize_t size = json_escaped_size(src, n)
    if size == n:
        return raw
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    json_escape_into(src, n, <unsigned char *>PyBytes_AS_STRING(out))
    return out


def escape_json(bytes raw):
    """JSON-escape raw bytes (no quotes added); exposed for tests and the Python layer."""
    return json_escape(raw)


cdef enum Token:
    TOKEN_LITERAL = 0
    TOKEN_ID = 1
    TOKEN_TEXT = 2
    TOKEN_TEXT_JSON = 3
    TOKEN_CHANNEL = 4
    TOKEN_CHANNEL_JSON = 5
    TOKEN_TIME = 6
    TOKEN_TAG = 7
    TOKEN_EVENT_ID = 8
    TOKEN_EVENT_TYPE = 9
    TOKEN_SIZE = 10
    TOKEN_EVENT_ID_JSON = 11
    TOKEN_EVENT_TYPE_JSON = 12

TOKENS = {
    b"~id~": TOKEN_ID, b"~text~": TOKEN_TEXT, b"~text-json~": TOKEN_TEXT_JSON,
    b"~channel~": TOKEN_CHANNEL, b"~channel-json~": TOKEN_CHANNEL_JSON, b"~time~": TOKEN_TIME,
    b"~tag~": TOKEN_TAG, b"~event-id~": TOKEN_EVENT_ID, b"~event-type~": TOKEN_EVENT_TYPE,
    b"~size~": TOKEN_SIZE, b"~event-id-json~": TOKEN_EVENT_ID_JSON,
    b"~event-type-json~": TOKEN_EVENT_TYPE_JSON,
}

KINDS = {"websocket": FK_WEBSOCKET, "eventsource": FK_EVENTSOURCE, "stream": FK_STREAM,
         "longpoll": FK_LONGPOLL}

cdef enum:
    STREAM_HEADROOM = 20       # "%x\r\n" of a chunk length: at most 16 hex digits + CRLF
    NUM_MAX = 24               # room for a formatted int64


# -- HTTP date of a message time (push-stream's ~time~), cached per second -----------------

cdef time_t _date_sec = -1
cdef char _date_buf[40]
cdef Py_ssize_t _date_len = 0

cdef Py_ssize_t http_date(int64_t t, const char **out) noexcept nogil:
    global _date_sec, _date_len
    cdef tm parts
    cdef time_t tt = <time_t>t
    if tt != _date_sec:
        if gmtime_r(&tt, &parts) == NULL:
            tt = 0                     # a time gmtime cannot express: the epoch, not garbage
            gmtime_r(&tt, &parts)
        _date_len = strftime(_date_buf, sizeof(_date_buf), "%a, %d %b %Y %H:%M:%S GMT", &parts)
        _date_sec = <time_t>t
    out[0] = _date_buf
    return _date_len


def format_http_date(int64_t t):
    cdef const char *p
    cdef Py_ssize_t n = http_date(t, &p)
    return p[:n].decode("ascii")


# -- scratch buffer for bodies that get wrapped (EventSource, long-poll) ----------------------

cdef unsigned char *_scratch = NULL
cdef Py_ssize_t _scratch_cap = 0

cdef unsigned char *_scratch_reserve(Py_ssize_t n) noexcept nogil:
    global _scratch, _scratch_cap
    cdef unsigned char *p
    # also when nothing was allocated yet: a first body of 0 bytes (an empty template, or
    # "~event-id~" without an event id) must get a buffer, not NULL - render() reads NULL
    # as out of memory
    if n > _scratch_cap or _scratch == NULL:
        p = <unsigned char *>realloc(_scratch, n if n > 4096 else 4096)
        if p == NULL:
            return NULL
        _scratch = p
        _scratch_cap = n if n > 4096 else 4096
    return _scratch


# -- wire formats ----------------------------------------------------------------------------

@cython.final
cdef class Format:
    """One wire format: a kind (websocket, eventsource, stream, longpoll) and a template.

    Subscribers that share a Format share the bytes of every message: the template is applied
    once per publish, whatever the number of subscribers.
    """

    def __cinit__(self, int index, str kind, template=b"~text~", *, bytes ping=b"",
                  bytes head=b"", bint chunked=True, bytes footer=b"", int deflate=0,
                  Py_ssize_t deflate_min=0):
        self._seg = NULL
        self._off = NULL
        self._len = NULL
        self._ping_frame = NULL
        if kind not in KINDS:
            raise ValueError(f"unknown format kind {kind!r}; expected one of {sorted(KINDS)}")
        if isinstance(template, str):
            template = template.encode("utf-8")
        self.index = index
        self.kind = KINDS[kind]
        self.template = template
        self.head = head
        self.chunked = chunked
        self.ping = ping
        self.footer = footer
        if deflate and (self.kind != FK_WEBSOCKET or
                        not GG_PMD_MIN_BITS <= deflate <= GG_PMD_MAX_BITS):
            raise ValueError(f"deflate is a WebSocket window size in "
                             f"[{GG_PMD_MIN_BITS}, {GG_PMD_MAX_BITS}], not {deflate}")
        self.deflate = deflate
        self.deflate_min = deflate_min
        self._parse(template)
        if self.kind == FK_WEBSOCKET:
            if len(ping) > 125:
                raise ValueError("a WebSocket ping payload is at most 125 bytes (RFC 6455 §5.5)")
            self._ping_frame = ws_frame(PING, <const unsigned char *>PyBytes_AS_STRING(ping), len(ping))
        elif ping:
            self._ping_frame = frame_from(<const unsigned char *>PyBytes_AS_STRING(ping), len(ping))
        else:
            self._ping_frame = NULL

    def __dealloc__(self):
        free(self._seg)
        free(self._off)
        free(self._len)
        if self._ping_frame != NULL:
            frame_decref(self._ping_frame)

    cdef _parse(self, bytes template):
        # split "~token~" markers out of the template; unknown ~words~ stay literal text
        segs = []
        lits = bytearray()
        cdef Py_ssize_t i = 0, n = len(template), j
        start = 0
        while i < n:
            if template[i] == 0x7e:          # '~'
                j = template.find(b"~", i + 1)
                if j > 0 and template[i:j + 1] in TOKENS:
                    if i > start:
                        segs.append((TOKEN_LITERAL, len(lits), i - start))
                        lits += template[start:i]
                    segs.append((TOKENS[template[i:j + 1]], 0, 0))
                    i = j + 1
                    start = i
                    continue
            i += 1
        if n > start:
            segs.append((TOKEN_LITERAL, len(lits), n - start))
            lits += template[start:n]
        self._lits = bytes(lits)
        self._nseg = len(segs)
        self._seg = <int *>malloc(max(1, self._nseg) * sizeof(int))
        self._off = <Py_ssize_t *>malloc(max(1, self._nseg) * sizeof(Py_ssize_t))
        self._len = <Py_ssize_t *>malloc(max(1, self._nseg) * sizeof(Py_ssize_t))
        if self._seg == NULL or self._off == NULL or self._len == NULL:
            raise MemoryError()
        self._needs_json = False
        self._needs_meta_json = False
        for k, (kind, off, ln) in enumerate(segs):
            self._seg[k] = kind
            self._off[k] = off
            self._len[k] = ln
            if kind == TOKEN_TEXT_JSON:
                self._needs_json = True
            elif kind == TOKEN_EVENT_ID_JSON or kind == TOKEN_EVENT_TYPE_JSON:
                self._needs_meta_json = True
        self._raw = self._nseg == 1 and self._seg[0] == TOKEN_TEXT

    cdef Py_ssize_t _body(self, Message *m, unsigned char *dst) noexcept:
        """Render the template into dst (or only measure it when dst is NULL)."""
        cdef Py_ssize_t total = 0, n
        cdef int k
        cdef char num[NUM_MAX]
        cdef const char *p
        cdef const unsigned char *lits = <const unsigned char *>PyBytes_AS_STRING(self._lits)
        for k in range(self._nseg):
            p = NULL
            tok = self._seg[k]
            if tok == TOKEN_LITERAL:
                p = <const char *>lits + self._off[k]
                n = self._len[k]
            elif tok == TOKEN_TEXT:
                p = <const char *>m.data
                n = m.len
            elif tok == TOKEN_TEXT_JSON:
                p = <const char *>m.text_json
                n = m.text_json_len
            elif tok == TOKEN_CHANNEL:
                p = <const char *>m.channel
                n = m.channel_len
            elif tok == TOKEN_CHANNEL_JSON:
                p = <const char *>m.channel_json
                n = m.channel_json_len
            elif tok == TOKEN_ID:
                n = snprintf(num, NUM_MAX, "%lld", <long long>m.id)
                p = num
            elif tok == TOKEN_TAG:
                n = snprintf(num, NUM_MAX, "%d", m.tag)
                p = num
            elif tok == TOKEN_SIZE:
                n = snprintf(num, NUM_MAX, "%zd", m.len)
                p = num
            elif tok == TOKEN_TIME:
                n = http_date(m.time, &p)
            elif tok == TOKEN_EVENT_ID:
                p = <const char *>m.event_id
                n = m.event_id_len
            elif tok == TOKEN_EVENT_TYPE:
                p = <const char *>m.event_type
                n = m.event_type_len
            elif tok == TOKEN_EVENT_ID_JSON:
                p = <const char *>m.event_id_json
                n = m.event_id_json_len
            elif tok == TOKEN_EVENT_TYPE_JSON:
                p = <const char *>m.event_type_json
                n = m.event_type_json_len
            else:
                n = 0
            if dst != NULL and n > 0:
                memcpy(dst + total, p, n)
            total += n
        return total

    cdef Frame *render(self, Message *m) except? NULL:
        cdef Py_ssize_t size, hl, extra
        cdef Frame *f
        cdef const unsigned char *body
        cdef char line[128]
        if m.binary and self.kind == FK_WEBSOCKET:
            # a binary message goes out as it is (no template): a binary frame, compressed
            # on a permessage-deflate format
            if self.deflate and m.len >= self.deflate_min:
                f = pmd_frame(BINARY, m.data, m.len, self.deflate)
            else:
                f = ws_frame(BINARY, m.data, m.len)
            if f == NULL:
                raise MemoryError()
            return f
        if self._needs_json and m.text_json == NULL:
            m.text_json = _escaped(m.data, m.len, &m.text_json_len)
            if m.text_json == NULL:
                raise MemoryError()
        if self._needs_meta_json and m.event_id_json == NULL:
            # both at once: they are short, and a template naming one usually names the other
            m.event_id_json = _escaped(m.event_id, m.event_id_len, &m.event_id_json_len)
            m.event_type_json = _escaped(m.event_type, m.event_type_len, &m.event_type_json_len)
            if m.event_id_json == NULL or m.event_type_json == NULL:
                raise MemoryError()
        size = m.len if self._raw else self._body(m, NULL)

        if self.kind == FK_WEBSOCKET and self.deflate and size >= self.deflate_min:
            # permessage-deflate: rendered, then compressed once for every subscriber of this
            # format (the window size is part of the format)
            f = pmd_frame(TEXT, self._rendered(m, size), size, self.deflate)
            if f == NULL:
                raise MemoryError()
            return f

        if self.kind == FK_WEBSOCKET:
            f = frame_new(GG_WS_MAX_HEADER, size)
            if f == NULL:
                raise MemoryError()
            self._fill(m, f.data, size)
            hl = ws_write_header(f.data, TEXT, <unsigned long long>size, True)
            f.data -= hl
            f.len = size + hl
            return f

        if self.kind == FK_STREAM:
            f = frame_new(STREAM_HEADROOM, size + 2)
            if f == NULL:
                raise MemoryError()
            self._fill(m, f.data, size)
            f.len = size
            if self.chunked:
                hl = snprintf(line, sizeof(line), "%zx\r\n", size)
                f.data -= hl
                memcpy(f.data, line, hl)
                memcpy(f.data + hl + size, b"\r\n", 2)
                f.len = hl + size + 2
            return f

        # Long-poll and EventSource wrap the rendered body, then build the one shared frame.
        body = self._rendered(m, size)
        if self.kind == FK_LONGPOLL:
            return self._longpoll(m, body, size)
        f = _eventsource(m, body, size)
        if f == NULL:
            raise MemoryError()
        return f

    cdef const unsigned char *_rendered(self, Message *m, Py_ssize_t size) except NULL:
        """The rendered body, for a frame that wraps or compresses it: the payload itself for
        a raw template, else rendered into the scratch buffer (no allocation per publish once
        it has grown)."""
        cdef unsigned char *body
        if self._raw:
            return m.data if m.data != NULL else <const unsigned char *>b""
        body = _scratch_reserve(size)
        if body == NULL:
            raise MemoryError()
        self._body(m, body)
        return body

    cdef void _fill(self, Message *m, unsigned char *dst, Py_ssize_t size) noexcept:
        if self._raw:
            memcpy(dst, m.data, size)
        else:
            self._body(m, dst)

    cdef Frame *_longpoll(self, Message *m, const unsigned char *body, Py_ssize_t n) except NULL:
        cdef const char *date
        cdef Py_ssize_t dlen = http_date(m.time, &date)
        cdef char extra[256]
        cdef Py_ssize_t hn = len(self.head)
        cdef int en = snprintf(extra, sizeof(extra),
                               "Last-Modified: %.*s\r\nEtag: W/%d\r\nContent-Length: %zd\r\n\r\n",
                               <int>dlen, date, m.tag, n)
        cdef Frame *f = frame_new(0, hn + en + n)
        if f == NULL:
            raise MemoryError()
        memcpy(f.data, PyBytes_AS_STRING(self.head), hn)
        memcpy(f.data + hn, extra, en)
        memcpy(f.data + hn + en, body, n)
        f.len = hn + en + n
        return f

    cdef Frame *ping_frame(self):
        return self._ping_frame

    def render_bytes(self, bytes payload, *, int64_t id=1, int64_t time=0, int tag=0,
                     str channel="ch", bytes event_id=b"", bytes event_type=b"",
                     bint binary=False):
        """Render one message as this format would send it (tests, the Python layer)."""
        cdef Message m
        cdef bytes ch = channel.encode("utf-8")
        cdef bytes chj = json_escape(ch)
        memset(&m, 0, sizeof(Message))
        m.data = <const unsigned char *>PyBytes_AS_STRING(payload)
        m.len = len(payload)
        m.binary = binary
        m.id = id
        m.time = time
        m.tag = tag
        m.channel = <const unsigned char *>PyBytes_AS_STRING(ch)
        m.channel_len = len(ch)
        m.channel_json = <const unsigned char *>PyBytes_AS_STRING(chj)
        m.channel_json_len = len(chj)
        m.event_id = <const unsigned char *>PyBytes_AS_STRING(event_id)
        m.event_id_len = len(event_id)
        m.event_type = <const unsigned char *>PyBytes_AS_STRING(event_type)
        m.event_type_len = len(event_type)
        cdef Frame *f
        try:
            f = self.render(&m)
            out = f.data[:f.len]
            frame_decref(f)
            return out
        finally:
            message_release(&m)

    def __repr__(self):
        return f"<Format #{self.index} kind={self.kind} template={self.template!r}>"


cdef unsigned char *_escaped(const unsigned char *p, Py_ssize_t n, Py_ssize_t *out_len) noexcept nogil:
    # A malloc'ed JSON-escaped copy of p[0:n] (at least one byte, so NULL means no memory).
    out_len[0] = json_escaped_size(p, n)
    cdef unsigned char *d = <unsigned char *>malloc(out_len[0] + 1)
    if d != NULL:
        json_escape_into(p, n, d)
    return d


cdef void message_release(Message *m) noexcept nogil:
    free(m.text_json)
    free(m.event_id_json)
    free(m.event_type_json)
    m.text_json = NULL
    m.event_id_json = NULL
    m.event_type_json = NULL


cdef inline Py_ssize_t _field_copy(unsigned char *d, const unsigned char *src,
                                   Py_ssize_t n) noexcept nogil:
    # An EventSource field is one line: a CR or LF would end it and forge the lines after it.
    # Publishing refuses such ids and types (event_field_error); the core drops the bytes too,
    # for whatever else calls Hub.publish.
    cdef Py_ssize_t i, o = 0
    for i in range(n):
        if src[i] != 10 and src[i] != 13:
            d[o] = src[i]
            o += 1
    return o


cdef Frame *_eventsource(Message *m, const unsigned char *body, Py_ssize_t n) noexcept:
    """text/event-stream event (HTML Living Standard §9.2.6): one data: line per body line."""
    cdef Py_ssize_t i, lines = 1, size, o = 0
    for i in range(n):
        # CR, LF and CRLF each end a line for an EventSource parser
        if body[i] == 10 or (body[i] == 13 and (i + 1 >= n or body[i + 1] != 10)):
            lines += 1
    size = lines * 7 + n + 1     # "data: " + "\n" per line, the body, the blank line
    if m.event_id_len:
        size += 5 + m.event_id_len   # "id: " + "\n"
    if m.event_type_len:
        size += 8 + m.event_type_len  # "event: " + "\n"
    cdef Frame *f = frame_new(0, size)
    if f == NULL:
        return NULL
    cdef unsigned char *d = f.data
    if m.event_id_len:
        memcpy(d + o, b"id: ", 4); o += 4
        o += _field_copy(d + o, m.event_id, m.event_id_len)
        d[o] = 10; o += 1
    if m.event_type_len:
        memcpy(d + o, b"event: ", 7); o += 7
        o += _field_copy(d + o, m.event_type, m.event_type_len)
        d[o] = 10; o += 1
    memcpy(d + o, b"data: ", 6); o += 6
    i = 0
    while i < n:
        if body[i] == 10 or body[i] == 13:
            if body[i] == 13 and i + 1 < n and body[i + 1] == 10:
                i += 1
            d[o] = 10; o += 1
            memcpy(d + o, b"data: ", 6); o += 6
        else:
            d[o] = body[i]; o += 1
        i += 1
    d[o] = 10; o += 1
    d[o] = 10; o += 1
    f.len = o
    return f


cdef Frame *ws_frame(int opcode, const unsigned char *data, Py_ssize_t n) noexcept nogil:
    cdef Frame *f = frame_new(GG_WS_MAX_HEADER, n)
    cdef Py_ssize_t hl
    if f == NULL:
        return NULL
    if n:
        memcpy(f.data, data, n)
    hl = ws_write_header(f.data, opcode, <unsigned long long>n, True)
    f.data -= hl
    f.len = n + hl
    return f
