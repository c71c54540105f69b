# Wire formats and templates (sans-I/O): Format renders a Message once into the shared Frame
# its subscribers are sent; JSON escaping for the ~*-json~ tokens; the HTTP date of ~time~.

cimport cython
from libc.stdint cimport int64_t

from gogin._core.buffers cimport Frame


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


# Free the escaped copies a render made of m's fields (the fields themselves are borrowed).
cdef void message_release(Message *m) noexcept nogil
# Frames of a single message to a single connection (WebSocket frame of any opcode)
cdef Frame *ws_frame(int opcode, const unsigned char *data, Py_ssize_t n) noexcept nogil
# JSON string escaping (RFC 8259 §7), no quotes added: the size, the bytes, a bytes object
cdef Py_ssize_t json_escaped_size(const unsigned char *src, Py_ssize_t n) noexcept nogil
cdef Py_ssize_t json_escape_into(const unsigned char *src, Py_ssize_t n, unsigned char *dst) noexcept nogil
cdef bytes json_escape(bytes raw)
# The IMF-fixdate of a Unix time (cached per second; the buffer is shared: copy it at once)
cdef Py_ssize_t http_date(int64_t t, const char **out) noexcept nogil
