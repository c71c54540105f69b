# cython: language_level=3
"""RFC 6455 codec (sans-I/O): server frame headers, client frame parser, UTF-8 and close checks.

No syscalls here.  The parser is incremental: bytes may arrive one at a time or many frames at
once; ``ws_parser_feed`` returns one event at a time and the caller feeds the rest again.
"""

cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING

import base64
import hashlib


# Björn Höhrmann's UTF-8 DFA (http://bjoern.hoehrmann.de/utf-8/decoder/dfa/), the
# "reduced table" variant: 256 byte classes, then transitions indexed by state + class.
# It rejects overlongs, surrogates (U+D800..DFFF) and code points above U+10FFFF, which is
# exactly RFC 3629 as required by RFC 6455 §8.1.
cdef extern from *:
    """
    static const unsigned char gg_utf8d[364] = {
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
      1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,9,
      7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,
      8,8,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,
      10,3,3,3,3,3,3,3,3,3,3,3,3,4,3,3, 11,6,6,6,5,8,8,8,8,8,8,8,8,8,8,8,
      0,12,24,36,60,96,84,12,12,12,48,72, 12,12,12,12,12,12,12,12,12,12,12,12,
      12, 0,12,12,12,12,12, 0,12, 0,12,12, 12,24,12,12,12,12,12,24,12,24,12,12,
      12,12,12,12,12,12,12,24,12,12,12,12, 12,24,12,12,12,12,12,12,12,24,12,12,
      12,12,12,12,12,12,12,36,12,36,12,12, 12,36,12,12,12,12,12,36,12,36,12,12,
      12,36,12,12,12,12,12,12,12,12,12,12,
    };
    """
    const unsigned char gg_utf8d[364]


cdef enum:
    GG_UTF8_ACCEPT = 0           # DFA state: at a code point boundary
    GG_UTF8_REJECT = 12          # DFA state: invalid (sticky)
    GG_WS_MIN_BUF = 1024         # first message buffer allocation
    GG_WS_KEEP_BUF = 16384       # keep a message buffer up to this size between messages

cdef enum:
    ST_HEADER = 0                # collecting the frame header into p.hdr
    ST_PAYLOAD = 1               # reading (and unmasking) the payload

cdef uint64_t ASCII_MASK = 0x8080808080808080ULL   # high bit of every byte of a word


# ---------------------------------------------------------------------------------------------
# UTF-8

@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline uint32_t _utf8_run(uint32_t state, const unsigned char *s, Py_ssize_t n) noexcept nogil:
    # Returns the DFA state after s[0:n]; stops at the first rejected byte (fail fast).
    cdef Py_ssize_t i = 0
    cdef uint64_t w
    while i < n:
        if state == GG_UTF8_ACCEPT:
            # ASCII fast path: 8 bytes at a time while no byte has its high bit set
            while i + 8 <= n:
                memcpy(&w, s + i, 8)
                if w & ASCII_MASK:
                    break
                i += 8
            if i >= n:
                break
        state = gg_utf8d[256 + state + gg_utf8d[s[i]]]
        if state == GG_UTF8_REJECT:
            return state
        i += 1
    return state


cdef bint utf8_valid(const unsigned char *data, Py_ssize_t n) noexcept nogil:
    return _utf8_run(GG_UTF8_ACCEPT, data, n) == GG_UTF8_ACCEPT


# ---------------------------------------------------------------------------------------------
# Server frames

cdef Py_ssize_t ws_header_size(uint64_t length) noexcept nogil:
    # RFC 6455 §5.2: 7-bit length up to 125, 126 + 16-bit, 127 + 64-bit; servers never mask
    if length <= 125:
        return 2
    if length <= 0xFFFF:
        return 4
    return 10


cdef Py_ssize_t ws_write_header(unsigned char *end, int opcode, uint64_t length, bint fin) noexcept nogil:
    cdef Py_ssize_t hl = ws_header_size(length)
    cdef unsigned char *h = end - hl
    cdef int i
    h[0] = <unsigned char>((0x80 if fin else 0) | (opcode & 0x0F))
    if hl == 2:
        h[1] = <unsigned char>length
    elif hl == 4:
        h[1] = 126
        h[2] = <unsigned char>(length >> 8)
        h[3] = <unsigned char>length
    else:
        h[1] = 127
        for i in range(8):
            h[2 + i] = <unsigned char>(length >> (56 - 8 * i))
    return hl


# ---------------------------------------------------------------------------------------------
# Client frame parser

