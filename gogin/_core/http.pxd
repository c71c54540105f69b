# HTTP/1.1 request-head parser (sans-I/O).  No syscalls here.

cdef struct HeadResult:
    Py_ssize_t consumed        # bytes of the head including the final CRLF CRLF (0 if incomplete)
    int status                 # 0 = ok / need more; else the HTTP status of the error (400, 411, 431, 505 ...)
    const char *explain        # static C string for the X-Gogin-Explain header when status != 0


cdef class Request:
    cdef readonly str method           # "GET"
    cdef readonly str target           # raw request-target "/ws/a/b?x=1"
    cdef readonly str path             # percent-decoded path "/ws/a/b"
    cdef readonly str query            # raw query string without '?' ("" if none)
    cdef readonly int version          # 10 or 11
    cdef readonly list headers         # [(lower-case name, value), ...] in arrival order, repeats kept
    cdef readonly bint keep_alive      # from version and Connection header
    cdef readonly Py_ssize_t content_length   # -1 if no Content-Length header
    cdef public bytes body             # filled by the hub once the body arrived (b"" if none)
    cdef public object peer            # (host, port) filled by the hub


# Parse one request head from buf[0:n].
# - complete and valid: returns a Request, res.consumed > 0, res.status == 0
# - incomplete (no CRLFCRLF yet, still under the limits): returns None, consumed 0, status 0
# - invalid or over a limit: returns None, res.status set (400/411/431/501/505), res.explain set
# Never raises for any byte input (only MemoryError).
cdef Request parse_head(const unsigned char *buf, Py_ssize_t n, Py_ssize_t max_head_size,
                        int max_headers, HeadResult *res)
