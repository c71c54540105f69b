# The broker envelope (docs/deployment.md, Redis broker): one message as a shared broker
# stores and distributes it, with the id, time and tag the broker gave it.  Sans-I/O.

from libc.stdint cimport int64_t

cdef enum:
    ENV_HEADER = 36            # bytes of the fixed header before the event id
    ENV_VERSION = 1            # first byte of every envelope this build reads
    ENV_BINARY = 1             # flags: a binary message (WebSocket binary frame, untemplated)
    ENV_DELETED = 2            # flags: the channel was deleted; the payload is the text

cdef struct Envelope:
    int flags
    int64_t epoch              # changes when the broker lost the channel's numbering
    int64_t id                 # per channel, from 1 in each epoch
    int64_t time               # seconds (the broker's clock)
    int tag                    # (time, tag) orders every message of the broker
    const unsigned char *eid   # event id (eid_len bytes; 0: none)
    Py_ssize_t eid_len
    const unsigned char *etype # event type
    Py_ssize_t etype_len
    const unsigned char *data  # payload
    Py_ssize_t len

# 0: parsed (pointers into p); -1: not an envelope of this version (too short, bad lengths)
cdef int envelope_parse(const unsigned char *p, Py_ssize_t n, Envelope *e) noexcept nogil
