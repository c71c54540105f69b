"""gogin._core.http: the sans-I/O request-head parser, tested on raw bytes."""

import string
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gogin._core.http import Request, parse

UPGRADE = (
    b"GET /ws/chat/room%201?token=abc&x=1 HTTP/1.1\r\n"
    b"Host: example.com:8080\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Origin: http://example.com\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n"
    b"Cookie: sessionid=abcdef0123456789; csrftoken=xyz\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"\r\n"
)

POST = (
    b"POST /pub?id=ch1 HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"Content-Length: 5\r\n"
    b"Event-Id: 42\r\n"
    b"\r\n"
    b"hello"
)


def ok(data, **kw):
    status, req, consumed, explain = parse(data, **kw)
    assert status == 0 and explain is None, (status, explain)
    assert isinstance(req, Request)
    return req, consumed


def err(data, **kw):
    status, req, consumed, explain = parse(data, **kw)
    assert req is None and consumed == 0
    assert status != 0 and explain, (data, status, explain)
    return status, explain


# ---------------------------------------------------------------- valid heads

def test_upgrade_head():
    req, consumed = ok(UPGRADE)
    assert consumed == len(UPGRADE)
    assert req.method == "GET"
    assert req.target == "/ws/chat/room%201?token=abc&x=1"
    assert req.path == "/ws/chat/room 1"
    assert req.query == "token=abc&x=1"
    assert req.version == 11
    assert req.keep_alive is True
    assert req.content_length == -1
    assert req.body == b"" and req.peer is None
    assert req.headers[0] == ("host", "example.com:8080")
    assert req.get("upgrade") == "websocket"
    assert req.get("SEC-WEBSOCKET-KEY") == "dGhlIHNhbXBsZSBub25jZQ=="
    assert req.get("Sec-WebSocket-Version") == "13"
    assert req.get("missing") is None
    assert req.get("missing", "d") == "d"
    assert req.query_params() == {"token": "abc", "x": "1"}
    assert "GET" in repr(req) and "/ws/chat" in repr(req)


def test_post_with_content_length():
    req, consumed = ok(POST)
    assert POST[consumed:] == b"hello"
    assert req.method == "POST"
    assert req.content_length == 5
    assert req.path == "/pub"
    assert req.query_params() == {"id": "ch1"}
    assert req.get("event-id") == "42"


def test_repeated_headers_and_case_insensitive_lookup():
    req, _ = ok(b"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX-B:3\r\nX-A:   4  \t\r\n\r\n")
    assert req.get_all("X-A") == ["1", "2", "4"]
    assert req.get("x-A") == "1"
    assert req.get("x-b") == "3"
    assert req.get_all("nope") == []
    assert [k for k, _ in req.headers] == ["host", "x-a", "x-a", "x-b", "x-a"]


def test_value_ows_stripped_and_latin1():
    req, _ = ok(b"GET / HTTP/1.1\r\nHost: h\r\nX: \t a\tb  \r\nY: caf\xe9\r\nZ:\r\n\r\n")
    assert req.get("x") == "a\tb"
    assert req.get("y") == "caf\u00e9"
    assert req.get("z") == ""


