# Message storage per channel (sans-I/O): every stored message is on two lists, its channel's
# (for retrieval) and the hub's global one in publish order (for the byte cap and the TTL:
# the oldest message anywhere is always at the global head).

from libc.stdint cimport int64_t

cdef struct Stored:
    Stored *cnext              # channel list, oldest first
    Stored *cprev
    Stored *gnext              # global list, publish order
    Stored *gprev
    ChannelHistory *chist      # the channel's history (embedded in its Channel object)
    int64_t id                 # per-channel message id
    int64_t time               # seconds
    int64_t expires_ms         # monotonic ms after which it goes (0: never)
    int tag
    bint binary
    Py_ssize_t len             # payload bytes
    Py_ssize_t eid_len         # event id bytes (after the payload)
    Py_ssize_t etype_len       # event type bytes (after the event id)
    Py_ssize_t size            # bytes accounted to the caps (payload + ids + record)
    unsigned char *data        # payload, event id, event type: in the same allocation

cdef struct ChannelHistory:
    Stored *first
    Stored *last
    Py_ssize_t count
    Py_ssize_t bytes
    int64_t lost               # messages evicted from this channel, any reason
    int64_t lost_id            # id / time / tag of the newest message evicted so far
    int64_t lost_time
    int lost_tag

cdef struct History:
    Stored *head               # global, oldest first
    Stored *tail
    Py_ssize_t count
    Py_ssize_t bytes
    Py_ssize_t max_bytes       # global cap (evicts the oldest first; never refuses a publish)
    Py_ssize_t max_per_channel # 0: storage off
    int64_t ttl_ms             # 0: no expiry
    int64_t evicted

cdef void history_init(History *h) noexcept nogil
cdef void chist_init(ChannelHistory *ch) noexcept nogil
# Store a copy of a message; evicts by the per-channel count and the global byte cap.
# Returns NULL when out of memory (the publish itself still goes out).
cdef Stored *history_append(History *h, ChannelHistory *ch, int64_t id, int64_t time, int tag,
                            bint binary, const unsigned char *data, Py_ssize_t n,
                            const unsigned char *eid, Py_ssize_t eid_len,
                            const unsigned char *etype, Py_ssize_t etype_len,
                            int64_t now_ms) noexcept nogil
cdef void history_evict(History *h, Stored *s) noexcept nogil
cdef Py_ssize_t history_expire(History *h, int64_t now_ms) noexcept nogil
cdef void history_clear_channel(History *h, ChannelHistory *ch) noexcept nogil
cdef void history_clear(History *h) noexcept nogil
# Free every record, leaving the channels' lists alone (the hub's dealloc: channels may be gone)
cdef void history_free(History *h) noexcept nogil