cdef void ws_parser_init(WsParser *p, Py_ssize_t max_message_size) noexcept nogil:
    memset(p, 0, sizeof(WsParser))
    p.state = ST_HEADER
    p.hdr_need = 2
    p.max_message_size = max_message_size if max_message_size > 0 else 0
    p.utf8_state = GG_UTF8_ACCEPT
    p.require_mask = True          # RFC 6455 §5.1: a server must fail unmasked client frames


cdef void ws_parser_free(WsParser *p) noexcept nogil:
    free(p.buf)
    p.buf = NULL
    free(p.ctl)
    p.ctl = NULL
    p.buf_len = 0
    p.buf_cap = 0
    p.release = False


@cython.boundscheck(False)
@cython.wraparound(False)
cdef inline void _unmask_copy(unsigned char *dst, const unsigned char *src, Py_ssize_t n,
                              const uint8_t *mask, uint64_t off) noexcept nogil:
    # RFC 6455 §5.3: byte i of the payload is XORed with mask[i % 4].  Eight bytes at a time
    # with a 64-bit mask rotated to the payload offset; memcpy keeps unaligned access defined.
    cdef uint8_t mk[8]
    cdef uint64_t m64, w
    cdef Py_ssize_t i = 0
    cdef int j, r = <int>(off & 3)
    for j in range(8):
        mk[j] = mask[(r + j) & 3]
    memcpy(&m64, mk, 8)
    while i + 32 <= n:
        memcpy(&w, src + i, 8); w ^= m64; memcpy(dst + i, &w, 8)
        memcpy(&w, src + i + 8, 8); w ^= m64; memcpy(dst + i + 8, &w, 8)
        memcpy(&w, src + i + 16, 8); w ^= m64; memcpy(dst + i + 16, &w, 8)
        memcpy(&w, src + i + 24, 8); w ^= m64; memcpy(dst + i + 24, &w, 8)
        i += 32
    while i + 8 <= n:
        memcpy(&w, src + i, 8)
        w ^= m64
        memcpy(dst + i, &w, 8)
        i += 8
    while i < n:
        dst[i] = src[i] ^ mk[i & 7]
        i += 1


cdef inline int _fail(WsParser *p, WsFrameEvent *ev, int code, const char *reason) noexcept nogil:
    p.failed = True
    ev.opcode = p.opcode
    ev.code = code
    ev.reason = reason
    return WS_ERROR


cdef inline bint _close_code_ok(int code) noexcept nogil:
    # RFC 6455 §7.4.1/§7.4.2 + IANA registry: 1004-1006 and 1015 must never be sent on the wire
    if 1000 <= code <= 1003:
        return True
    if 1007 <= code <= 1014:       # 1012-1014: IANA (service restart, try again, bad gateway)
        return True
    return 3000 <= code <= 4999    # registered libraries / private use


cdef inline int _reserve(WsParser *p, Py_ssize_t need) noexcept nogil:
    # Geometric growth, capped by max_message_size (need never exceeds it: checked at header).
    cdef Py_ssize_t cap
    cdef unsigned char *nb
    if need <= p.buf_cap:
        return 0
    cap = p.buf_cap * 2 if p.buf_cap else GG_WS_MIN_BUF
    if cap < need:
        cap = need
    if cap > p.max_message_size:
        cap = p.max_message_size if p.max_message_size >= need else need
    nb = <unsigned char *>realloc(p.buf, <size_t>cap)
    if nb == NULL:
        return -1
    p.buf = nb
    p.buf_cap = cap
    return 0


cdef inline int _check_first(WsParser *p, WsFrameEvent *ev, uint8_t b0) noexcept nogil:
    # First header byte: fail as soon as it arrives.
    cdef int op = b0 & 0x0F
    p.fin = (b0 & 0x80) != 0
    p.opcode = op
    if b0 & 0x30 or (b0 & 0x40 and not (p.deflate and 0x1 <= op <= 0x2)):
        # RFC 6455 §5.2: RSV bits must be 0 unless an extension defines them; permessage-
        # deflate defines RSV1, on the first frame of a data message only (RFC 7692 §6.1)
        return _fail(p, ev, PROTOCOL_ERROR, b"reserved bits set")
    if op > 0xA or (0x3 <= op <= 0x7):
        return _fail(p, ev, PROTOCOL_ERROR, b"unknown opcode")
    if op >= 0x8:
        if not p.fin:
            return _fail(p, ev, PROTOCOL_ERROR, b"fragmented control frame")  # §5.5
    elif op == CONTINUATION:
        if p.msg_opcode == 0:
            return _fail(p, ev, PROTOCOL_ERROR, b"continuation without a message")  # §5.4
    elif p.msg_opcode != 0:
        return _fail(p, ev, PROTOCOL_ERROR, b"new message inside a fragmented message")  # §5.4
    return WS_NONE


