# The publisher fast path's decision (sans-I/O): may the core answer this POST itself, and
# with what.  The hub publishes and writes; this module only reads the request.

cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t

from gogin._core.http cimport Request
from gogin._core.registry cimport Channel

cdef enum PubAnswer:
    PUB_ANSWER_EMPTY = 0       # channel_info_on_publish off: an empty 200
    PUB_ANSWER_JSON = 1        # the channel's info as application/json
    PUB_ANSWER_X_JSON = 2      # ... as text/x-json (Accept: */x-json)


@cython.final
cdef class PublishRoute:
    cdef bint public                 # no network / API key check
    cdef bytes api_key               # UTF-8, or None: no key
    cdef bint info                   # answer with the channel's info (else an empty 200)
    cdef str events_channel          # never published here; a new channel needs Python's event
    cdef Py_ssize_t max_id_len
    cdef Py_ssize_t max_message_size
    cdef bint cors                   # allowed origins configured: a request with Origin goes
                                     # to Python (its CORS headers)
    cdef readonly int64_t answered   # requests the core answered on this route

    # The channels to publish req's body to, or None: Python takes the request.  Decides
    # before anything changes; *binary and *answer are set only when it returns a list.
    cdef list decide(self, Request req, bint peer_allowed, dict channels, bint *binary,
                     int *answer)


# The whole 200 (head and body) the Python publisher location would write for it.
cdef bytes publish_answer(int answer, Channel ch, bint keep_alive)


# Why a channel id cannot be named, or None (*status: 400 or 403): the rules of every
# location, the publisher WebSocket and the main server's grants, in one place.
cdef str channel_id_error(str name, Py_ssize_t max_len, int *status)


# The publisher WebSocket's decoded items (msgspec Structs) have their fields in slots: their
# offsets, learned once per class, let the hub read a field without an attribute lookup.
# member_offsets fills offs[i] for names[i] (-1: not a plain object slot, use getattr).
cdef void member_offsets(type cls, tuple names, Py_ssize_t *offs)
# The field at offs (>= 0) of obj, a borrowed reference, or NULL (unset, or offs < 0).
cdef inline PyObject *slot_at(object obj, Py_ssize_t off) noexcept:
    if off < 0:
        return NULL
    return (<PyObject **>((<char *><PyObject *>obj) + off))[0]
