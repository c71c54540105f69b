"""The connection's state machine (gogin._core.connection) without sockets: bytes in, events
and bytes to send out, deadlines in ticks.  The hub acts on the same events (tests/core/test_hub.py
and tests/server drive them through real sockets)."""

import zlib

import pytest

from gogin._core.connection import ConnMachine
from gogin._core.frames import FrameParser, Opcode, encode_close, encode_frame

MASK = b"\x37\xfa\x21\x3d"
GET = (b"GET /sub/ch?x=1 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: t\r\n"
       b"Accept: */*\r\n\r\n")
UPGRADE = (b"GET /ws/ch HTTP/1.1\r\nHost: example.org\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def post(body, path=b"/pub?id=ch", extra=b""):
    return (b"POST " + path + b" HTTP/1.1\r\nHost: h\r\n" + extra
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


def frame(opcode, payload, fin=True, rsv=0):
    return encode_frame(opcode, payload, fin=fin, mask=MASK, rsv=rsv)


def server_frames(data):
    """The frames the machine asks to send, parsed as a client would (unmasked)."""
    return FrameParser(require_mask=False).feed(data)


def requests_of(events):
    return [e[1] for e in events if e[0] == "request"]


def summary(req):
    return (req.method, req.target, req.path, req.query, req.version, req.headers,
            req.keep_alive, req.content_length, req.body)


# --- HTTP framing -----------------------------------------------------------------------------

def test_request_in_one_feed():
    m = ConnMachine()
    assert m.state == "head"
    [req] = requests_of(m.feed(GET))
    assert (req.method, req.path, req.query) == ("GET", "/sub/ch", "x=1")
    assert req.body == b""
    assert m.state == "pending"
    assert m.deadline == 0                 # Python's decision has its own timeouts
    assert m.keep_alive


@pytest.mark.parametrize("data", [GET, post(b"hello world")], ids=["get", "post"])
def test_head_split_at_every_byte_gives_the_same_request(data):
    whole = summary(requests_of(ConnMachine().feed(data))[0])
    for cut in range(1, len(data)):
        m = ConnMachine()
        assert m.feed(data[:cut]) == [], cut
        assert m.state in ("head", "body"), (cut, m.state)
        assert m.buffered == cut
        events = m.feed(data[cut:])
        assert [e[0] for e in events] == ["request"], cut
        assert summary(events[0][1]) == whole, cut
        assert m.state == "pending" and m.buffered == 0


def test_head_fed_one_byte_at_a_time():
    m = ConnMachine()
    events = []
    for i in range(len(GET)):
        events += m.feed(GET[i:i + 1])
    [req] = requests_of(events)
    assert summary(req) == summary(requests_of(ConnMachine().feed(GET))[0])


def test_pipelined_requests_in_one_feed_answered_at_once():
    data = GET + post(b"abc") + GET.replace(b"/sub/ch", b"/sub/other")
    m = ConnMachine(answer=True)
    reqs = requests_of(m.feed(data))
    assert [(r.method, r.path, r.body) for r in reqs] == [
        ("GET", "/sub/ch", b""), ("POST", "/pub", b"abc"), ("GET", "/sub/other", b"")]
    assert m.state == "head" and m.buffered == 0
    assert m.deadline == 600               # keep-alive timeout from tick 0


def test_pipelined_requests_wait_behind_a_pending_one():
    data = GET + post(b"abc") + GET
    m = ConnMachine()
    assert [r.method for r in requests_of(m.feed(data))] == ["GET"]
    assert m.state == "pending"
    assert m.buffered == len(data) - len(GET)
    # bytes arriving while Python decides are kept too
    assert m.feed(b"GET /late HTTP/1.1\r\n") == []
    assert [r.method for r in requests_of(m.to_head())] == ["POST"]
    assert [r.method for r in requests_of(m.to_head())] == ["GET"]
    late = m.to_head()
    assert late == [] and m.state == "head" and m.buffered == len(b"GET /late HTTP/1.1\r\n")
    [req] = requests_of(m.feed(b"Host: h\r\n\r\n"))
    assert req.path == "/late"


def test_body_across_feeds_and_100_continue():
    head = (b"POST /pub?id=ch HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
            b"Content-Length: 10\r\n\r\n")
    m = ConnMachine()
    events = m.feed(head)
    assert events == [("continue", b"HTTP/1.1 100 Continue\r\n\r\n")]
    assert m.state == "body"
    assert m.feed(b"01234") == []
    assert m.state == "body"
    [req] = requests_of(m.feed(b"56789"))
    assert req.body == b"0123456789"
    assert m.state == "pending" and m.buffered == 0


def test_no_100_continue_when_the_body_started():
    head = (b"POST /pub HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n"
            b"Content-Length: 10\r\n\r\n")
    m = ConnMachine()
    assert m.feed(head + b"012") == []
    assert m.state == "body"
    [req] = requests_of(m.feed(b"3456789" + GET))
    assert req.body == b"0123456789"
    assert m.buffered == len(GET)          # the next request waits behind the pending one


def test_keep_alive_follows_the_request():
    m = ConnMachine()
    m.feed(GET.replace(b"Accept:", b"Connection: close\r\nAccept:"))
    assert not m.keep_alive
    m2 = ConnMachine()
    m2.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert not m2.keep_alive


def test_oversized_head_is_431_and_closes():
    m = ConnMachine(max_head_size=256)
    events = m.feed(b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 300 + b"\r\n")
    assert events == [("http_error", 431, "Request header fields too large.")]
    assert m.state == "closing"
    assert m.buffered == 0                 # what it sent is not kept
    assert m.deadline == 20                # the linger timeout


def test_too_many_headers_is_431():
    m = ConnMachine(max_headers=3)
    data = b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(5)) + b"\r\n"
    assert m.feed(data) == [("http_error", 431, "Too many header fields.")]


def test_body_over_the_limit_is_413():
    m = ConnMachine(max_body_size=4)
    assert m.feed(post(b"12345")) == [("http_error", 413, "Request body too large.")]
    assert m.state == "closing"


def test_malformed_head_is_400():
    m = ConnMachine()
    [(kind, status, explain)] = m.feed(b"GET / HTTP/1.1\nHost: h\n\n")
    assert (kind, status) == ("http_error", 400)
    assert explain == "Bare LF in request head."


# --- the upgrade and WebSocket frames ---------------------------------------------------------

def test_upgrade_with_frames_right_behind_the_head():
    frames = (frame(Opcode.TEXT, b"hello") + frame(Opcode.BINARY, b"\x00\x01")
              + frame(Opcode.PING, b"p"))
    m = ConnMachine()
    [req] = requests_of(m.feed(UPGRADE + frames))
    assert req.get("upgrade") == "websocket"
    assert m.buffered == len(frames)       # kept until Python upgrades
    events = m.upgrade()
    assert m.state == "websocket"
    assert events[:2] == [("message", Opcode.TEXT, b"hello"),
                          ("message", Opcode.BINARY, b"\x00\x01")]
    kind, pong = events[2]
    assert kind == "pong"
    assert server_frames(pong) == [("pong", b"p")]
    assert len(events) == 3


def test_fragmented_message_across_feeds():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade()
    data = frame(Opcode.TEXT, b"hel", fin=False) + frame(Opcode.CONTINUATION, b"lo")
    events = []
    for i in range(len(data)):
        events += m.feed(data[i:i + 1])
    assert events == [("message", Opcode.TEXT, b"hello")]


def test_ping_answered_with_the_same_payload():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade()
    [(kind, pong)] = m.feed(frame(Opcode.PING, b"12345"))
    assert kind == "pong"
    assert pong == b"\x8a\x0512345"        # unmasked, FIN, opcode 0xA (RFC 6455 §5.5.3)
    assert m.feed(frame(Opcode.PONG, b"late")) == []    # unsolicited pong: nothing to do
    assert m.state == "websocket"


def test_client_close_is_echoed_and_the_machine_closes():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade()
    events = m.feed(frame(Opcode.CLOSE, encode_close(1001, "bye")) + frame(Opcode.TEXT, b"late"))
    [(kind, code, reply)] = events          # nothing is read after the close
    assert (kind, code) == ("close", 1001)
    assert reply == b"\x88\x02\x03\xe9"     # the code echoed, no reason (RFC 6455 §5.5.1)
    assert m.state == "closing"
    assert m.deadline == 20                 # linger
    assert m.feed(frame(Opcode.TEXT, b"more")) == []


def test_close_without_code_is_answered_with_an_empty_close():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade()
    [(kind, code, reply)] = m.feed(frame(Opcode.CLOSE, b""))
    assert (kind, code, reply) == ("close", 1005, b"\x88\x00")


@pytest.mark.parametrize("data, code, reason", [
    (encode_frame(Opcode.TEXT, b"x"), 1002, "unmasked client frame"),
    (frame(Opcode.TEXT, b"x", rsv=4), 1002, "reserved bits set"),
    (frame(Opcode.TEXT, b"\xff"), 1007, "invalid UTF-8"),
    (frame(Opcode.CLOSE, b"\x03"), 1002, "close frame too short"),
    (frame(0x3, b""), 1002, "unknown opcode"),
], ids=["unmasked", "rsv", "utf8", "short-close", "opcode"])
def test_bad_frame_closes_with_its_code(data, code, reason):
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade()
    [(kind, sent, reply)] = m.feed(data)
    assert (kind, sent) == ("close", code)
    assert server_frames(reply) == [("close", code, reason)]
    assert m.state == "closing"


def test_message_over_the_limit_is_1009():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade(max_message_size=4)
    [(kind, code, reply)] = m.feed(frame(Opcode.BINARY, b"12345"))
    assert (kind, code) == ("close", 1009)
    assert server_frames(reply) == [("close", 1009, "message too big")]


def deflated(data):
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_compressed_message_is_inflated_and_checked():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade(deflate=True)
    assert m.feed(frame(Opcode.TEXT, deflated(b"hello hello"), rsv=4)) == [
        ("message", Opcode.TEXT, b"hello hello")]
    [(kind, code, reply)] = m.feed(frame(Opcode.TEXT, deflated(b"\xff\xfe"), rsv=4))
    assert (kind, code) == ("close", 1007)
    assert server_frames(reply) == [("close", 1007, "invalid UTF-8")]


def test_compressed_garbage_is_1007_and_bomb_is_1009():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade(deflate=True)
    [(_, code, reply)] = m.feed(frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv=4))
    assert code == 1007
    assert server_frames(reply) == [("close", 1007, "invalid compressed data")]
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade(deflate=True, max_message_size=100)
    [(_, code, reply)] = m.feed(frame(Opcode.BINARY, deflated(b"a" * 1000), rsv=4))
    assert server_frames(reply) == [("close", 1009, "message too big")]


