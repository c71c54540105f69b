# Catch-up from a channel's stored messages (sans-I/O).

from gogin._core.buffers cimport Frame
from gogin._core.formats cimport Format
from gogin._core.history cimport Stored
from gogin._core.registry cimport Channel

# The newest stored message of ch whose event id is event_id, or NULL.
cdef Stored *find_event(Channel ch, event_id) except? NULL
# Where a replay from a position (the last n, after an id, after a time and tag, after an
# event id) starts in ch's stored messages (*first; NULL: nothing after it) and whether
# messages after the position were lost (*gap).  False when no position is given.
cdef bint replay_start(Channel ch, Py_ssize_t last, since_id, since_time, int since_tag,
                       event_id, Stored **first, bint *gap) except -1
# The gap signal as a stored record into *g: id -4, dated just before next_ (or at the
# channel's last message); g borrows text's bytes.
cdef void gap_record(Channel ch, Stored *next_, bytes text, Stored *g) noexcept
# One stored message rendered in fmt (a new reference).
cdef Frame *stored_frame(Channel ch, Stored *s, Format fmt) except NULL
