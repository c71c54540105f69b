# HTTP/1.1 request-head parser with hard limits (sans-I/O: bytes in, Request or status out).
#
# Decisions (see RFC 9112):
# - Lines end with CRLF only.  A bare LF anywhere in the head is rejected with 400 at once
#   (RFC 9112 §2.2 lets a recipient accept it; refusing it keeps one framing rule for the whole
#   stack and closes request-smuggling gaps between us and any proxy in front).
# - Empty lines (CRLF) before the request-line are skipped and counted in `consumed`
#   (RFC 9112 §2.2: a server SHOULD ignore at least one).
# - The request-target must be ASCII without CTL/SP (RFC 3986); raw bytes >= 0x80 → 400.
# - HTTP/1.x with x >= 2 is treated as HTTP/1.1 (RFC 9110 §2.5); any other major → 505.
# - Work is two passes over the buffer, both in C: pass 1 finds the end of the head (memchr
#   per line) and enforces the limits even on incomplete input; pass 2 validates and only
#   then creates the Python objects of the result.

cimport cython
from libc.string cimport memchr, memcmp
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.unicode cimport PyUnicode_DecodeLatin1, PyUnicode_DecodeASCII, PyUnicode_DecodeUTF8

from urllib.parse import parse_qsl

cdef extern from "Python.h":
    ctypedef unsigned char Py_UCS1
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    Py_UCS1 *PyUnicode_1BYTE_DATA(object o)
    const Py_ssize_t PY_SSIZE_T_MAX


cdef enum:
    GG_CR = 13                  # '\r'
    GG_LF = 10                  # '\n'
    GG_SP = 32                  # ' '
    GG_HT = 9                   # '\t'
    GG_C_TCHAR = 1              # token char, RFC 9110 §5.6.2
    GG_C_VALUE = 2              # field-value char: VCHAR / obs-text / SP / HTAB (RFC 9110 §5.5)
    GG_C_TARGET = 4             # request-target char: visible ASCII (RFC 3986)
    GG_PATH_STACK = 512         # paths up to this size are percent-decoded on the stack

# Byte classes, filled once at import.
cdef unsigned char _CLS[256]
# Hex digit values, -1 for non-hex.
cdef signed char _HEX[256]


