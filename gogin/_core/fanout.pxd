# The fanout path: the per-publish loop over subscribers (a Format of formats.pyx renders
# each message once), the corked batches and the writev flush.

cimport cython
from libc.stdint cimport int64_t, uint64_t
from posix.uio cimport iovec

from gogin._core.buffers cimport Frame, OutQueue
from gogin._core.connection cimport Conn
from gogin._core.registry cimport Channel, Group, SubList
from gogin._core.formats cimport Message

cdef struct FanoutState:
    Conn *dirty                # connections with bytes to flush, oldest first (FIFO: a
    Conn *dirty_tail           # write pass cut short goes on where it stopped)
    Conn *post                 # connections to close (slow) or to finish (long-poll)
    Py_ssize_t max_backpressure
    bint drop_policy           # True: skip the message for a slow consumer; False: close it
    Py_ssize_t queued_bytes    # bytes queued on every connection, not yet written
    int64_t published          # publish() calls
    int64_t queued_frames      # frame references appended to queues
    int64_t delivered_frames   # frames completely written to sockets
    int64_t delivered_bytes    # bytes written to sockets
    int64_t dropped            # frames skipped under the drop policy
    int64_t closed_slow        # connections closed under the close policy
    int64_t writes             # sendmsg() calls (corking shows here)
    int64_t frames_built       # frames rendered by publish (one per format per publish)
    iovec iov[1024]            # scratch for the flush (IOV_MAX on Linux)


cdef void fanout_init(FanoutState *st) noexcept nogil
cdef void mark_dirty(FanoutState *st, Conn *c) noexcept nogil
cdef void mark_post(FanoutState *st, Conn *c, unsigned int why) noexcept nogil
# Append a reference of f to c's queue under the backpressure budget.  1 queued, 0 skipped.
cdef int enqueue(FanoutState *st, Conn *c, Frame *f) noexcept nogil
# Queue bytes no matter the budget (handshake answers, close frames, pongs).  -1 out of memory.
cdef int enqueue_always(FanoutState *st, Conn *c, Frame *f) noexcept nogil
# A control frame (a pong) under the budget: like enqueue, but a skipped one is no message.
cdef int enqueue_control(FanoutState *st, Conn *c, Frame *f) noexcept nogil
cdef void drop_queue(FanoutState *st, Conn *c) noexcept nogil
# Publish one message to every subscriber of ch.  Returns the number of connections it was
# queued to (for a corked group: its subscribers).  `formats` is the hub's list of Format,
# indexed by Format.index; a channel that starts a corked batch is appended to `pending`.
cdef Py_ssize_t fanout_publish(FanoutState *st, Channel ch, list formats, Message *m,
                               list pending) except -1
# Queue ch's corked batches to their subscribers (one reference each) and clear them.
cdef void fanout_settle(FanoutState *st, Channel ch) noexcept
# Queue one group's batch to its subscribers (a connection of the group is about to get bytes)
cdef void fanout_settle_group(FanoutState *st, Group *g) noexcept
# Before bytes reach c: the corked batches of c's own groups go first (ordering without a
# global settle).  1 if a batch was queued.
cdef int conn_settle(FanoutState *st, Conn *c) noexcept
# Free ch's corked batches without queueing them (the hub is going away).
cdef void fanout_discard(Channel ch) noexcept
# Write as much of c's queue as the socket takes: 0 all written, 1 socket full, -1 error (errno)
cdef int flush_conn(FanoutState *st, Conn *c) noexcept nogil
