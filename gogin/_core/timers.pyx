# cython: language_level=3, boundscheck=False, wraparound=False
"""The timing wheel (timers.pxd): no syscalls, no Python; TimerTester drives it in tests."""

cimport cython
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

from gogin._core.connection cimport Conn, conn_init


cdef void wheel_init(Wheel *w) noexcept nogil:
    memset(w, 0, sizeof(Wheel))


cdef inline void _unlink(Wheel *w, Conn *c) noexcept nogil:
    if c.wprev != NULL:
        c.wprev.wnext = c.wnext
    else:
        w.slots[c.wslot] = c.wnext
    if c.wnext != NULL:
        c.wnext.wprev = c.wprev
    c.wslot = -1
    c.wnext = c.wprev = NULL


cdef void wheel_set(Wheel *w, Conn *c, int64_t at) noexcept nogil:
    cdef int slot
    if c.wslot >= 0:
        _unlink(w, c)
    c.deadline = at
    if at <= 0:
        return
    if at <= w.now:
        at = w.now + 1
        c.deadline = at
    slot = <int>(at & WHEEL_MASK)
    c.wslot = slot
    c.wprev = NULL
    c.wnext = w.slots[slot]
    if c.wnext != NULL:
        c.wnext.wprev = c
    w.slots[slot] = c


cdef Conn *wheel_advance(Wheel *w, int64_t now) noexcept nogil:
    cdef Conn *due = NULL
    cdef Conn *c
    cdef Conn *nxt
    cdef int64_t t = w.now
    cdef int steps = 0
    cdef int slot
    while t < now and steps < WHEEL_SLOTS:
        t += 1
        steps += 1
        slot = <int>(t & WHEEL_MASK)
        c = w.slots[slot]
        w.slots[slot] = NULL
        # the slot's list, detached: what is due goes out, a later lap's goes back
        while c != NULL:
            nxt = c.wnext
            c.wslot = -1
            c.wnext = c.wprev = NULL
            if c.deadline <= now:
                c.deadline = 0
                c.wnext = due
                due = c
            else:
                wheel_set(w, c, c.deadline)
            c = nxt
    if now > w.now:
        w.now = now
    return due


@cython.final
cdef class TimerTester:
    """Test-only: a wheel and `n` bare connections (numbered 0..n-1)."""
    cdef Wheel w
    cdef Conn *conns
    cdef int n

    def __cinit__(self, int n):
        self.n = n
        wheel_init(&self.w)
        self.conns = <Conn *>calloc(n, sizeof(Conn))
        if self.conns == NULL:
            raise MemoryError()
        for i in range(n):
            conn_init(&self.conns[i])
            self.conns[i].fd = i

    def __dealloc__(self):
        free(self.conns)

    def set(self, int i, int64_t at):
        wheel_set(&self.w, &self.conns[i], at)

    def deadline(self, int i):
        return self.conns[i].deadline

    def advance(self, int64_t now):
        """The numbers of the connections due at `now`, sorted."""
        cdef Conn *c = wheel_advance(&self.w, now)
        cdef Conn *nxt
        out = []
        while c != NULL:
            nxt = c.wnext
            c.wnext = NULL
            out.append(c.fd)
            c = nxt
        return sorted(out)

    @property
    def now(self):
        return self.w.now