# --- timers ------------------------------------------------------------------------------------

def test_idle_new_connection_closes_at_the_header_timeout():
    m = ConnMachine(header_ticks=100)
    assert m.deadline == 100
    assert m.advance(99) is None
    assert m.advance(100) == ("close", "idle")


def test_partial_head_at_the_header_timeout_is_408():
    m = ConnMachine(header_ticks=100)
    m.feed(GET[:10])
    assert m.advance(100) == ("http_error", 408, "Request header timeout.")
    assert m.state == "closing"


def test_slow_body_at_the_timeout_is_408():
    m = ConnMachine(keepalive_ticks=50)
    m.feed(GET)
    m.advance(10)
    assert m.to_head() == []
    assert m.deadline == 60                # the keep-alive timeout restarts at the answer
    m.feed(post(b"0123456789")[:-3])
    assert m.state == "body"
    assert m.advance(60) == ("http_error", 408, "Request header timeout.")


def test_keep_alive_deadline_closes_an_idle_connection():
    m = ConnMachine(keepalive_ticks=30, answer=True)
    m.advance(5)
    m.feed(GET)
    assert m.state == "head" and m.deadline == 35
    assert m.advance(34) is None
    assert m.advance(35) == ("close", "idle")


def test_linger_deadline_after_a_close():
    m = ConnMachine(linger_ticks=7)
    m.feed(UPGRADE)
    m.upgrade()
    m.feed(frame(Opcode.CLOSE, encode_close(1000)))
    assert m.state == "closing" and m.deadline == 7
    assert m.advance(7) == ("close", "linger timeout")


def test_pings_and_ttl():
    m = ConnMachine()
    m.feed(UPGRADE)
    m.upgrade(ping_every=10, ttl=25)
    assert m.deadline == 10
    assert m.advance(10) == ("ping",)
    assert m.deadline == 20
    assert m.advance(20) == ("ping",)
    assert m.deadline == 25                # the TTL comes before the next ping
    assert m.advance(25) == ("ttl",)
