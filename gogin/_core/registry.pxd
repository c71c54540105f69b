# Channel <-> subscriber registry (sans-I/O).  Both directions are O(1) to change:
# each Sub records its index in the channel's group array and in the connection's SubList,
# and removal is a swap-remove that fixes the moved entry's index.

cimport cython
from libc.stdint cimport int64_t

from gogin._core.history cimport ChannelHistory

cdef struct Sub:
    void *conn                 # the hub's Conn* (opaque here)
    void *channel              # borrowed Channel: alive while it has a Sub
    int group                  # index into channel.groups
    Py_ssize_t idx_chan        # position in the group's array
    Py_ssize_t idx_conn        # position in the connection's SubList

cdef struct SubList:           # a connection's subscriptions; a few entries typically
    Sub **items
    Py_ssize_t n
    Py_ssize_t cap

cdef struct Group:             # the subscribers of one channel that share a wire format
    int fmt                    # format index
    void *batch                # Frame*: this turn's corked messages (fanout.pyx), or NULL
    Sub **subs
    Py_ssize_t n
    Py_ssize_t cap


@cython.final
cdef class Channel:
    cdef readonly str name
    cdef bytes name_utf8           # raw bytes for ~channel~
    cdef bytes name_json           # JSON-escaped bytes for ~channel-json~
    cdef Group *groups
    cdef int ngroups
    cdef readonly Py_ssize_t subscribers
    cdef readonly int64_t published      # messages published to this channel
    cdef readonly int64_t last_id        # id of the last message (per-channel sequence)
    cdef readonly int64_t epoch          # a shared broker's numbering of the ids (0: local)
    cdef readonly int64_t last_time      # seconds of the last message
    cdef readonly int last_tag           # tag of the last message (count within last_time)
    cdef readonly double created         # time.time() at creation
    cdef public bint persistent          # keep in the registry while empty
    cdef bint corked                     # a group holds a batch: on the hub's pending list
    cdef public object data              # the Python layer's per-channel state
    cdef ChannelHistory hist             # stored messages (history.pyx)

    cdef inline Group *group_of(self, int fmt)


@cython.final
cdef class Registry:
    cdef readonly dict channels          # name -> Channel
    cdef readonly Py_ssize_t subscriptions

    cdef Channel get_or_create(self, str name)
    # NULL with no exception when the connection is already on that channel
    cdef Sub *subscribe(self, SubList *lst, void *conn, str name, int fmt) except? NULL
    cdef void unsubscribe(self, SubList *lst, Sub *s) noexcept
    cdef void unsubscribe_all(self, SubList *lst) noexcept
    cdef Sub *find(self, SubList *lst, str name) noexcept
    cdef void drop_if_empty(self, Channel ch) noexcept


cdef void sublist_init(SubList *lst) noexcept nogil