cdef inline int _check_second(WsParser *p, WsFrameEvent *ev, uint8_t b1) noexcept nogil:
    cdef int len7 = b1 & 0x7F
    p.masked = (b1 & 0x80) != 0
    if p.require_mask and not p.masked:
        return _fail(p, ev, PROTOCOL_ERROR, b"unmasked client frame")  # §5.1
    if p.opcode >= 0x8 and len7 > GG_WS_MAX_CONTROL:
        return _fail(p, ev, PROTOCOL_ERROR, b"control frame too long")  # §5.5
    if p.opcode >= 0x8 and p.ctl == NULL:
        p.ctl = <uint8_t *>malloc(GG_WS_MAX_CONTROL)
        if p.ctl == NULL:
            return _fail(p, ev, INTERNAL_ERROR, b"out of memory")
    # Non-minimal length encodings (126 + a length <= 125, ...) are accepted: some peers send them.
    p.hdr_need = 2 + (2 if len7 == 126 else 8 if len7 == 127 else 0) + (4 if p.masked else 0)
    return WS_NONE


cdef inline int _header_done(WsParser *p, WsFrameEvent *ev) noexcept nogil:
    cdef int len7 = p.hdr[1] & 0x7F
    cdef int k = 2, i
    cdef uint64_t length
    if len7 == 126:
        length = (<uint64_t>p.hdr[2] << 8) | p.hdr[3]
        k = 4
    elif len7 == 127:
        length = 0
        for i in range(8):
            length = (length << 8) | p.hdr[2 + i]
        k = 10
        if length >> 63:
            return _fail(p, ev, PROTOCOL_ERROR, b"invalid frame length")  # §5.2: MSB must be 0
    else:
        length = len7
    if p.masked:
        memcpy(p.mask, p.hdr + k, 4)
    p.frame_len = length
    p.frame_done = 0
    if p.opcode < 0x8:
        # Message size limit, from the header alone: never buffer an oversized message first.
        if length > <uint64_t>(p.max_message_size - p.buf_len):
            return _fail(p, ev, MESSAGE_TOO_BIG, b"message too big")
        if p.opcode != CONTINUATION:
            p.msg_opcode = p.opcode
            p.utf8_state = GG_UTF8_ACCEPT
            p.compressed = (p.hdr[0] & 0x40) != 0
    p.state = ST_PAYLOAD
    return WS_NONE


cdef inline int _frame_done(WsParser *p, WsFrameEvent *ev) noexcept nogil:
    # The whole payload of the current frame is in (buf or ctl).  Returns an event or WS_NONE.
    cdef int op = p.opcode
    cdef int code
    cdef Py_ssize_t n = <Py_ssize_t>p.frame_len
    p.state = ST_HEADER
    p.hdr_len = 0
    p.hdr_need = 2
    if op == PING or op == PONG:
        ev.opcode = op
        ev.data = p.ctl
        ev.len = n
        return WS_PING if op == PING else WS_PONG
    if op == CLOSE:
        ev.opcode = op
        if n == 0:
            ev.code = NO_STATUS       # §7.1.5: no status code present → 1005
            p.failed = True
            return WS_CLOSE
        if n == 1:
            return _fail(p, ev, PROTOCOL_ERROR, b"close frame too short")
        code = (p.ctl[0] << 8) | p.ctl[1]
        if not _close_code_ok(code):
            return _fail(p, ev, PROTOCOL_ERROR, b"invalid close code")
        if not utf8_valid(p.ctl + 2, n - 2):
            return _fail(p, ev, INVALID_DATA, b"invalid UTF-8 in close reason")
        ev.code = code
        ev.data = p.ctl + 2
        ev.len = n - 2
        p.failed = True
        return WS_CLOSE
    # data frame
    if not p.fin:
        return WS_NONE
    if p.msg_opcode == TEXT and not p.compressed and p.utf8_state != GG_UTF8_ACCEPT:
        return _fail(p, ev, INVALID_DATA, b"invalid UTF-8")   # truncated sequence at the end
    ev.opcode = p.msg_opcode
    ev.data = p.buf
    ev.len = p.buf_len
    ev.compressed = p.compressed
    p.compressed = False
    p.msg_opcode = 0
    p.utf8_state = GG_UTF8_ACCEPT
    p.release = True
    return WS_MESSAGE


