# HTTP/1.1 response heads, written in one place (sans-I/O: fields in, bytes out).

from libc.string cimport memcpy

cdef enum:
    CONTINUE_LEN = 25

# The interim answer to "Expect: 100-continue" (RFC 9110 §10.1.1), into a buffer of at least
# CONTINUE_LEN bytes: the connection machine writes it without the GIL.
cdef inline Py_ssize_t write_continue(unsigned char *out) noexcept nogil:
    memcpy(out, b"HTTP/1.1 100 Continue\r\n\r\n", CONTINUE_LEN)
    return CONTINUE_LEN

# The status line and header lines of an answer, without its framing (Content-Length,
# Connection, the blank line): what finish_answer() completes.  ValueError on CR or LF.
cdef bytes head_start(int status, headers)
# start + Content-Length (content_length >= 0) + "Connection: close" (not keep_alive) + the
# blank line + body[0:n], in one allocation.
cdef bytes finish_answer(bytes start, Py_ssize_t content_length, bint keep_alive,
                         const unsigned char *body, Py_ssize_t n)
# An error answer: the status, its explain header, an empty text/plain body, then close.
cdef bytes error_answer(int status, str explain)
