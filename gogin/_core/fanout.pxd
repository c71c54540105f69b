# The fanout path: wire formats (Format: template applied once per
# publish), the per-publish loop over subscribers and the corked writev flush.

cimport cython
from libc.stdint cimport int64_t, uint64_t
from posix.uio cimport iovec

from gogin._core.buffers cimport Frame, OutQueue
from gogin._core.connection cimport Conn
from gogin._core.registry cimport Channel, Group, SubList

cdef enum FormatKind:
    FK_WEBSOCKET = 1     # WebSocket text frame of the rendered template; binary messages raw
    FK_EVENTSOURCE = 2   # text/event-stream event: id:, event:, data: lines, blank line
    FK_STREAM = 3        # streaming body: a chunk (chunked) or the bytes as they are
    FK_LONGPOLL = 4      # a whole HTTP response: head + Last-Modified/Etag/Content-Length + body


cdef struct Message:
    const unsigned char *data
    Py_ssize_t len
    bint binary
    int64_t id
    int64_t time
    int tag
    const unsigned char *event_id
    Py_ssize_t event_id_len
    const unsigned char *event_type
    Py_ssize_t event_type_len
    const unsigned char *channel
    Py_ssize_t channel_len
    const unsigned char *channel_json
    Py_ssize_t channel_json_len
    # JSON-escaped copies for the ~*-json~ tokens, computed on first need by a format that
    # uses them and freed by message_release() (owned by whoever built the Message)
    unsigned char *text_json
    Py_ssize_t text_json_len
    unsigned char *event_id_json
    Py_ssize_t event_id_json_len
    unsigned char *event_type_json
    Py_ssize_t event_type_json_len


@cython.final
cdef class Format:
    cdef readonly int index
    cdef readonly int kind
    cdef readonly bytes template
    cdef readonly bytes head       # FK_LONGPOLL: status line + headers (no blank line)
    cdef readonly bint chunked     # FK_STREAM: chunked transfer coding
    cdef readonly bytes ping       # bytes of a ping (WS: ping frame payload; others: raw bytes)
    cdef readonly bytes footer     # FK_STREAM: bytes sent when the stream ends
    cdef readonly int deflate      # FK_WEBSOCKET: permessage-deflate window bits (0: none)
    cdef readonly Py_ssize_t deflate_min   # messages shorter than this go uncompressed
    cdef bytes _lits               # the template's literal parts, concatenated
    cdef int *_seg                 # segment kinds: 0 literal, else a TOKEN_* value
    cdef Py_ssize_t *_off          # literal offset into _lits
    cdef Py_ssize_t *_len          # literal length
    cdef int _nseg
    cdef bint _raw                 # template is exactly ~text~: the payload as it is
    cdef bint _needs_json          # the template has ~text-json~
    cdef bint _needs_meta_json     # ... ~event-id-json~ or ~event-type-json~
    cdef Frame *_ping_frame        # prebuilt ping, shared by every connection of this format
    cdef public bint held          # used by a long-poll hold(): each of its connections takes
                                   # one message, so its groups are never corked

    cdef Frame *render(self, Message *m) except? NULL
    cdef Frame *ping_frame(self)
    cdef _parse(self, bytes template)
    cdef Py_ssize_t _body(self, Message *m, unsigned char *dst) noexcept
    cdef const unsigned char *_rendered(self, Message *m, Py_ssize_t size) except NULL
    cdef void _fill(self, Message *m, unsigned char *dst, Py_ssize_t size) noexcept
    cdef Frame *_longpoll(self, Message *m, const unsigned char *body, Py_ssize_t n) except NULL


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


# Free the escaped copies a render made of m's fields (the fields themselves are borrowed).
cdef void message_release(Message *m) noexcept nogil
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
# Frames of a single message to a single connection (WebSocket frame of any opcode)
cdef Frame *ws_frame(int opcode, const unsigned char *data, Py_ssize_t n) noexcept nogil