def test_query_and_fragment():
    req, _ = ok(b"GET /a?b=1&b=2&c=&d=%41#frag HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req.path == "/a"
    assert req.query == "b=1&b=2&c=&d=%41"
    assert req.query_params() == {"b": "2", "c": "", "d": "A"}
    req, _ = ok(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req.query == "" and req.query_params() == {}
    req, _ = ok(b"GET /pub?id=caf%C3%A9/%E2%82%AC&x=a+b%zz HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req.query_params() == {"id": "caf\u00e9/\u20ac", "x": "a b%zz"}


@pytest.mark.parametrize("raw, path", [
    (b"/a%2Fb", "/a/b"),
    (b"/%E2%82%AC", "/\u20ac"),
    (b"/%zz%4", "/%zz%4"),          # malformed escapes stay as they are (unquote semantics)
    (b"/%", "/%"),
    (b"/a+b", "/a+b"),              # '+' is not a space in a path
    (b"/" + b"%41" * 400, "/" + "A" * 400),   # longer than the stack buffer
])
def test_percent_decoding(raw, path):
    req, _ = ok(b"GET " + raw + b" HTTP/1.1\r\nHost: h\r\n\r\n", max_head_size=65536)
    assert req.path == path == unquote(raw.decode())


def test_absolute_form_and_asterisk():
    req, _ = ok(b"GET http://example.com/x/y?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (req.path, req.query, req.target) == ("/x/y", "q=1", "http://example.com/x/y?q=1")
    req, _ = ok(b"GET HTTPS://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert req.path == "/"
    req, _ = ok(b"GET http://example.com?a=b HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert (req.path, req.query) == ("/", "a=b")
    req, _ = ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert req.path == "*" and req.target == "*"


@pytest.mark.parametrize("version, connection, keep_alive", [
    (b"1.1", None, True),
    (b"1.1", b"close", False),
    (b"1.1", b"Upgrade, CLOSE", False),
    (b"1.1", b"keep-alive", True),
    (b"1.0", None, False),
    (b"1.0", b"Keep-Alive", True),
    (b"1.0", b"foo ,  keep-alive ", True),
    (b"1.0", b"keep-alive, close", False),
    (b"1.0", b"close", False),
])
def test_keep_alive(version, connection, keep_alive):
    head = b"GET / HTTP/" + version + b"\r\nHost: h\r\n"
    if connection is not None:
        head += b"Connection: " + connection + b"\r\n"
    req, _ = ok(head + b"\r\n")
    assert req.keep_alive is keep_alive
    assert req.version == (10 if version == b"1.0" else 11)


def test_http10_without_host_is_fine_and_minor_versions():
    req, _ = ok(b"GET / HTTP/1.0\r\n\r\n")
    assert req.version == 10 and req.headers == []
    req, _ = ok(b"GET / HTTP/1.9\r\nHost: h\r\n\r\n")   # RFC 9110 §2.5: handled as 1.1
    assert req.version == 11


def test_pipelined_heads():
    second = b"GET /two HTTP/1.1\r\nHost: h\r\n\r\n"
    data = POST + second
    req, consumed = ok(data)
    assert consumed == len(POST) - 5
    assert data[consumed + req.content_length:] == second
    req2, consumed2 = ok(data[consumed + req.content_length:])
    assert req2.path == "/two" and consumed2 == len(second)
    data = UPGRADE + second
    req, consumed = ok(data)
    assert data[consumed:] == second


def test_leading_empty_lines_skipped():
    data = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"
    req, consumed = ok(data)
    assert consumed == len(data) and req.path == "/"


def test_content_length_repeated_agreeing_and_zero():
    req, _ = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7\r\ncontent-length: 007\r\n\r\n")
    assert req.content_length == 7
    req, _ = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n")
    assert req.content_length == 0
    req, _ = ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n")
    assert req.content_length == 2**63 - 1


def test_accepts_bytes_like():
    assert parse(bytearray(UPGRADE))[0] == 0
    assert parse(memoryview(UPGRADE))[2] == len(UPGRADE)


# ---------------------------------------------------------------- errors

def H(*lines, version=b"HTTP/1.1", req=b"GET /"):
    return req + b" " + version + b"\r\n" + b"".join(l + b"\r\n" for l in lines) + b"\r\n"


@pytest.mark.parametrize("data, status, explain", [
    # request line
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b"GET /\r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b"GET / http/1.1\r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b"GET / HTTP/1.10\r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b"GET / HTTP/1\r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b" GET / HTTP/1.1\r\nHost: h\r\n\r\n", 400, "Malformed request line."),
    (b"\x16\x03\x01\x02\x00\x01\x00", 400, "Malformed request line."),   # TLS hello, early
    (b"GET", None, None),                                                  # incomplete
    (b"\r\x00", 400, "Malformed request line."),
    (H(b"Host: h", version=b"HTTP/2.0"), 505, "HTTP version not supported."),
    (H(b"Host: h", version=b"HTTP/2"), 505, "HTTP version not supported."),
    (H(b"Host: h", version=b"HTTP/0.9"), 505, "HTTP version not supported."),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP version not supported."),
    # request target
    (H(b"Host: h", req=b"GET a/b"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"GET *"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"CONNECT example.com:443"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"GET ftp://x/"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"GET http:///x"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"GET /\x7f"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"GET /caf\xc3\xa9"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"GET /a\x00b"), 400, "Invalid request target."),
    (H(b"Host: h", req=b"GET /a%00b"), 400, "Invalid request path."),
    (H(b"Host: h", req=b"GET /%C3%28"), 400, "Invalid request path."),
    (H(b"Host: h", req=b"GET /%ED%A0%80"), 400, "Invalid request path."),   # surrogate
    # the query decodes to UTF-8 too: '%ff' and '%fe%fd' were both read as U+FFFD (one id)
    (H(b"Host: h", req=b"GET /pub?id=%ff"), 400, "Invalid query string."),
    (H(b"Host: h", req=b"GET /pub?id=%fe%fd"), 400, "Invalid query string."),
    (H(b"Host: h", req=b"GET /pub?a=1&id=ok%C3%28"), 400, "Invalid query string."),
    # line endings / control characters
    (b"GET / HTTP/1.1\nHost: h\n\n", 400, "Bare LF in request head."),
    (b"GET / HTTP/1.1\r\nHost: h\n\r\n", 400, "Bare LF in request head."),
    (b"\nGET / HTTP/1.1\r\n\r\n", 400, "Bare LF in request head."),
    (H(b"Host: h", b"X: a\rb"), 400, "Invalid header value."),
    (H(b"Host: h", b"X: a\x00b"), 400, "Invalid header value."),
    (H(b"Host: h", b"X: a\x7fb"), 400, "Invalid header value."),
    (H(b"Host: h", b"X: a\x1bb"), 400, "Invalid header value."),
    # header names
    (H(b"Host: h", b"X-A : 1"), 400, "Whitespace between header name and colon."),
    (H(b"Host: h", b"X-A\t: 1"), 400, "Whitespace between header name and colon."),
    (H(b"Host: h", b"X-A 1"), 400, "Whitespace between header name and colon."),
    (H(b"Host: h", b": 1"), 400, "Invalid header name."),
    (H(b"Host: h", b"X(A): 1"), 400, "Invalid header name."),
    (H(b"Host: h", b"NoColon"), 400, "Invalid header name."),
    (H(b"Host: h", b"X\xe9: 1"), 400, "Invalid header name."),
    (H(b"Host: h", b"X: 1", b" folded"), 400, "Obsolete line folding is not supported."),
    (H(b"Host: h", b"X: 1", b"\tfolded"), 400, "Obsolete line folding is not supported."),
    # Host
    (H(), 400, "Missing Host header."),
    (H(b"Host: a", b"Host: b"), 400, "Multiple Host headers."),
    # bodies
    (H(b"Host: h", b"Content-Length: -1"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length: +1"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length: 1 2"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length: 5, 5"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length: 0x10"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length:"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length: 5", b"Content-Length: 6"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length: 9223372036854775808"), 400, "Invalid Content-Length."),
    (H(b"Host: h", b"Content-Length: 99999999999999999999999999"), 400,
     "Invalid Content-Length."),
    (H(b"Host: h", b"Transfer-Encoding: chunked"), 411,
     "Chunked request bodies are not supported; send Content-Length."),
    (H(b"Host: h", b"Transfer-Encoding: chunked", b"Content-Length: 3"), 400,
     "Both Transfer-Encoding and Content-Length."),
    (H(b"Transfer-Encoding: chunked", version=b"HTTP/1.0"), 400,
     "Transfer-Encoding is not allowed in HTTP/1.0."),
])
def test_malformed(data, status, explain):
    if status is None:
        assert parse(data) == (0, None, 0, None)
        return
    assert err(data) == (status, explain)


# ---------------------------------------------------------------- truncation and limits

@pytest.mark.parametrize("head", [UPGRADE, POST[:-5], b"\r\nGET / HTTP/1.0\r\n\r\n",
                                  H(b"Host: h", b"X:", b"Y:  v  ")])
def test_every_prefix_is_incomplete(head):
    for i in range(len(head)):
        assert parse(head[:i]) == (0, None, 0, None), head[:i]
    assert parse(head)[2] == len(head)


def test_head_size_limit():
    size = len(UPGRADE)
    assert ok(UPGRADE, max_head_size=size)[1] == size              # exactly at the limit
    assert err(UPGRADE, max_head_size=size - 1) == (431, "Request header fields too large.")
    # over the limit without a terminator yet: rejected at once, no waiting
    big = b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 10000
    assert err(big) == (431, "Request header fields too large.")
    assert parse(big[:8191]) == (0, None, 0, None)
    assert err(big[:8192]) == (431, "Request header fields too large.")
    # a complete head followed by a body beyond the limit is fine
    assert ok(POST[:-5] + b"x" * 100000)[1] == len(POST) - 5
    assert err(b"GET", max_head_size=0)[0] == 431


def test_header_count_limit():
    head = H(b"Host: h", *[b"X-%d: v" % i for i in range(9)])      # 10 header lines
    assert len(ok(head, max_headers=10)[0].headers) == 10
    assert err(head, max_headers=9) == (431, "Too many header fields.")
    # also detected before the head is complete
    assert err(head[:-2], max_headers=9)[0] == 431
    assert err(H(*[b"X: v"] * 101))[0] == 431                         # default 100


# ---------------------------------------------------------------- property tests

TCHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
token = st.text(alphabet=TCHARS, min_size=1, max_size=12)
SPECIAL = {"host", "content-length", "transfer-encoding", "connection"}
header_name = token.filter(lambda n: n.lower() not in SPECIAL)
# field value: VCHAR / obs-text with interior SP/HTAB (OWS at the edges is stripped)
value_char = st.sampled_from([chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0x80, 0x100)])
header_value = st.builds(
    lambda parts: " ".join(parts),
    st.lists(st.text(alphabet=value_char, min_size=1, max_size=10), max_size=4))
segment = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                  max_size=10)
query = st.lists(st.tuples(st.text(max_size=6), st.text(max_size=6)), max_size=4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(method=token, segments=st.lists(segment, max_size=5), q=query,
       headers=st.lists(st.tuples(header_name, header_value), max_size=8),
       version=st.sampled_from(["1.0", "1.1"]),
       content_length=st.none() | st.integers(0, 2**63 - 1))
def test_round_trip(method, segments, q, headers, version, content_length):
    path = "/" + "/".join(quote(s, safe="") for s in segments)
    qs = "&".join(quote(k, safe="") + "=" + quote(v, safe="") for k, v in q)
    target = path + ("?" + qs if qs else "")
    lines = [f"{method} {target} HTTP/{version}", "Host: example.org"]
    lines += [f"{n}: {v}" for n, v in headers]
    if content_length is not None:
        lines.append(f"Content-Length: {content_length}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    req, consumed = ok(data + b"trailing", max_head_size=1 << 20)
    assert consumed == len(data)
    assert req.method == method
    assert req.target == target
    assert req.path == unquote(path) == "/" + "/".join(segments)
    assert req.query == qs
    assert req.version == (10 if version == "1.0" else 11)
    expected = [("host", "example.org")] + [(n.lower(), v) for n, v in headers]
    if content_length is not None:
        expected.append(("content-length", str(content_length)))
    assert req.headers == expected
    assert req.content_length == (-1 if content_length is None else content_length)
    assert req.keep_alive == (version == "1.1")
    for n, v in headers:
        assert req.get(n.upper()) == next(v2 for n2, v2 in headers if n2.lower() == n.lower())
    if q:
        assert req.query_params() == dict(q)


def check_outcome(data, **kw):
    status, req, consumed, explain = parse(data, **kw)
    if status == 0:
        assert explain is None
        if req is None:
            assert consumed == 0
        else:
            assert 0 < consumed <= len(data)
            assert data[consumed - 4:consumed] == b"\r\n\r\n"
            assert req.version in (10, 11)
            assert isinstance(req.headers, list)
    else:
        assert req is None and consumed == 0
        assert status in (400, 411, 431, 505)
        assert isinstance(explain, str) and explain


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), max_head_size=st.integers(0, 400),
       max_headers=st.integers(0, 10))
def test_garbage_never_raises(data, max_head_size, max_headers):
    check_outcome(data, max_head_size=max_head_size, max_headers=max_headers)
    check_outcome(data)


ALPHABET = b"\r\n \t:/?%#*.,0123456789HTTPGETOST\x00\x7f\xff\xe9aA-"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_heads_never_raise(data):
    head = bytearray(data.draw(st.sampled_from([UPGRADE, POST, H(b"Host: h", b"X: y")])))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["replace", "insert", "delete", "truncate"]))
        i = data.draw(st.integers(0, max(len(head) - 1, 0)))
        if op == "replace" and head:
            head[i] = data.draw(st.sampled_from(ALPHABET))
        elif op == "insert":
            head[i:i] = data.draw(st.binary(min_size=1, max_size=4) | st.sampled_from(
                [b"\r\n", b"\n", b" ", b"%", b"\r\n\r\n", b"HTTP/2.0"]))
        elif op == "delete" and head:
            del head[i]
        else:
            del head[i:]
    check_outcome(bytes(head))
    check_outcome(bytes(head), max_head_size=len(head) // 2 + 1, max_headers=2)
