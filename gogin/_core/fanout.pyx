"""The fanout path: render once per wire format (formats.pyx), share the bytes, cork per loop
turn.

Nothing here touches a Python object per subscriber: the loop walks the C arrays of the
registry, appends a Frame pointer to each connection's OutQueue and links the connection on the
dirty list; the hub flushes that list once per loop turn with one sendmsg per connection.
"""

cimport cython
from libc.stdint cimport int64_t
from libc.string cimport memset

from gogin._core.buffers cimport (
    Frame, frame_new, frame_append, frame_incref, frame_decref,
    outq_push, outq_iov, outq_consume, outq_clear,
)
from gogin._core.connection cimport (
    CS_WEBSOCKET, CS_STREAM, CS_LONGPOLL, CF_DIRTY, CF_SLOW, CF_POST, CF_ONESHOT, CF_DELIVERED,
)
from gogin._core.frames cimport BINARY
from gogin._core.registry cimport Channel, Group, Sub
from gogin._core.formats cimport Format, Message, FK_WEBSOCKET, FK_LONGPOLL, ws_frame
from gogin._core.includes.sockets cimport (
    msghdr, errno, EAGAIN, EWOULDBLOCK, EINTR, gg_would_block,
)
from gogin._core.includes.compat cimport gg_send, gg_sendmsg, GG_SIGPIPE_SAFE

_SIGPIPE_SAFE = bool(GG_SIGPIPE_SAFE)  # this build's sends never raise SIGPIPE (tests read it)

# -- the per-publish loop and the flush ----------------------------------------------------

cdef enum:
    CORK_MIN = 8               # subscribers of a group from which its messages are corked
    CORK_FIRST = 4096          # first allocation of a batch
    CORK_MAX = 256 * 1024      # a batch this large is queued at once (bounded memory)


cdef void fanout_init(FanoutState *st) noexcept nogil:
    memset(st, 0, sizeof(FanoutState))


cdef void mark_dirty(FanoutState *st, Conn *c) noexcept nogil:
    if not (c.flags & CF_DIRTY):
        c.flags |= CF_DIRTY
        c.dnext = NULL
        if st.dirty == NULL:
            st.dirty = c
        else:
            st.dirty_tail.dnext = c
        st.dirty_tail = c


cdef void mark_post(FanoutState *st, Conn *c, unsigned int why) noexcept nogil:
    c.flags |= why
    if not (c.flags & CF_POST):
        c.flags |= CF_POST
        c.pnext = st.post
        st.post = c


cdef int enqueue_always(FanoutState *st, Conn *c, Frame *f) noexcept nogil:
    if outq_push(&c.out, f) < 0:
        return -1
    st.queued_bytes += f.len
    st.queued_frames += f.msgs
    mark_dirty(st, c)
    return 0


cdef inline bint _refused(FanoutState *st, Conn *c, Frame *f) noexcept nogil:
    # The budget counts bytes waiting in this connection's queue.  An empty queue always takes
    # the frame, so one message larger than the budget still reaches a reader that keeps up.
    # Over it, the close policy marks the connection slow (closed after this publish).
    if c.out.bytes > 0 and st.max_backpressure > 0 and c.out.bytes + f.len > st.max_backpressure:
        if not st.drop_policy:
            mark_post(st, c, CF_SLOW)
        return True
    return False


cdef inline int _push_or_slow(FanoutState *st, Conn *c, Frame *f) noexcept nogil:
    if enqueue_always(st, c, f) < 0:
        mark_post(st, c, CF_SLOW)    # out of memory: treat like a slow consumer
        return 0
    return 1


cdef int enqueue(FanoutState *st, Conn *c, Frame *f) noexcept nogil:
    if _refused(st, c, f):
        if st.drop_policy:
            st.dropped += f.msgs
        return 0
    return _push_or_slow(st, c, f)


cdef int enqueue_control(FanoutState *st, Conn *c, Frame *f) noexcept nogil:
    if _refused(st, c, f):
        return 0
    return _push_or_slow(st, c, f)


cdef void drop_queue(FanoutState *st, Conn *c) noexcept nogil:
    st.queued_bytes -= c.out.bytes
    outq_clear(&c.out)


