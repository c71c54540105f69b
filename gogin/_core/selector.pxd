# The Selector: a cdef class over the C backend contract in native/selector.h.
# The hub uses the cdef methods; tests use the Python-visible ones (register, select, ...).

cdef extern from "native/selector.h":
    enum:
        GG_NONE          # no interest
        GG_READABLE      # readable / peer closed / error
        GG_WRITABLE      # writable
    ctypedef struct gg_fired:
        int fd
        int mask
    ctypedef struct gg_selector:
        pass
    ctypedef struct gg_selector_ops:
        const char *name
        gg_selector *(*create)(int setsize)
        void (*free)(gg_selector *sel)
        int (*add)(gg_selector *sel, int fd, int mask)
        int (*mod)(gg_selector *sel, int fd, int mask)
        int (*remove)(gg_selector *sel, int fd)
        int (*poll)(gg_selector *sel, gg_fired *fired, int maxfired, int timeout_ms)
        int (*fileno)(gg_selector *sel)
    const gg_selector_ops *gg_selector_default()
    const gg_selector_ops *gg_selector_find(const char *name)
    int gg_selector_count()
    const gg_selector_ops *gg_selector_at(int i)


cimport cython

@cython.final
cdef class Selector:
    cdef const gg_selector_ops *_ops
    cdef gg_selector *_sel
    cdef gg_fired *_fired          # output array of the last wait()
    cdef int _maxfired

    # All raise OSError (errno set by the backend) and return -1 on failure.
    cdef int add(self, int fd, int mask) except -1
    cdef int mod(self, int fd, int mask) except -1
    cdef int remove(self, int fd) except -1
    # Waits up to timeout_ms (0 = non-blocking, -1 = forever); fills self._fired and returns the
    # number of entries.  EINTR returns 0.
    cdef int wait(self, int timeout_ms) except -1
