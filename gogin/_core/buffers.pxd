# SharedFrame (a refcounted byte buffer written once and sent to many sockets) and OutQueue
# (a per-connection ring of frame references, drained with writev).  No syscalls here.

from posix.uio cimport iovec

cdef struct Frame:
    Py_ssize_t refs            # owners: the publisher while building + one per queue entry
    Py_ssize_t len             # bytes to send, starting at data
    Py_ssize_t cap             # usable bytes from base (headroom + payload room)
    unsigned char *data        # first byte to send (inside base, after any unused headroom)
    unsigned char *base        # start of the allocation's storage
    Py_ssize_t msgs            # messages in the frame (> 1: a channel's corked batch)

cdef struct OutQueue:
    Frame **items              # ring of frame references
    Py_ssize_t head            # index of the oldest entry
    Py_ssize_t count           # entries in the ring
    Py_ssize_t cap             # ring capacity (power of two)
    Py_ssize_t offset          # bytes of items[head] already written
    Py_ssize_t bytes           # bytes queued and not yet written


# One frame with `headroom` bytes in front of `room` payload bytes; data points at the payload
# start, len = 0.  refs = 1.  NULL when out of memory.
cdef Frame *frame_new(Py_ssize_t headroom, Py_ssize_t room) noexcept nogil
cdef Frame *frame_from(const unsigned char *src, Py_ssize_t n) noexcept nogil
# Append n bytes to a frame nobody else references yet (refs == 1), growing it (the frame may
# move: use the returned pointer).  NULL when out of memory (the old frame is left intact).
cdef Frame *frame_append(Frame *f, const unsigned char *src, Py_ssize_t n) noexcept nogil
cdef void frame_incref(Frame *f) noexcept nogil
cdef void frame_decref(Frame *f) noexcept nogil

cdef void outq_init(OutQueue *q) noexcept nogil
cdef void outq_clear(OutQueue *q) noexcept nogil          # drops every reference, frees the ring
cdef int outq_push(OutQueue *q, Frame *f) noexcept nogil  # takes a new reference; -1 when out of memory
# Fill at most `maxiov` iovecs from the front of the queue; returns how many.
cdef int outq_iov(OutQueue *q, iovec *iov, int maxiov) noexcept nogil
# `n` bytes were written: advance, dropping the references of completed frames.
# Returns how many frames were completed.
cdef Py_ssize_t outq_consume(OutQueue *q, Py_ssize_t n) noexcept nogil
