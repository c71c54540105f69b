"""The broker envelope: a fixed big-endian header, then the event id, the event type and the
payload.  The Redis broker's publish script writes it (struct.pack '>BBHHHLLLI4'); nodes read it
here, in the core, on the receive path, so a received message never becomes a Python object
per subscriber.

    offset  size  field
    0       1     version (1)
    1       1     flags: 1 binary, 2 channel deleted
    2       2     event id length
    4       2     event type length
    6       2     reserved (0)
    8       8     epoch
    16      8     id
    24      8     time (seconds)
    32      4     tag
    36      ...   event id, event type, payload
"""

from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport int64_t, uint64_t


cdef inline uint64_t _be(const unsigned char *p, int n) noexcept nogil:
    cdef uint64_t v = 0
    cdef int i
    for i in range(n):
        v = (v << 8) | p[i]
    return v


cdef int envelope_parse(const unsigned char *p, Py_ssize_t n, Envelope *e) noexcept nogil:
    cdef Py_ssize_t eid_len, etype_len
    cdef uint64_t v
    if n < ENV_HEADER or p[0] != ENV_VERSION:
        return -1
    eid_len = <Py_ssize_t>_be(p + 2, 2)
    etype_len = <Py_ssize_t>_be(p + 4, 2)
    if ENV_HEADER + eid_len + etype_len > n:
        return -1
    e.flags = p[1]
    # ids, times and epochs are below 2^53 (Lua numbers are doubles): anything larger is not
    # ours, and would turn negative in an int64
    v = _be(p + 8, 8)
    if v >> 53:
        return -1
    e.epoch = <int64_t>v
    v = _be(p + 16, 8)
    if v >> 53 or v == 0:
        return -1
    e.id = <int64_t>v
    v = _be(p + 24, 8)
    if v >> 53:
        return -1
    e.time = <int64_t>v
    e.tag = <int>_be(p + 32, 4)
    if e.tag < 0:
        return -1
    e.eid = p + ENV_HEADER
    e.eid_len = eid_len
    e.etype = e.eid + eid_len
    e.etype_len = etype_len
    e.data = e.etype + etype_len
    e.len = n - ENV_HEADER - eid_len - etype_len
    return 0


def parse_envelope(bytes raw):
    """(flags, epoch, id, time, tag, event_id, event_type, payload), or None: what the core
    reads from an envelope (for tests and tools; the receive path never builds this)."""
    cdef Envelope e
    if envelope_parse(<const unsigned char *>PyBytes_AS_STRING(raw), len(raw), &e) != 0:
        return None
    return (e.flags, e.epoch, e.id, e.time, e.tag, e.eid[:e.eid_len], e.etype[:e.etype_len],
            e.data[:e.len])


def build_envelope(int flags, int64_t epoch, int64_t id, int64_t time, int tag,
                   bytes event_id=b"", bytes event_type=b"", bytes payload=b""):
    """The bytes of an envelope (what the publish script writes; for tests and tools)."""
    if len(event_id) > 0xFFFF or len(event_type) > 0xFFFF:
        raise ValueError("event id and type are at most 65535 bytes")
    return (bytes([ENV_VERSION, flags]) + len(event_id).to_bytes(2, "big")
            + len(event_type).to_bytes(2, "big") + b"\0\0" + epoch.to_bytes(8, "big")
            + id.to_bytes(8, "big") + time.to_bytes(8, "big") + tag.to_bytes(4, "big")
            + event_id + event_type + payload)
