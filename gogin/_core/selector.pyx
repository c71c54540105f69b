# cython: language_level=3
"""Selector: a thin cdef class over the C backend contract in native/selector.h.

The hub calls the cdef methods (add/mod/remove/wait) without touching Python objects; the
Python-visible methods (register/modify/unregister/select) exist for tests and for the
Python side of the hub.  Backend choice is made in C (native/config.h), never here.
"""

cimport cython
from cpython.exc cimport PyErr_SetFromErrno, PyErr_CheckSignals
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.errno cimport errno, ENOMEM

READABLE = GG_READABLE  # readable, peer closed, or error
WRITABLE = GG_WRITABLE  # writable


def backends():
    """Names of the backends compiled in, most capable first (e.g. ['epoll', 'poll'])."""
    cdef int i
    return [(<bytes>gg_selector_at(i).name).decode("ascii") for i in range(gg_selector_count())]


def default_backend():
    """Name of the build's default backend (GOGIN_SELECTOR at build time, else the best)."""
    return (<bytes>gg_selector_default().name).decode("ascii")


cdef int _raise_errno(int err) except -1:
    # errno may be clobbered by anything between the failing call and here: restore it.
    global errno
    errno = err
    PyErr_SetFromErrno(OSError)
    return -1


# The .pxd declares the ops' function pointers without nogil; the C functions never touch
# Python, so the blocking poll is called through this nogil-typed alias with the GIL released.
ctypedef int (*_poll_fn)(gg_selector *sel, gg_fired *fired, int maxfired,
                         int timeout_ms) noexcept nogil


# Helpers are module-level (not methods) so the fixed .pxd needs no extra declarations.
cdef void _close(Selector self) noexcept:
    if self._sel is not NULL:
        self._ops.free(self._sel)
        self._sel = NULL
    if self._fired is not NULL:
        PyMem_Free(self._fired)
        self._fired = NULL


cdef inline int _check(Selector self) except -1:
    if self._sel is NULL:
        raise ValueError("I/O operation on a closed Selector")
    return 0


@cython.final
cdef class Selector:
    """Selector(backend=None, maxfired=1024)

    ``backend`` is one of ``backends()`` (None: ``default_backend()``); ``maxfired`` bounds the
    events returned by one ``select()``/``wait()`` (more ready fds are reported by later calls).
    """

    def __cinit__(self, backend=None, int maxfired=1024):
        cdef bytes name
        if maxfired <= 0:
            raise ValueError(f"maxfired must be positive, not {maxfired}")
        if backend is None:
            self._ops = gg_selector_default()
        else:
            if not isinstance(backend, str):
                raise TypeError(f"backend must be a str or None, not {type(backend).__name__}")
            name = (<str>backend).encode("ascii", "replace")
            self._ops = gg_selector_find(name)
            if self._ops is NULL:
                raise ValueError(
                    f"unknown selector backend {backend!r}; available: {', '.join(backends())}")
        self._fired = <gg_fired *>PyMem_Malloc(<size_t>maxfired * sizeof(gg_fired))
        if self._fired is NULL:
            raise MemoryError()
        self._maxfired = maxfired
        self._sel = self._ops.create(maxfired)
        if self._sel is NULL:
            _raise_errno(errno)

    def __dealloc__(self):
        _close(self)

    # ---- cdef API (the hub) ----

    cdef int add(self, int fd, int mask) except -1:
        _check(self)
        if self._ops.add(self._sel, fd, mask) < 0:
            return _raise_errno(errno)
        return 0

    cdef int mod(self, int fd, int mask) except -1:
        _check(self)
        if self._ops.mod(self._sel, fd, mask) < 0:
            return _raise_errno(errno)
        return 0

    cdef int remove(self, int fd) except -1:
        _check(self)
        if self._ops.remove(self._sel, fd) < 0:
            return _raise_errno(errno)
        return 0

    cdef int wait(self, int timeout_ms) except -1:
        cdef int n, err = 0
        cdef _poll_fn poll
        cdef gg_selector *sel
        cdef gg_fired *fired
        cdef int maxfired
        _check(self)
        if timeout_ms == 0:
            # non-blocking (the hub's poll from the asyncio loop): not worth a GIL round trip
            n = self._ops.poll(self._sel, self._fired, self._maxfired, 0)
            err = errno
        else:
            poll = <_poll_fn><void *>self._ops.poll  # see _poll_fn
            sel, fired, maxfired = self._sel, self._fired, self._maxfired
            with nogil:
                n = poll(sel, fired, maxfired, timeout_ms)
                err = errno
        if n < 0:
            return _raise_errno(err)
        return n

    # ---- Python API (tests, the hub's Python side) ----

    @property
    def name(self):
        """The backend's name: 'epoll', 'kqueue' or 'poll'."""
        return (<bytes>self._ops.name).decode("ascii")

    @property
    def maxfired(self):
        """Most events one select() returns."""
        return self._maxfired

    @property
    def closed(self):
        return self._sel is NULL

    def fileno(self):
        """The pollable fd of the kernel object (epoll/kqueue), or -1 for poll: a poll set is
        not pollable, so the hub then registers each fd with the asyncio loop itself."""
        _check(self)
        return self._ops.fileno(self._sel)

    def register(self, int fd, int mask):
        """Add fd with interest mask (READABLE | WRITABLE, or 0). FileExistsError if present."""
        self.add(fd, mask)

    def modify(self, int fd, int mask):
        """Change fd's interest. FileNotFoundError (ENOENT) if fd is not registered."""
        self.mod(fd, mask)

    def unregister(self, int fd):
        """Remove fd; call before closing it. FileNotFoundError (ENOENT) if not registered."""
        self.remove(fd)

    def select(self, timeout=None):
        """Wait up to timeout seconds (None: forever, <= 0: poll) and return [(fd, mask)]."""
        cdef int ms, n, i
        cdef double t
        if timeout is None:
            ms = -1
        else:
            t = timeout
            if t <= 0:
                ms = 0
            elif t >= 2147483.0:  # INT_MAX ms: ~24 days, treat as forever
                ms = -1
            else:
                ms = <int>(t * 1000.0)
                if ms < t * 1000.0:
                    ms += 1  # round up like selectors/asyncio, so we never wake early and spin
        n = self.wait(ms)
        if n == 0 and ms != 0:
            PyErr_CheckSignals()  # woke by EINTR: let Ctrl-C raise KeyboardInterrupt
        return [(self._fired[i].fd, self._fired[i].mask) for i in range(n)]

    def close(self):
        """Release the kernel object (idempotent); registered fds are not closed."""
        _close(self)

    def __enter__(self):
        _check(self)
        return self

    def __exit__(self, *exc):
        _close(self)
        return False

    def __repr__(self):
        state = "closed" if self._sel is NULL else f"fd={self._ops.fileno(self._sel)}"
        return f"<Selector {self.name} {state}>"
