# cython: freethreading_compatible=False
"""SharedFrame and OutQueue: the zero-copy half of the fanout path.

A publish renders its bytes once into a Frame; every subscriber's OutQueue holds a pointer to
that Frame (refcount + 1), never a copy.  The flush builds an iovec array straight from the
queue, so a burst of messages to one subscriber leaves as one writev.
"""

from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from posix.uio cimport iovec

cdef Py_ssize_t frames_allocated = 0
cdef Py_ssize_t frames_live = 0

cdef enum:
    DEF_RING = 8   # first ring capacity: most subscribers hold a few frames at most


cdef Frame *frame_new(Py_ssize_t headroom, Py_ssize_t room) noexcept nogil:
    global frames_allocated, frames_live
    # header and storage in one allocation: one malloc per published frame per wire format
    cdef Frame *f = <Frame *>malloc(sizeof(Frame) + headroom + room)
    if f == NULL:
        return NULL
    f.refs = 1
    f.base = (<unsigned char *>f) + sizeof(Frame)
    f.cap = headroom + room
    f.data = f.base + headroom
    f.len = 0
    f.msgs = 1
    frames_allocated += 1
    frames_live += 1
    return f


cdef Frame *frame_from(const unsigned char *src, Py_ssize_t n) noexcept nogil:
    cdef Frame *f = frame_new(0, n)
    if f != NULL:
        memcpy(f.data, src, n)
        f.len = n
    return f


cdef Frame *frame_append(Frame *f, const unsigned char *src, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t head = f.data - f.base, room = f.cap - head - f.len, cap
    cdef Frame *nf
    if room < n:
        cap = f.cap * 2
        while cap - head - f.len < n:
            cap *= 2
        nf = <Frame *>realloc(f, sizeof(Frame) + cap)
        if nf == NULL:
            return NULL
        nf.base = (<unsigned char *>nf) + sizeof(Frame)
        nf.data = nf.base + head
        nf.cap = cap
        f = nf
    memcpy(f.data + f.len, src, n)
    f.len += n
    return f


cdef void frame_incref(Frame *f) noexcept nogil:
    f.refs += 1


cdef void frame_decref(Frame *f) noexcept nogil:
    global frames_live
    f.refs -= 1
    if f.refs == 0:
        frames_live -= 1
        free(f)


cdef void outq_init(OutQueue *q) noexcept nogil:
    q.items = NULL
    q.head = 0
    q.count = 0
    q.cap = 0
    q.offset = 0
    q.bytes = 0


cdef void outq_clear(OutQueue *q) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(q.count):
        frame_decref(q.items[(q.head + i) & (q.cap - 1)])
    free(q.items)
    outq_init(q)


cdef int _outq_grow(OutQueue *q) noexcept nogil:
    cdef Py_ssize_t newcap = q.cap * 2 if q.cap else DEF_RING
    cdef Frame **items = <Frame **>malloc(newcap * sizeof(Frame *))
    cdef Py_ssize_t i
    if items == NULL:
        return -1
    # unroll the ring into the front of the new array
    for i in range(q.count):
        items[i] = q.items[(q.head + i) & (q.cap - 1)]
    free(q.items)
    q.items = items
    q.head = 0
    q.cap = newcap
    return 0


cdef int outq_push(OutQueue *q, Frame *f) noexcept nogil:
    if q.count == q.cap and _outq_grow(q) < 0:
        return -1
    q.items[(q.head + q.count) & (q.cap - 1)] = f
    q.count += 1
    q.bytes += f.len
    f.refs += 1
    return 0


cdef int outq_iov(OutQueue *q, iovec *iov, int maxiov) noexcept nogil:
    cdef int n = 0
    cdef Frame *f
    cdef Py_ssize_t off = q.offset
    while n < maxiov and n < q.count:
        f = q.items[(q.head + n) & (q.cap - 1)]
        iov[n].iov_base = f.data + off
        iov[n].iov_len = <size_t>(f.len - off)
        off = 0
        n += 1
    return n


cdef Py_ssize_t outq_consume(OutQueue *q, Py_ssize_t n) noexcept nogil:
    cdef Frame *f
    cdef Py_ssize_t left, done = 0
    q.bytes -= n
    while n > 0 and q.count > 0:
        f = q.items[q.head]
        left = f.len - q.offset
        if n < left:
            q.offset += n
            return done
        done += f.msgs
        n -= left
        q.offset = 0
        q.head = (q.head + 1) & (q.cap - 1)
        q.count -= 1
        frame_decref(f)
    return done


def frame_counters():
    """(allocated since start, alive now): lets tests prove one frame per publish per format."""
    return frames_allocated, frames_live


cdef class _QueueProbe:
    """Test harness over an OutQueue (sans-I/O): push byte strings, take iovecs, consume."""
    cdef OutQueue q

    def __cinit__(self):
        outq_init(&self.q)

    def __dealloc__(self):
        outq_clear(&self.q)

    def push(self, bytes data):
        cdef Frame *f = frame_from(<const unsigned char *>data, len(data))
        if f == NULL:
            raise MemoryError()
        if outq_push(&self.q, f) < 0:
            frame_decref(f)
            raise MemoryError()
        frame_decref(f)

    def pending(self, int maxiov=1024):
        cdef iovec iov[64]
        cdef int n = outq_iov(&self.q, iov, min(maxiov, 64))
        return [(<unsigned char *>iov[i].iov_base)[:iov[i].iov_len] for i in range(n)]

    def consume(self, Py_ssize_t n):
        if n < 0 or n > self.q.bytes:
            raise ValueError("consume beyond the queued bytes")
        outq_consume(&self.q, n)

    @property
    def bytes(self):
        return self.q.bytes

    @property
    def count(self):
        return self.q.count