cdef void _init_tables() noexcept:
    cdef int c
    cdef unsigned char f
    cdef bytes tspecial = b"!#$%&'*+-.^_`|~"
    for c in range(256):
        f = 0
        if 0x21 <= c <= 0x7E:
            f |= GG_C_TARGET | GG_C_VALUE
        if c >= 0x80 or c == GG_SP or c == GG_HT:
            f |= GG_C_VALUE
        if (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or \
                memchr(PyBytes_AS_STRING(tspecial), c, PyBytes_GET_SIZE(tspecial)) != NULL:
            f |= GG_C_TCHAR
        _CLS[c] = f
        if 48 <= c <= 57:
            _HEX[c] = c - 48
        elif 65 <= c <= 70:
            _HEX[c] = c - 55
        elif 97 <= c <= 102:
            _HEX[c] = c - 87
        else:
            _HEX[c] = -1

_init_tables()


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef inline bint _ieq(const unsigned char *p, Py_ssize_t n, const char *lit, Py_ssize_t litn) noexcept nogil:
    # Case-insensitive compare of p[0:n] with the lower-case literal lit[0:litn].
    cdef Py_ssize_t i
    if n != litn:
        return False
    for i in range(n):
        if _lower(p[i]) != <unsigned char>lit[i]:
            return False
    return True


cdef inline Request _fail(HeadResult *res, int status, const char *explain):
    res.consumed = 0
    res.status = status
    res.explain = explain
    return None


cdef class Request:
    """One parsed HTTP request head.  Built only by the parser (``parse_head`` / ``parse``)."""

    def get(self, name, default=None):
        """First value of header ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def get_all(self, name):
        """Every value of header ``name`` (case-insensitive), in arrival order."""
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def query_params(self):
        """Query string as a dict (percent-decoded, blank values kept, last value wins).  The
        parser refused a query that does not decode to UTF-8, so strict decoding never fails."""
        return dict(parse_qsl(self.query, keep_blank_values=True, errors="strict"))

    def __repr__(self):
        return (f"<Request {self.method} {self.target!r} HTTP/{self.version // 10}.{self.version % 10}"
                f" headers={len(self.headers)} keep_alive={self.keep_alive}"
                f" content_length={self.content_length}>")


cdef str _decode_path(const unsigned char *p, Py_ssize_t n, HeadResult *res,
                      const char *explain="Invalid request path.", bint nul_ok=False):
    # urllib.parse.unquote semantics (%XX → byte, malformed escapes kept as is), but strict:
    # invalid UTF-8, or a decoded NUL unless nul_ok, is an error (None returned, res set to
    # 400, explain).
    cdef const unsigned char *pct = <const unsigned char *>memchr(p, b'%', n)
    if pct == NULL:
        return PyUnicode_DecodeASCII(<const char *>p, n, NULL)   # target is ASCII-checked
    cdef unsigned char stackbuf[GG_PATH_STACK]
    cdef unsigned char *out = stackbuf
    cdef Py_ssize_t i = 0, j = 0
    cdef signed char hi, lo
    cdef unsigned char c
    cdef str result = None
    if n > GG_PATH_STACK:
        out = <unsigned char *>PyMem_Malloc(n)
        if out == NULL:
            raise MemoryError()
    try:
        while i < n:
            c = p[i]
            if c == b'%' and i + 2 < n:
                hi = _HEX[p[i + 1]]
                lo = _HEX[p[i + 2]]
                if hi >= 0 and lo >= 0:
                    c = <unsigned char>((hi << 4) | lo)
                    if c == 0 and not nul_ok:
                        _fail(res, 400, explain)
                        return None
                    out[j] = c
                    j += 1
                    i += 3
                    continue
            out[j] = c
            j += 1
            i += 1
        try:
            result = PyUnicode_DecodeUTF8(<const char *>out, j, NULL)
        except UnicodeDecodeError:
            _fail(res, 400, explain)
            return None
        return result
    finally:
        if out != stackbuf:
            PyMem_Free(out)


cdef inline str _lower_name(const unsigned char *p, Py_ssize_t n):
    # Header names are token chars (ASCII), so a 1-byte-kind str can be filled directly.
    cdef object s = PyUnicode_New(n, 127)
    cdef Py_UCS1 *d = PyUnicode_1BYTE_DATA(s)
    cdef Py_ssize_t i
    for i in range(n):
        d[i] = _lower(p[i])
    return <str>s


cdef Request parse_head(const unsigned char *buf, Py_ssize_t n, Py_ssize_t max_head_size,
                        int max_headers, HeadResult *res):
    cdef Py_ssize_t lim, pos, start, line, p, rl_end = -1, end = -1, nheaders = 0
    cdef const unsigned char *q
    res.consumed = 0
    res.status = 0
    res.explain = NULL
    if buf == NULL or n <= 0:
        return None
    if max_head_size < 0:
        max_head_size = 0
    # Only the first max_head_size bytes can hold a head we accept: scan no further.
    lim = n if n < max_head_size else max_head_size

    # ---- pass 1: find the end of the head, enforce the limits (also on incomplete input) ----
    pos = 0
    # RFC 9112 §2.2: ignore empty lines received before the request-line.
    while pos < lim:
        if buf[pos] == GG_CR:
            if pos + 1 >= lim:
                break
            if buf[pos + 1] != GG_LF:
                return _fail(res, 400, "Malformed request line.")
            pos += 2
        elif buf[pos] == GG_LF:
            return _fail(res, 400, "Bare LF in request head.")
        else:
            break
    start = pos
    # Early reject of garbage (TLS handshakes, binary): the method must be a token then SP.
    p = start
    while p < lim and (_CLS[buf[p]] & GG_C_TCHAR):
        p += 1
    if p < lim and (p == start or buf[p] != GG_SP):
        if not (p == start and buf[p] == GG_CR):   # CR of a leading empty line still arriving
            return _fail(res, 400, "Malformed request line.")

    line = start
    while line < lim:
        q = <const unsigned char *>memchr(buf + line, GG_LF, lim - line)
        if q == NULL:
            break
        p = q - buf
        if p == line or buf[p - 1] != GG_CR:
            return _fail(res, 400, "Bare LF in request head.")
        if rl_end < 0:
            rl_end = p - 1
        elif p - 1 == line:
            end = p + 1                       # just past the empty line's LF
            break
        else:
            nheaders += 1
            if nheaders > max_headers:
                return _fail(res, 431, "Too many header fields.")
        line = p + 1

    if end < 0:
        if n >= max_head_size:
            return _fail(res, 431, "Request header fields too large.")
        return None                          # incomplete: wait for more bytes

    # ---- pass 2: the head buf[start:end] is complete; validate, then build the result ----
    # Request line: method SP request-target SP HTTP-version (RFC 9112 §3).
    cdef Py_ssize_t m_end, t_start, t_end, v, pth_s, pth_e, qs, qe, a
    cdef int version, major, minor
    m_end = start
    while _CLS[buf[m_end]] & GG_C_TCHAR:      # stops at the CR at the latest
        m_end += 1
    if m_end == start or buf[m_end] != GG_SP:
        return _fail(res, 400, "Malformed request line.")
    t_start = m_end + 1
    t_end = t_start
    while t_end < rl_end and buf[t_end] != GG_SP:
        t_end += 1
    if t_end == t_start or t_end >= rl_end:
        return _fail(res, 400, "Malformed request line.")
    v = t_end + 1
    if rl_end - v < 6 or memcmp(buf + v, b"HTTP/", 5) != 0:
        return _fail(res, 400, "Malformed request line.")
    if rl_end - v == 6 and 48 <= buf[v + 5] <= 57 and buf[v + 5] != b'1':
        # "HTTP/2", "HTTP/3": not an HTTP/1 version at all
        return _fail(res, 505, "HTTP version not supported.")
    if rl_end - v != 8 or not (48 <= buf[v + 5] <= 57) or buf[v + 6] != b'.' \
            or not (48 <= buf[v + 7] <= 57):
        return _fail(res, 400, "Malformed request line.")
    major = buf[v + 5] - 48
    minor = buf[v + 7] - 48
    if major != 1:
        return _fail(res, 505, "HTTP version not supported.")
    version = 10 if minor == 0 else 11     # RFC 9110 §2.5: 1.x (x > 1) is handled as 1.1

    for p in range(t_start, t_end):
        if not (_CLS[buf[p]] & GG_C_TARGET):
            return _fail(res, 400, "Invalid request target.")

    # Request-target forms (RFC 9112 §3.2): origin, absolute, asterisk (OPTIONS only).
    if buf[t_start] == b'/':
        pth_s = t_start
    elif t_end - t_start == 1 and buf[t_start] == b'*':
        if not (m_end - start == 7 and memcmp(buf + start, b"OPTIONS", 7) == 0):
            return _fail(res, 400, "Invalid request target.")
        pth_s = t_start
    else:
        a = t_start
        if t_end - a > 7 and _ieq(buf + a, 7, "http://", 7):
            a += 7
        elif t_end - a > 8 and _ieq(buf + a, 8, "https://", 8):
            a += 8
        else:
            return _fail(res, 400, "Invalid request target.")
        pth_s = a
        while pth_s < t_end and buf[pth_s] != b'/' and buf[pth_s] != b'?' and buf[pth_s] != b'#':
            pth_s += 1
        if pth_s == a:
            return _fail(res, 400, "Invalid request target.")   # empty authority
    pth_e = pth_s
    while pth_e < t_end and buf[pth_e] != b'?' and buf[pth_e] != b'#':
        pth_e += 1
    qs = qe = pth_e
    if pth_e < t_end and buf[pth_e] == b'?':
        qs = pth_e + 1
        qe = qs
        while qe < t_end and buf[qe] != b'#':
            qe += 1

    # Header fields (RFC 9112 §5).
    cdef Py_ssize_t ls, le, ne, vs, ve, i, tok_s, tok_e
    cdef Py_ssize_t content_length = -1, cl
    cdef int host_count = 0
    cdef bint has_te = False, conn_close = False, conn_keep = False
    cdef list headers = []
    cdef unsigned char c
    ls = rl_end + 2
    while ls < end - 2:
        q = <const unsigned char *>memchr(buf + ls, GG_LF, end - ls)   # always found (pass 1)
        le = (q - buf) - 1                                            # index of the CR
        c = buf[ls]
        if c == GG_SP or c == GG_HT:
            return _fail(res, 400, "Obsolete line folding is not supported.")
        ne = ls
        while _CLS[buf[ne]] & GG_C_TCHAR:
            ne += 1
        if buf[ne] != b':':
            if ne > ls and (buf[ne] == GG_SP or buf[ne] == GG_HT):
                # RFC 9112 §5.1: no whitespace allowed between field name and colon
                return _fail(res, 400, "Whitespace between header name and colon.")
            return _fail(res, 400, "Invalid header name.")
        if ne == ls:
            return _fail(res, 400, "Invalid header name.")
        vs = ne + 1
        while vs < le and (buf[vs] == GG_SP or buf[vs] == GG_HT):
            vs += 1
        ve = le
        while ve > vs and (buf[ve - 1] == GG_SP or buf[ve - 1] == GG_HT):
            ve -= 1
        for i in range(vs, ve):
            if not (_CLS[buf[i]] & GG_C_VALUE):
                return _fail(res, 400, "Invalid header value.")

        if _ieq(buf + ls, ne - ls, "host", 4):
            host_count += 1
            if host_count > 1:
                # RFC 9112 §3.2: more than one Host field → 400
                return _fail(res, 400, "Multiple Host headers.")
        elif _ieq(buf + ls, ne - ls, "content-length", 14):
            # RFC 9112 §6.3: strict digits; repeated values must agree
            if ve == vs:
                return _fail(res, 400, "Invalid Content-Length.")
            cl = 0
            for i in range(vs, ve):
                c = buf[i]
                if not (48 <= c <= 57):
                    return _fail(res, 400, "Invalid Content-Length.")
                if cl > (PY_SSIZE_T_MAX - (c - 48)) // 10:
                    return _fail(res, 400, "Invalid Content-Length.")
                cl = cl * 10 + (c - 48)
            if content_length >= 0 and content_length != cl:
                return _fail(res, 400, "Invalid Content-Length.")
            content_length = cl
        elif _ieq(buf + ls, ne - ls, "transfer-encoding", 17):
            has_te = True
        elif _ieq(buf + ls, ne - ls, "connection", 10):
            # RFC 9110 §7.6.1: comma-separated list of case-insensitive options
            tok_s = vs
            while tok_s < ve:
                tok_e = tok_s
                while tok_e < ve and buf[tok_e] != b',':
                    tok_e += 1
                i = tok_e
                while tok_s < i and (buf[tok_s] == GG_SP or buf[tok_s] == GG_HT):
                    tok_s += 1
                while i > tok_s and (buf[i - 1] == GG_SP or buf[i - 1] == GG_HT):
                    i -= 1
                if _ieq(buf + tok_s, i - tok_s, "close", 5):
                    conn_close = True
                elif _ieq(buf + tok_s, i - tok_s, "keep-alive", 10):
                    conn_keep = True
                tok_s = tok_e + 1

        headers.append((_lower_name(buf + ls, ne - ls),
                        PyUnicode_DecodeLatin1(<const char *>(buf + vs), ve - vs, NULL)))
        ls = le + 2

    if has_te:
        if version == 10:
            # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing
            return _fail(res, 400, "Transfer-Encoding is not allowed in HTTP/1.0.")
        if content_length >= 0:
            # RFC 9112 §6.1: both present is a smuggling vector; refuse
            return _fail(res, 400, "Both Transfer-Encoding and Content-Length.")
        return _fail(res, 411, "Chunked request bodies are not supported; send Content-Length.")
    if version == 11 and host_count == 0:
        return _fail(res, 400, "Missing Host header.")    # RFC 9112 §3.2

    cdef str path
    if pth_e == pth_s:
        path = "/"                                      # absolute-form without a path
    else:
        path = _decode_path(buf + pth_s, pth_e - pth_s, res)
        if path is None:
            return None

    # The query must decode to UTF-8 as the path must (a NUL is left to the checks of each
    # value: channel ids refuse control characters): query_params() decodes it strictly, and
    # '%ff' and '%fe%fd' must not both become U+FFFD - the same id twice.  Checking the
    # decoded whole is the same as checking each key and value: '&', '=' and '+' are ASCII,
    # which no multi-byte sequence can straddle.
    if qe > qs and memchr(buf + qs, b'%', qe - qs) != NULL:
        if _decode_path(buf + qs, qe - qs, res, "Invalid query string.", True) is None:
            return None

    cdef Request r = Request.__new__(Request)
    r.method = PyUnicode_DecodeASCII(<const char *>(buf + start), m_end - start, NULL)
    r.target = PyUnicode_DecodeASCII(<const char *>(buf + t_start), t_end - t_start, NULL)
    r.path = path
    r.query = PyUnicode_DecodeASCII(<const char *>(buf + qs), qe - qs, NULL) if qe > qs else ""
    r.version = version
    r.headers = headers
    if version == 11:
        r.keep_alive = not conn_close
    else:
        r.keep_alive = conn_keep and not conn_close
    r.content_length = content_length
    r.body = b""
    r.peer = None
    res.consumed = end
    res.status = 0
    res.explain = NULL
    return r


def parse(data, Py_ssize_t max_head_size=8192, int max_headers=100):
    """parse(data, max_head_size=8192, max_headers=100) -> (status, request, consumed, explain)

    Python front of ``parse_head``.  ``status`` is 0 when the head is complete (``request`` set,
    ``consumed`` = size of the head) or incomplete (``request`` None, ``consumed`` 0); otherwise
    it is the HTTP error status and ``explain`` says why.
    """
    cdef bytes b = data if type(data) is bytes else bytes(data)
    cdef HeadResult res
    cdef Request r = parse_head(<const unsigned char *>PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b),
                                max_head_size, max_headers, &res)
    explain = None
    if res.status != 0 and res.explain != NULL:
        explain = res.explain.decode("ascii")
    return res.status, r, res.consumed, explain