@cython.boundscheck(False)
@cython.wraparound(False)
cdef int ws_parser_feed(WsParser *p, const unsigned char *data, Py_ssize_t n,
                        Py_ssize_t *consumed, WsFrameEvent *ev) noexcept nogil:
    cdef Py_ssize_t pos = 0, take
    cdef uint64_t left
    cdef unsigned char *dst
    cdef int r
    ev.opcode = 0
    ev.data = NULL
    ev.len = 0
    ev.code = 0
    ev.reason = NULL
    ev.compressed = False
    if p.failed:
        consumed[0] = n
        return WS_NONE
    if p.release:
        # The previous WS_MESSAGE pointed into buf: it is invalid from now on.
        p.release = False
        p.buf_len = 0
        if p.buf_cap > GG_WS_KEEP_BUF:
            # idle connections keep at most a small buffer
            free(p.buf)
            p.buf = NULL
            p.buf_cap = 0
    while True:
        if p.state == ST_HEADER:
            if p.hdr_len < 2:
                if pos >= n:
                    break
                if p.hdr_len == 0:
                    p.hdr[0] = data[pos]
                    pos += 1
                    p.hdr_len = 1
                    r = _check_first(p, ev, p.hdr[0])
                    if r != WS_NONE:
                        consumed[0] = pos
                        return r
                    if pos >= n:
                        break
                p.hdr[1] = data[pos]
                pos += 1
                p.hdr_len = 2
                r = _check_second(p, ev, p.hdr[1])
                if r != WS_NONE:
                    consumed[0] = pos
                    return r
            if p.hdr_len < p.hdr_need:
                take = p.hdr_need - p.hdr_len
                if take > n - pos:
                    take = n - pos
                memcpy(p.hdr + p.hdr_len, data + pos, <size_t>take)
                p.hdr_len += <int>take
                pos += take
                if p.hdr_len < p.hdr_need:
                    break
            r = _header_done(p, ev)
            if r != WS_NONE:
                consumed[0] = pos
                return r
        # ST_PAYLOAD
        left = p.frame_len - p.frame_done
        if left:
            if pos >= n:
                break
            take = n - pos
            if <uint64_t>take > left:
                take = <Py_ssize_t>left
            if p.opcode >= 0x8:
                dst = p.ctl + p.frame_done
            else:
                if _reserve(p, p.buf_len + take) < 0:
                    consumed[0] = pos
                    return _fail(p, ev, INTERNAL_ERROR, b"out of memory")
                dst = p.buf + p.buf_len
            if p.masked:
                _unmask_copy(dst, data + pos, take, p.mask, p.frame_done)
            else:
                memcpy(dst, data + pos, <size_t>take)
            pos += take
            p.frame_done += <uint64_t>take
            if p.opcode < 0x8:
                p.buf_len += take
                if p.msg_opcode == TEXT and not p.compressed:
                    # RFC 6455 §8.1: fail fast, even in the middle of a frame (a compressed
                    # message is checked once inflated)
                    p.utf8_state = _utf8_run(p.utf8_state, dst, take)
                    if p.utf8_state == GG_UTF8_REJECT:
                        consumed[0] = pos
                        return _fail(p, ev, INVALID_DATA, b"invalid UTF-8")
            if p.frame_done < p.frame_len:
                break
        r = _frame_done(p, ev)
        if r != WS_NONE:
            consumed[0] = pos
            return r
    consumed[0] = pos
    return WS_NONE


# ---------------------------------------------------------------------------------------------
# Python-visible helpers (tests and the Python layer)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 §1.3


def accept_key(key):
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def utf8_check(data):
    """True if ``data`` (bytes-like) is valid UTF-8 per RFC 3629."""
    cdef const unsigned char[::1] mv = data
    if mv.shape[0] == 0:
        return True
    return utf8_valid(&mv[0], mv.shape[0])


def header_size(uint64_t length):
    """Length of the unmasked server frame header for a payload of ``length`` bytes."""
    return ws_header_size(length)


