# RFC 6455 codec (sans-I/O).  Server frames: header written into headroom in front of the
# payload.  Client frames: incremental parser with all the checks of RFC 6455 §5.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

cpdef enum Opcode:
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

cpdef enum CloseCode:
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013

cdef enum:
    GG_WS_MAX_HEADER = 10      # largest server frame header (no mask): 2 + 8
    GG_WS_MAX_CONTROL = 125    # RFC 6455 §5.5: control payload limit

# Events returned by ws_parser_feed
cdef enum WsEvent:
    WS_NONE = 0        # need more bytes
    WS_MESSAGE = 1     # complete data message: ev.opcode TEXT/BINARY, ev.data/ev.len (unmasked)
    WS_PING = 2        # ev.data/ev.len = ping payload (the caller answers with a pong)
    WS_PONG = 3
    WS_CLOSE = 4       # ev.code (1005 if none), ev.data/ev.len = UTF-8 reason
    WS_ERROR = 5       # protocol error: ev.code = close code to send, ev.reason = static text

cdef struct WsFrameEvent:
    int opcode
    const unsigned char *data  # valid until the next ws_parser_feed / ws_parser_free
    Py_ssize_t len
    bint compressed            # WS_MESSAGE: permessage-deflate data, to inflate (RFC 7692 §6)
    int code
    const char *reason

cdef struct WsParser:
    # private state of the incremental parser (see frames.pyx)
    int state
    int opcode              # opcode of the current frame
    int msg_opcode          # opcode of the message being assembled (TEXT/BINARY) or 0
    bint fin
    bint masked
    uint8_t mask[4]
    int mask_pos
    uint64_t frame_len      # payload length of the current frame
    uint64_t frame_done     # payload bytes of the current frame already read
    uint8_t hdr[14]
    int hdr_len
    int hdr_need
    unsigned char *buf      # message (or control) payload being assembled
    Py_ssize_t buf_len
    Py_ssize_t buf_cap
    Py_ssize_t max_message_size
    uint32_t utf8_state     # incremental UTF-8 DFA state for TEXT messages
    bint failed             # after WS_ERROR or WS_CLOSE every further feed returns WS_NONE, consumes all
    bint require_mask       # server side: True
    bint deflate            # permessage-deflate negotiated: RSV1 marks a compressed message
    bint compressed         # the message being assembled is compressed (UTF-8 checked later)
    # private additions (frames.pyx)
    bint release            # a WS_MESSAGE was delivered from buf: reset it at the next feed
    uint8_t *ctl            # control payload, kept apart from the message (§5.4); allocated
                            # at the first control frame: most subscribers never send one, and
                            # 125 bytes per idle connection were a tenth of its memory

cdef void ws_parser_init(WsParser *p, Py_ssize_t max_message_size) noexcept nogil
cdef void ws_parser_free(WsParser *p) noexcept nogil
# Consume bytes from data[0:n] until one event is complete or the input runs out.
# *consumed is set to the bytes used.  Call again with the rest after an event.
cdef int ws_parser_feed(WsParser *p, const unsigned char *data, Py_ssize_t n,
                        Py_ssize_t *consumed, WsFrameEvent *ev) noexcept nogil

# Server frame header: written so that it ends exactly at `end` (the payload starts at `end`).
# Returns the header length (2, 4 or 10).  `end` must have GG_WS_MAX_HEADER bytes of headroom.
cdef Py_ssize_t ws_write_header(unsigned char *end, int opcode, uint64_t length, bint fin) noexcept nogil
cdef Py_ssize_t ws_header_size(uint64_t length) noexcept nogil

# UTF-8 validation of a whole buffer (close reasons etc.)
cdef bint utf8_valid(const unsigned char *data, Py_ssize_t n) noexcept nogil
