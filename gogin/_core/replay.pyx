"""Catch-up from a channel's stored messages (sans-I/O): where a replay from a client's
position starts and whether messages after that position were lost, the gap signal as a
stored record, and a stored message rendered in a wire format.  The hub queues what these
return; history.pyx keeps the messages."""

from cpython.bytes cimport PyBytes_AS_STRING
from libc.string cimport memset

from gogin._core.buffers cimport Frame
from gogin._core.formats cimport Format, Message, message_release


cdef Stored *find_event(Channel ch, event_id) except? NULL:
    """The newest stored message of ch whose event id is event_id, or NULL."""
    cdef bytes eid = event_id.encode("utf-8") if isinstance(event_id, str) else bytes(event_id)
    cdef Stored *s = ch.hist.last
    while s != NULL and not (s.eid_len == len(eid) and
                             s.data[s.len:s.len + s.eid_len] == eid):
        s = s.cprev
    return s


cdef bint replay_start(Channel ch, Py_ssize_t last, since_id, since_time, int since_tag,
                       event_id, Stored **first, bint *gap) except -1:
    """Where a replay from a position starts in ch's stored messages (*first, NULL: nothing
    after it) and whether messages after the position were lost (*gap).  False when no
    position is given."""
    cdef Stored *s = ch.hist.first
    cdef Py_ssize_t k
    gap[0] = False
    if last > 0:
        s = ch.hist.last
        k = 1
        while k < last and s != NULL and s.cprev != NULL:
            s = s.cprev
            k += 1
        gap[0] = last > ch.hist.count and ch.hist.lost > 0
    elif since_id is not None:
        while s != NULL and s.id <= since_id:
            s = s.cnext
        gap[0] = ch.hist.lost > 0 and since_id < ch.hist.lost_id
    elif since_time is not None:
        while s != NULL and (s.time < since_time or (s.time == since_time and s.tag <= since_tag)):
            s = s.cnext
        gap[0] = ch.hist.lost > 0 and (since_time < ch.hist.lost_time or
                                       (since_time == ch.hist.lost_time and since_tag < ch.hist.lost_tag))
    elif event_id is not None:
        s = find_event(ch, event_id)
        if s != NULL:
            s = s.cnext
        else:
            s = ch.hist.first      # unknown id: everything stored, and say so
            gap[0] = True
    else:
        return False
    first[0] = s
    return True


cdef void gap_record(Channel ch, Stored *next_, bytes text, Stored *g) noexcept:
    """The gap signal as a stored message: id -4, placed (time, tag) just before `next_` (or
    at the channel's last message when nothing follows).  g borrows text's bytes."""
    memset(g, 0, sizeof(Stored))
    g.id = -4
    g.time = next_.time if next_ != NULL else ch.last_time
    g.tag = next_.tag - 1 if next_ != NULL else ch.last_tag
    g.data = <unsigned char *>PyBytes_AS_STRING(text)
    g.len = len(text)


cdef Frame *stored_frame(Channel ch, Stored *s, Format fmt) except NULL:
    """One stored message rendered in fmt (Format.render: binary ones as binary frames on
    WebSocket, compressed on a permessage-deflate format)."""
    cdef Message m
    cdef Frame *f
    memset(&m, 0, sizeof(Message))
    m.data = s.data
    m.len = s.len
    m.binary = s.binary
    m.id = s.id
    m.time = s.time
    m.tag = s.tag
    m.event_id = s.data + s.len
    m.event_id_len = s.eid_len
    m.event_type = s.data + s.len + s.eid_len
    m.event_type_len = s.etype_len
    m.channel = <const unsigned char *>PyBytes_AS_STRING(ch.name_utf8)
    m.channel_len = len(ch.name_utf8)
    m.channel_json = <const unsigned char *>PyBytes_AS_STRING(ch.name_json)
    m.channel_json_len = len(ch.name_json)
    try:
        f = fmt.render(&m)
    finally:
        message_release(&m)
    return f


def replay_from(Channel ch not None, Py_ssize_t last=0, since_id=None, since_time=None,
                int since_tag=0, event_id=None):
    """replay_start() from Python (tests): None without a position, else (the ids of the
    stored messages a replay would send, in order, and whether messages were lost)."""
    cdef Stored *s
    cdef bint gap
    if not replay_start(ch, last, since_id, since_time, since_tag, event_id, &s, &gap):
        return None
    ids = []
    while s != NULL:
        ids.append(s.id)
        s = s.cnext
    return ids, gap