def encode_frame(int opcode, payload, bint fin=True, mask=None, int rsv=0):
    """One frame.  ``mask`` (4 bytes) → client-style masked frame; ``rsv`` is the 3-bit RSV
    field (4 = RSV1, 2 = RSV2, 1 = RSV3).  No validation: tests use it to build bad input."""
    cdef bytes pl = bytes(payload)
    cdef Py_ssize_t n = len(pl)
    cdef Py_ssize_t hl = ws_header_size(<uint64_t>n)
    cdef bytes mk
    cdef bytes out
    cdef unsigned char *o
    if mask is None:
        out = PyBytes_FromStringAndSize(NULL, hl + n)
        o = <unsigned char *>PyBytes_AS_STRING(out)
        ws_write_header(o + hl, opcode, <uint64_t>n, fin)
        o[0] |= <unsigned char>((rsv & 7) << 4)
        memcpy(o + hl, PyBytes_AS_STRING(pl), <size_t>n)
        return out
    mk = bytes(mask)
    if len(mk) != 4:
        raise ValueError("mask must be 4 bytes")
    out = PyBytes_FromStringAndSize(NULL, hl + 4 + n)
    o = <unsigned char *>PyBytes_AS_STRING(out)
    ws_write_header(o + hl, opcode, <uint64_t>n, fin)
    o[0] |= <unsigned char>((rsv & 7) << 4)
    o[1] |= 0x80
    memcpy(o + hl, PyBytes_AS_STRING(mk), 4)
    _unmask_copy(o + hl + 4, <const unsigned char *>PyBytes_AS_STRING(pl), n,
                 <const uint8_t *>PyBytes_AS_STRING(mk), 0)
    return out


def encode_close(int code, reason=""):
    """Close frame payload: 2-byte code (network order) + UTF-8 reason.  No validation."""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return bytes(((code >> 8) & 0xFF, code & 0xFF)) + bytes(reason)


@cython.final
cdef class FrameParser:
    """Python wrapper around WsParser (tests and the Python layer).

    ``feed(data)`` returns every event found, as tuples: ``("message", opcode, payload)``,
    ``("compressed", opcode, payload)`` (deflate=True: a message with RSV1, not inflated),
    ``("ping", payload)``, ``("pong", payload)``, ``("close", code, reason)``,
    ``("error", code, reason)``.
    """
    cdef WsParser _p

    def __cinit__(self, Py_ssize_t max_message_size=1 << 20, bint require_mask=True,
                  bint deflate=False):
        if max_message_size < 0:
            raise ValueError("max_message_size must be >= 0")
        ws_parser_init(&self._p, max_message_size)
        self._p.require_mask = require_mask
        self._p.deflate = deflate

    def __dealloc__(self):
        ws_parser_free(&self._p)

    @property
    def failed(self):
        return bool(self._p.failed)

    def feed(self, data):
        cdef const unsigned char[::1] mv = data
        cdef Py_ssize_t n = mv.shape[0], pos = 0, used
        cdef const unsigned char *base
        cdef WsFrameEvent ev
        cdef int r
        cdef list out = []
        if n == 0:
            return out
        base = &mv[0]
        while pos < n:
            with nogil:
                r = ws_parser_feed(&self._p, base + pos, n - pos, &used, &ev)
            pos += used
            if r == WS_NONE:
                break
            elif r == WS_MESSAGE:
                out.append(("compressed" if ev.compressed else "message", ev.opcode,
                            _bytes(ev.data, ev.len)))
            elif r == WS_PING:
                out.append(("ping", _bytes(ev.data, ev.len)))
            elif r == WS_PONG:
                out.append(("pong", _bytes(ev.data, ev.len)))
            elif r == WS_CLOSE:
                out.append(("close", ev.code, _bytes(ev.data, ev.len).decode("utf-8")))
            elif r == WS_ERROR:
                out.append(("error", ev.code, ev.reason.decode("ascii")))
        return out


cdef inline bytes _bytes(const unsigned char *p, Py_ssize_t n):
    if n == 0:
        return b""
    return PyBytes_FromStringAndSize(<const char *>p, n)


def _bench_feed(data, Py_ssize_t repeat=1, Py_ssize_t max_message_size=1 << 20):
    """Benchmark helper: feeds ``data`` ``repeat`` times into one parser, in C, without building
    Python objects.  Returns the number of events (errors count as -1000000)."""
    cdef const unsigned char[::1] mv = data
    cdef Py_ssize_t n = mv.shape[0], pos, used, k, events = 0
    cdef WsParser p
    cdef WsFrameEvent ev
    cdef int r
    if n == 0:
        return 0
    ws_parser_init(&p, max_message_size)
    with nogil:
        for k in range(repeat):
            pos = 0
            while pos < n:
                r = ws_parser_feed(&p, &mv[0] + pos, n - pos, &used, &ev)
                pos += used
                if r == WS_NONE:
                    break
                if r == WS_ERROR:
                    events -= 1000000
                    break
                events += 1
    ws_parser_free(&p)
    return events
