# permessage-deflate (RFC 7692) without context takeover, sans-I/O: a message is compressed on
# its own (so one compressed frame serves every subscriber that negotiated the same window)
# and a client message is inflated on its own (gogin always answers client_no_context_takeover,
# so no connection keeps a 32 KiB window).  No syscalls here.

from gogin._core.buffers cimport Frame

cdef enum:
    GG_PMD_MIN_BITS = 9        # RFC 7692 §7.1.2.1 allows 8..15, but zlib has no 8-bit raw
                               # deflate window (it would use 9): offers of 8 are declined
    GG_PMD_MAX_BITS = 15

cdef struct PmdStats:
    long long compressed       # messages compressed (once per message per window size)
    long long bytes_in         # bytes before compression
    long long bytes_out        # bytes after (without the frame header)
    long long inflated         # client messages inflated

cdef PmdStats *pmd_counters() noexcept nogil

# A WebSocket frame (FIN, RSV1 set) of data[0:n] compressed with `bits` of window; NULL when
# out of memory.  Trailing 00 00 ff ff removed (§7.2.1).
cdef Frame *pmd_frame(int opcode, const unsigned char *data, Py_ssize_t n, int bits) noexcept nogil
# Inflate one client message (§7.2.2: 00 00 ff ff appended).  0 ok (*out malloc'ed, the caller
# frees it), -1 larger than max_out, -2 not a valid deflate stream, -3 out of memory.
cdef int pmd_inflate(const unsigned char *data, Py_ssize_t n, Py_ssize_t max_out,
                     unsigned char **out, Py_ssize_t *out_len) noexcept nogil
