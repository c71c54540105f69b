"""Message storage: a copy of each published message, bounded three ways.

- per channel: at most `max_per_channel` messages (the oldest goes first);
- in time: `ttl_ms` after it was stored;
- in bytes, over all channels: `max_bytes` - evicting the oldest message anywhere, so a
  publish is never refused for lack of room (what push-stream's users asked;
  docs/protocol.md, Message storage).

Evictions remember the newest lost (id, time, tag) per channel: a client resuming from a
position older than that knows messages were lost (the "gap" signal), instead of guessing.
"""

from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

cdef enum:
    RECORD_OVERHEAD = 96       # bytes charged per message for the record itself (~sizeof)


cdef void history_init(History *h) noexcept nogil:
    memset(h, 0, sizeof(History))


cdef void chist_init(ChannelHistory *ch) noexcept nogil:
    memset(ch, 0, sizeof(ChannelHistory))


cdef void _unlink(History *h, Stored *s) noexcept nogil:
    cdef ChannelHistory *ch = s.chist
    if s.cprev != NULL:
        s.cprev.cnext = s.cnext
    else:
        ch.first = s.cnext
    if s.cnext != NULL:
        s.cnext.cprev = s.cprev
    else:
        ch.last = s.cprev
    if s.gprev != NULL:
        s.gprev.gnext = s.gnext
    else:
        h.head = s.gnext
    if s.gnext != NULL:
        s.gnext.gprev = s.gprev
    else:
        h.tail = s.gprev
    ch.count -= 1
    ch.bytes -= s.size
    h.count -= 1
    h.bytes -= s.size


cdef void history_evict(History *h, Stored *s) noexcept nogil:
    """Drop a message because of a limit: remembered as lost by its channel."""
    cdef ChannelHistory *ch = s.chist
    ch.lost += 1
    if s.id > ch.lost_id:
        ch.lost_id = s.id
        ch.lost_time = s.time
        ch.lost_tag = s.tag
    h.evicted += 1
    _unlink(h, s)
    free(s)


cdef Stored *history_append(History *h, ChannelHistory *ch, int64_t id, int64_t time, int tag,
                            bint binary, const unsigned char *data, Py_ssize_t n,
                            const unsigned char *eid, Py_ssize_t eid_len,
                            const unsigned char *etype, Py_ssize_t etype_len,
                            int64_t now_ms) noexcept nogil:
    cdef Stored *s
    cdef Py_ssize_t size = n + eid_len + etype_len + RECORD_OVERHEAD
    if h.max_per_channel <= 0:
        return NULL
    if h.max_bytes > 0 and size > h.max_bytes:
        return NULL                       # larger than the whole store: delivered, not kept
    s = <Stored *>malloc(sizeof(Stored) + n + eid_len + etype_len)
    if s == NULL:
        return NULL
    s.data = (<unsigned char *>s) + sizeof(Stored)
    memcpy(s.data, data, n)
    memcpy(s.data + n, eid, eid_len)
    memcpy(s.data + n + eid_len, etype, etype_len)
    s.len = n
    s.eid_len = eid_len
    s.etype_len = etype_len
    s.size = size
    s.id = id
    s.time = time
    s.tag = tag
    s.binary = binary
    s.expires_ms = now_ms + h.ttl_ms if h.ttl_ms > 0 else 0
    s.chist = ch
    # append to both lists
    s.cnext = NULL
    s.cprev = ch.last
    if ch.last != NULL:
        ch.last.cnext = s
    else:
        ch.first = s
    ch.last = s
    s.gnext = NULL
    s.gprev = h.tail
    if h.tail != NULL:
        h.tail.gnext = s
    else:
        h.head = s
    h.tail = s
    ch.count += 1
    ch.bytes += size
    h.count += 1
    h.bytes += size
    # the limits, oldest first
    while ch.count > h.max_per_channel:
        history_evict(h, ch.first)
    while h.max_bytes > 0 and h.bytes > h.max_bytes and h.head != NULL:
        history_evict(h, h.head)
    return s


cdef Py_ssize_t history_expire(History *h, int64_t now_ms) noexcept nogil:
    cdef Py_ssize_t n = 0
    # one TTL for all: the global list is in expiry order too
    while h.head != NULL and h.head.expires_ms and h.head.expires_ms <= now_ms:
        history_evict(h, h.head)
        n += 1
    return n


cdef void history_clear_channel(History *h, ChannelHistory *ch) noexcept nogil:
    """Forget a channel's messages (channel deleted): not counted as lost."""
    cdef Stored *s
    while ch.first != NULL:
        s = ch.first
        _unlink(h, s)
        free(s)


cdef void history_clear(History *h) noexcept nogil:
    cdef Stored *s
    while h.head != NULL:
        s = h.head
        _unlink(h, s)
        free(s)


cdef void history_free(History *h) noexcept nogil:
    # The hub is going away: free every record without touching the channels' lists.  At
    # interpreter exit the garbage collector may have freed the Channel objects (their
    # ChannelHistory is embedded in them) before the hub's own dealloc runs.
    cdef Stored *s = h.head
    cdef Stored *nxt
    while s != NULL:
        nxt = s.gnext
        free(s)
        s = nxt
    h.head = NULL
    h.tail = NULL
    h.count = 0
    h.bytes = 0
