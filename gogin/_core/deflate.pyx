# cython: language_level=3
"""permessage-deflate (RFC 7692) for the fanout: compress a message once, inflate one.

gogin negotiates server_no_context_takeover and client_no_context_takeover (parse_offer, in
Python), so every message is a deflate stream of its own: the compressed frame of a message is
the same bytes for every subscriber that negotiated the same window size, and it is built once
per message (pmd_stats.compressed counts it), like every other frame.  One zlib stream per
window size serves the whole process (reset per message); the core is single-threaded.
"""

cimport cython
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy

from gogin._core.buffers cimport Frame, frame_new, frame_decref
from gogin._core.frames cimport ws_write_header, GG_WS_MAX_HEADER, TEXT, BINARY

cdef extern from "zlib.h" nogil:
    ctypedef struct z_stream:
        const unsigned char *next_in
        unsigned int avail_in
        unsigned char *next_out
        unsigned int avail_out
        const char *msg
        void *zalloc
        void *zfree
        void *opaque
    int Z_OK, Z_STREAM_END, Z_BUF_ERROR, Z_SYNC_FLUSH, Z_DEFLATED, Z_DEFAULT_STRATEGY
    int deflateInit2(z_stream *strm, int level, int method, int windowBits, int memLevel,
                     int strategy)
    int deflate(z_stream *strm, int flush)
    int deflateReset(z_stream *strm)
    unsigned long deflateBound(z_stream *strm, unsigned long sourceLen)
    int inflateInit2(z_stream *strm, int windowBits)
    int inflate(z_stream *strm, int flush)
    int inflateReset(z_stream *strm)

cdef enum:
    LEVEL = 6                  # zlib's default: notification JSON compresses well at it
    MEM_LEVEL = 8              # zlib's default (256 KiB of state for a 15-bit window)
    INFLATE_START = 4096       # first output buffer of an inflate; doubled as needed

cdef PmdStats pmd_stats          # process-wide counters (stats())
cdef z_stream _deflaters[GG_PMD_MAX_BITS + 1]      # index: window bits; made on first use
cdef bint _deflater_ready[GG_PMD_MAX_BITS + 1]
cdef z_stream _inflater
cdef bint _inflater_ready = False
cdef const unsigned char *TAIL = b"\x00\x00\xff\xff"   # §7.2.1: the end of a sync flush


cdef PmdStats *pmd_counters() noexcept nogil:
    return &pmd_stats


cdef z_stream *_deflater(int bits) noexcept nogil:
    cdef z_stream *s = &_deflaters[bits]
    if not _deflater_ready[bits]:
        s.zalloc = NULL
        s.zfree = NULL
        s.opaque = NULL
        if deflateInit2(s, LEVEL, Z_DEFLATED, -bits, MEM_LEVEL, Z_DEFAULT_STRATEGY) != Z_OK:
            return NULL
        _deflater_ready[bits] = True
    else:
        deflateReset(s)
    return s


cdef Frame *pmd_frame(int opcode, const unsigned char *data, Py_ssize_t n, int bits) noexcept nogil:
    cdef z_stream *s
    cdef Frame *f
    cdef Py_ssize_t room, out, hl
    if bits < GG_PMD_MIN_BITS or bits > GG_PMD_MAX_BITS:
        bits = GG_PMD_MAX_BITS       # callers pass a negotiated size; never out of range
    s = _deflater(bits)
    if s == NULL:
        return NULL
    room = <Py_ssize_t>deflateBound(s, <unsigned long>n) + 16   # + the sync flush's block
    f = frame_new(GG_WS_MAX_HEADER, room)
    if f == NULL:
        return NULL
    s.next_in = data
    s.avail_in = <unsigned int>n
    s.next_out = f.data
    s.avail_out = <unsigned int>room
    if deflate(s, Z_SYNC_FLUSH) != Z_OK or s.avail_in != 0 or s.avail_out == 0:
        frame_decref(f)
        return NULL
    out = room - s.avail_out
    if out >= 4:
        out -= 4                           # §7.2.1: drop the 00 00 ff ff the flush ended with
    hl = ws_write_header(f.data, opcode, <unsigned long long>out, True)
    f.data -= hl
    f.data[0] |= 0x40                      # RSV1: this message is compressed (§6)
    f.len = out + hl
    pmd_stats.compressed += 1
    pmd_stats.bytes_in += n
    pmd_stats.bytes_out += out
    return f


