"""HTTP/1.1 response heads, written in one place.

Every answer the core writes goes through here: ``Connection.respond`` (whatever Python
answers), the 101 of a WebSocket handshake, the errors the connection machine finds (400, 413,
431 ...), the 503 of a connection past ``max_connections`` (written before it has a
``Connection``), the publisher fast path's 200, the head of the long-poll format and 100
Continue.  So a header is validated, and a status named, the same way for all of them.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdio cimport snprintf

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 201: "Created", 202: "Accepted",
    204: "No Content", 301: "Moved Permanently", 302: "Found", 304: "Not Modified",
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
    413: "Content Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    426: "Upgrade Required", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 505: "HTTP Version Not Supported",
}

# Every answer of a notification server is about now: push-stream sets these on all of them,
# the 101 included (ngx_http_push_stream_module_websocket.c, set_expires)
NO_CACHE_HEADERS = (("Cache-Control", "no-cache, no-store, must-revalidate"),
                    ("Expires", "Thu, 01 Jan 1970 00:00:01 GMT"))

cdef dict _status_lines = {}     # status -> b"HTTP/1.1 200 OK\r\n" (a bounded set: ints < 1000)


cdef bytes _status_line(int status):
    cdef bytes line = _status_lines.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"HTTP status {status} is not three digits")
        line = f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n".encode("latin-1")
        _status_lines[status] = line
    return line


cdef bytes head_start(int status, headers):
    cdef list parts = [_status_line(status)]
    cdef str text
    for name, value in headers:
        text = value if isinstance(value, str) else str(value)
        # a CR or LF would end the header and let the value write headers (or a body) of its
        # own: refused, whoever built the value
        if "\r" in name or "\n" in name or "\r" in text or "\n" in text:
            raise ValueError(f"header {name!r} contains CR or LF")
        parts.append(f"{name}: {text}\r\n".encode("latin-1"))
    return b"".join(parts)


cdef bytes finish_answer(bytes start, Py_ssize_t content_length, bint keep_alive,
                         const unsigned char *body, Py_ssize_t n):
    cdef char length[48]
    cdef int ln = 0
    cdef Py_ssize_t sn = PyBytes_GET_SIZE(start), o
    if content_length >= 0:
        ln = snprintf(length, sizeof(length), "Content-Length: %zd\r\n", content_length)
    cdef Py_ssize_t total = sn + ln + (0 if keep_alive else 19) + 2 + n
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef char *d = PyBytes_AS_STRING(out)
    memcpy(d, PyBytes_AS_STRING(start), sn)
    o = sn
    memcpy(d + o, length, ln)
    o += ln
    if not keep_alive:
        memcpy(d + o, b"Connection: close\r\n", 19)
        o += 19
    memcpy(d + o, b"\r\n", 2)
    o += 2
    if n:
        memcpy(d + o, body, n)
    return out


cdef bytes error_answer(int status, str explain):
    return finish_answer(head_start(status, (("X-Gogin-Explain", explain),
                                             ("Content-Type", "text/plain"))),
                         0, False, NULL, 0)


def build_head(int status, headers=(), Py_ssize_t content_length=-1, bint keep_alive=True):
    """HTTP/1.1 response head as bytes (the body length, if given, adds Content-Length)."""
    return finish_answer(head_start(status, headers), content_length, keep_alive, NULL, 0)


def build_head_start(int status, headers=()):
    """The status line and header lines of an answer, without Content-Length, Connection or
    the blank line: the head of a long-poll format, which adds those per message."""
    return head_start(status, headers)


def build_error(int status, str explain):
    """The core's error answer: status, X-Gogin-Explain, an empty text/plain body, close."""
    return error_answer(status, explain)