cdef Py_ssize_t fanout_publish(FanoutState *st, Channel ch, list formats, Message *m,
                               list pending) except -1:
    """Queue message m to every subscriber of ch; see Hub.publish for the policy.

    Corking per channel: a group of CORK_MIN or more WebSocket/stream subscribers does not get
    one queue entry per message.  The message's bytes are appended to the group's batch
    instead (one memcpy per publish), and fanout_settle queues the batch to each subscriber
    once per loop turn: one reference per subscriber per turn, and one iovec per subscriber
    in the sendmsg, whatever the number of messages.  (Per-message iovecs of ~100 bytes made
    the kernel's copy-from-iovec the largest cost of a fanout.)  The hub settles every batch
    that a connection belongs to before anything else reaches that connection (conn_settle:
    a direct enqueue here, a reply, a ping, a close) and a channel's before its subscriptions
    change, so the order of what a connection receives is the order of the calls, and a
    batch is split only by what reaches one of its own subscribers."""
    cdef Py_ssize_t queued = 0, i
    cdef int gi
    cdef Group *g
    cdef Format fmt
    cdef Frame *f
    cdef Frame *b
    cdef Frame *binary = NULL
    cdef Conn *c
    for gi in range(ch.ngroups):
        g = &ch.groups[gi]
        if g.n == 0:
            continue
        fmt = <Format>formats[g.fmt]
        if m.binary and fmt.kind == FK_WEBSOCKET and not fmt.deflate:
            # binary messages go out as they are, one frame shared by every WebSocket format
            # (but those that compress: Format.render)
            if binary == NULL:
                binary = ws_frame(BINARY, m.data, m.len)
                if binary == NULL:
                    raise MemoryError()
                st.frames_built += 1
            f = binary
            frame_incref(f)
        else:
            f = fmt.render(m)
            st.frames_built += 1
        if g.n >= CORK_MIN and fmt.kind != FK_LONGPOLL and not fmt.held:
            b = <Frame *>g.batch
            if b != NULL and b.len + f.len > CORK_MAX:
                fanout_settle_group(st, g)          # a full batch leaves now, in order
                b = NULL
            if b == NULL:
                b = frame_new(0, max(CORK_FIRST, f.len))
                if b == NULL:
                    frame_decref(f)
                    raise MemoryError()
                b.msgs = 0
                g.batch = b
                if not ch.corked:
                    ch.corked = True
                    pending.append(ch)
            b = frame_append(b, f.data, f.len)
            if b == NULL:
                frame_decref(f)
                raise MemoryError()
            b.msgs += 1
            g.batch = b
            frame_decref(f)
            queued += g.n
            continue
        for i in range(g.n):
            c = <Conn *>g.subs[i].conn
            if c.state != CS_WEBSOCKET and c.state != CS_STREAM and c.state != CS_LONGPOLL:
                continue
            if c.flags & CF_SLOW:
                continue
            if c.flags & CF_ONESHOT:
                # a long-poll takes its first message, then its subscription ends
                if c.flags & CF_DELIVERED:
                    continue
                if enqueue_always(st, c, f) == 0:
                    mark_post(st, c, CF_DELIVERED)
                    queued += 1
                continue
            if pending:
                conn_settle(st, c)       # c's other channels' batches came first
            queued += enqueue(st, c, f)
        frame_decref(f)
    if binary != NULL:
        frame_decref(binary)
    return queued


cdef void fanout_settle_group(FanoutState *st, Group *g) noexcept:
    cdef Frame *b = <Frame *>g.batch
    cdef Py_ssize_t i
    cdef Conn *c
    if b == NULL:
        return
    g.batch = NULL
    for i in range(g.n):
        c = <Conn *>g.subs[i].conn
        if c.state != CS_WEBSOCKET and c.state != CS_STREAM:
            continue
        if c.flags & (CF_SLOW | CF_ONESHOT):
            continue
        enqueue(st, c, b)
    frame_decref(b)


cdef int conn_settle(FanoutState *st, Conn *c) noexcept:
    cdef Py_ssize_t i
    cdef Sub *s
    cdef Group *g
    cdef int done = 0
    for i in range(c.subs.n):
        s = c.subs.items[i]
        g = &(<Channel>s.channel).groups[s.group]
        if g.batch != NULL:
            fanout_settle_group(st, g)
            done = 1
    return done


cdef void fanout_discard(Channel ch) noexcept:
    cdef int gi
    ch.corked = False
    for gi in range(ch.ngroups):
        if ch.groups[gi].batch != NULL:
            frame_decref(<Frame *>ch.groups[gi].batch)
            ch.groups[gi].batch = NULL


cdef void fanout_settle(FanoutState *st, Channel ch) noexcept:
    cdef int gi
    ch.corked = False
    for gi in range(ch.ngroups):
        if ch.groups[gi].batch != NULL:
            fanout_settle_group(st, &ch.groups[gi])


cdef int flush_conn(FanoutState *st, Conn *c) noexcept nogil:
    cdef msghdr mh
    cdef int n, k
    cdef Py_ssize_t want, w
    memset(&mh, 0, sizeof(msghdr))
    while c.out.count > 0:
        n = outq_iov(&c.out, st.iov, 1024)
        want = 0
        for k in range(n):
            want += st.iov[k].iov_len
        if n == 1:
            # one buffer (the routing case: one message per connection per pass): send() is
            # cheaper in the kernel than sendmsg() - no msghdr or iovec to import, and a
            # single-buffer copy (about 2 % of a core at 200 k messages/s, perf on loopback)
            w = gg_send(c.fd, st.iov[0].iov_base, st.iov[0].iov_len)
        else:
            mh.msg_iov = st.iov
            mh.msg_iovlen = n
            w = gg_sendmsg(c.fd, &mh)
        st.writes += 1
        if w < 0:
            if errno == EINTR:
                continue
            if gg_would_block(errno):
                return 1
            return -1
        st.delivered_bytes += w
        st.queued_bytes -= w
        st.delivered_frames += outq_consume(&c.out, w)
        if w < want:
            return 1     # the socket buffer is full: wait for WRITABLE, skip a sure EAGAIN
    return 0