cdef int _run_inflate(z_stream *s, unsigned char **buf, Py_ssize_t *cap, Py_ssize_t *used,
                      Py_ssize_t max_out) noexcept nogil:
    # Inflate what is in s.next_in into buf (grown as needed); 0 done with this input.
    cdef int rc
    cdef unsigned char *nb
    cdef Py_ssize_t ncap
    while True:
        if used[0] == cap[0]:
            if cap[0] > max_out:
                return -1
            ncap = cap[0] * 2
            if ncap > max_out + 1:
                ncap = max_out + 1
            nb = <unsigned char *>realloc(buf[0], ncap)
            if nb == NULL:
                return -3
            buf[0] = nb
            cap[0] = ncap
        s.next_out = buf[0] + used[0]
        s.avail_out = <unsigned int>(cap[0] - used[0])
        rc = inflate(s, Z_SYNC_FLUSH)
        used[0] = cap[0] - s.avail_out
        if used[0] > max_out:
            return -1
        if rc == Z_STREAM_END:
            return 1                       # a final block: whatever follows is not data
        if rc != Z_OK and rc != Z_BUF_ERROR:
            return -2
        if s.avail_in == 0 and s.avail_out > 0:
            return 0
        if rc == Z_BUF_ERROR and s.avail_out > 0:
            return -2                      # no progress with room left: a broken stream


cdef int pmd_inflate(const unsigned char *data, Py_ssize_t n, Py_ssize_t max_out,
                     unsigned char **out, Py_ssize_t *out_len) noexcept nogil:
    global _inflater_ready
    cdef z_stream *s = &_inflater
    cdef Py_ssize_t cap = INFLATE_START if INFLATE_START <= max_out + 1 else max_out + 1
    cdef Py_ssize_t used = 0
    cdef int r
    cdef unsigned char *buf
    if not _inflater_ready:
        s.zalloc = NULL
        s.zfree = NULL
        s.opaque = NULL
        s.next_in = NULL
        s.avail_in = 0
        if inflateInit2(s, -GG_PMD_MAX_BITS) != Z_OK:    # a 15-bit window reads any window
            return -3
        _inflater_ready = True
    else:
        inflateReset(s)
    buf = <unsigned char *>malloc(cap if cap > 0 else 1)
    if buf == NULL:
        return -3
    s.next_in = data
    s.avail_in = <unsigned int>n
    r = _run_inflate(s, &buf, &cap, &used, max_out)
    if r == 0:
        s.next_in = TAIL
        s.avail_in = 4
        r = _run_inflate(s, &buf, &cap, &used, max_out)
    if r < 0:
        free(buf)
        return r
    pmd_stats.inflated += 1
    out[0] = buf
    out_len[0] = used
    return 0


# -- Python-visible helpers (tests, stats) ---------------------------------------------------

def compress_message(data, int bits=15, bint binary=False):
    """The frame gogin sends for a message on a connection with this window (tests)."""
    cdef bytes b = bytes(data)
    cdef Frame *f = pmd_frame(BINARY if binary else TEXT, b, len(b), bits)
    if f == NULL:
        raise MemoryError()
    try:
        return f.data[:f.len]
    finally:
        frame_decref(f)


def inflate_message(data, Py_ssize_t max_size=1 << 20):
    """A client message's payload inflated as gogin does; ValueError when it is invalid or
    larger than max_size (tests)."""
    cdef bytes b = bytes(data)
    cdef unsigned char *out = NULL
    cdef Py_ssize_t n = 0
    cdef int r = pmd_inflate(b, len(b), max_size, &out, &n)
    if r == -1:
        raise ValueError("message too big")
    if r == -2:
        raise ValueError("invalid deflate data")
    if r < 0:
        raise MemoryError()
    try:
        return out[:n]
    finally:
        free(out)


def stats():
    """Process-wide counters: messages compressed (once each per window size), bytes in and
    out of compression, client messages inflated."""
    return {"compressed": pmd_stats.compressed, "bytes_in": pmd_stats.bytes_in,
            "bytes_out": pmd_stats.bytes_out, "inflated": pmd_stats.inflated}
