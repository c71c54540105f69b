"""RFC 6455 codec: gogin._core.frames against the RFC examples and the websockets library."""

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.frames import Frame
from websockets.frames import Opcode as WsOpcode
from websockets.streams import StreamReader

from gogin._core import frames as F
from gogin._core.frames import CloseCode, FrameParser, Opcode, encode_close, encode_frame

MASK = b"\x37\xfa\x21\x3d"  # the mask of the RFC 6455 §5.7 examples
FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def payload_of(size, seed):
    return random.Random(seed).randbytes(size)


def ws_parse_all(data, *, mask):
    """All frames in ``data`` parsed by websockets' own parser (generator driven by hand)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    out = []
    while reader.buffer:
        gen = Frame.parse(reader.read_exact, mask=mask)
        try:
            next(gen)
        except StopIteration as stop:
            out.append(stop.value)
        else:  # pragma: no cover - eof is fed, the parser can't wait
            raise AssertionError("websockets wants more bytes")
    return out


def feed_chunks(parser, data, sizes):
    events, pos, i = [], 0, 0
    while pos < len(data):
        k = max(1, sizes[i % len(sizes)]) if sizes else len(data)
        events += parser.feed(data[pos:pos + k])
        pos += k
        i += 1
    return events


# --- RFC 6455 §5.7 examples, byte for byte ---------------------------------------------------

HELLO_UNMASKED = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
HELLO_MASKED = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
FRAG = bytes([0x01, 0x03, 0x48, 0x65, 0x6C]) + bytes([0x80, 0x02, 0x6C, 0x6F])
PING_UNMASKED = bytes([0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
PONG_MASKED = bytes([0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])


def test_rfc_examples_encode():
    assert encode_frame(Opcode.TEXT, b"Hello") == HELLO_UNMASKED
    assert encode_frame(Opcode.TEXT, b"Hello", mask=MASK) == HELLO_MASKED
    assert (encode_frame(Opcode.TEXT, b"Hel", fin=False)
            + encode_frame(Opcode.CONTINUATION, b"lo")) == FRAG
    assert encode_frame(Opcode.PING, b"Hello") == PING_UNMASKED
    assert encode_frame(Opcode.PONG, b"Hello", mask=MASK) == PONG_MASKED
    b256 = bytes(range(256))
    assert encode_frame(Opcode.BINARY, b256) == b"\x82\x7e\x01\x00" + b256
    b64k = bytes(65536)
    assert encode_frame(Opcode.BINARY, b64k) == (
        b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + b64k)


def test_rfc_examples_parse():
    assert FrameParser().feed(HELLO_MASKED) == [("message", Opcode.TEXT, b"Hello")]
    assert FrameParser().feed(PONG_MASKED) == [("pong", b"Hello")]
    p = FrameParser(require_mask=False)
    assert p.feed(HELLO_UNMASKED + FRAG + PING_UNMASKED) == [
        ("message", 1, b"Hello"), ("message", 1, b"Hello"), ("ping", b"Hello")]
    p = FrameParser(require_mask=False)
    b64k = bytes(range(256)) * 256
    assert p.feed(b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00" + b64k) == [("message", 2, b64k)]


@pytest.mark.parametrize("n,size", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10),
                                    (1 << 32, 10)])
def test_header_sizes(n, size):
    assert F.header_size(n) == size
    if n <= 65536:
        frame = encode_frame(Opcode.BINARY, bytes(n))
        assert len(frame) == size + n
        assert frame[1] & 0x7F == {2: n, 4: 126, 10: 127}[size]
        assert len(encode_frame(Opcode.BINARY, bytes(n), mask=MASK)) == size + 4 + n


def test_accept_key():
    # RFC 6455 §1.3 / §4.2.2 example
    assert F.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_enums_visible():
    assert Opcode.PONG == 0xA and CloseCode.MESSAGE_TOO_BIG == 1009
    from gogin._core import CloseCode as C2, Opcode as O2
    assert O2 is Opcode and C2 is CloseCode


# --- oracle: websockets ----------------------------------------------------------------------

DATA_OPS = [Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION]
CTRL_OPS = [Opcode.PING, Opcode.PONG, Opcode.CLOSE]


@FAST
@given(op=st.sampled_from(DATA_OPS + CTRL_OPS), size=st.integers(0, 70000),
       fin=st.booleans(), seed=st.integers(0, 2**32), masked=st.booleans())
def test_our_frames_parsed_by_websockets(op, size, fin, seed, masked):
    if op in CTRL_OPS:
        size, fin = size % 126, True
    data = payload_of(size, seed)
    mask = payload_of(4, seed + 1) if masked else None
    frame = encode_frame(op, data, fin=fin, mask=mask)
    (parsed,) = ws_parse_all(frame, mask=masked)
    assert (parsed.opcode.value, bytes(parsed.data), parsed.fin) == (op, data, fin)


@st.composite
def client_stream(draw):
    """A list of messages/control frames serialized by websockets (masked), and the events
    our parser must produce for them."""
    frames, expected = [], []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
        if kind in ("ping", "pong"):
            data = payload_of(draw(st.integers(0, 125)), draw(st.integers(0, 2**32)))
            frames.append(Frame(WsOpcode.PING if kind == "ping" else WsOpcode.PONG, data))
            expected.append((kind, data))
            continue
        if kind == "text":
            data = draw(st.text(max_size=300)).encode() * draw(st.sampled_from([1, 1, 50, 200]))
            op = WsOpcode.TEXT
        else:
            data = payload_of(draw(st.integers(0, 70000)), draw(st.integers(0, 2**32)))
            op = WsOpcode.BINARY
        cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
        parts = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        for i, part in enumerate(parts):
            frames.append(Frame(op if i == 0 else WsOpcode.CONT, part, fin=i == len(parts) - 1))
            if i < len(parts) - 1 and draw(st.booleans()):  # control frame between fragments
                frames.append(Frame(WsOpcode.PING, b"between"))
                expected.append(("ping", b"between"))
        expected.append(("message", int(op), data))
    if draw(st.booleans()):
        frames.append(Frame(WsOpcode.CLOSE, encode_close(1000, "bye \u00e9")))
        expected.append(("close", 1000, "bye \u00e9"))
    return b"".join(f.serialize(mask=True) for f in frames), expected


@FAST
@given(client_stream())
def test_websockets_client_frames_parsed_by_us(stream):
    data, expected = stream
    assert FrameParser().feed(data) == expected


@FAST
@given(client_stream(), st.lists(st.integers(1, 3000), min_size=1, max_size=20))
def test_incremental_feeding(stream, sizes):
    data, expected = stream
    whole = FrameParser().feed(data)
    assert whole == expected
    assert feed_chunks(FrameParser(), data, sizes) == whole


def test_byte_at_a_time():
    data = (encode_frame(Opcode.TEXT, "h\u00e9llo \U0001F600".encode(), fin=False, mask=MASK)
            + encode_frame(Opcode.PING, b"p", mask=MASK)
            + encode_frame(Opcode.CONTINUATION, bytes(300), mask=MASK)
            + encode_frame(Opcode.BINARY, bytes(70000), mask=MASK)
            + encode_frame(Opcode.CLOSE, encode_close(1001), mask=MASK))
    assert feed_chunks(FrameParser(), data, [1]) == FrameParser().feed(data) == [
        ("ping", b"p"),
        ("message", 1, "h\u00e9llo \U0001F600".encode() + bytes(300)),
        ("message", 2, bytes(70000)),
        ("close", 1001, ""),
    ]


def test_non_minimal_lengths_accepted():
    body = b"abc"
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(body))
    f16 = b"\x82\xfe\x00\x03" + MASK + masked
    f64 = b"\x82\xff" + struct.pack("!Q", 3) + MASK + masked
    assert FrameParser().feed(f16 + f64) == [("message", 2, body)] * 2


def test_unmasked_accepted_when_not_required():
    assert FrameParser(require_mask=False).feed(encode_frame(Opcode.BINARY, b"x")) == [
        ("message", 2, b"x")]


# --- errors ----------------------------------------------------------------------------------

def m(op, data=b"", fin=True, rsv=0):
    return encode_frame(op, data, fin=fin, mask=MASK, rsv=rsv)


ERRORS = [
    ("rsv1", m(Opcode.TEXT, b"x", rsv=4), 1002),
    ("rsv2", m(Opcode.TEXT, b"x", rsv=2), 1002),
    ("rsv3", m(Opcode.PING, b"", rsv=1), 1002),
    *[(f"opcode {op:#x}", m(op, b"x"), 1002) for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF)],
    ("unmasked", encode_frame(Opcode.TEXT, b"x"), 1002),
    ("64-bit length top bit", b"\x82\xff\x80" + bytes(7) + MASK, 1002),
    ("ping > 125", m(Opcode.PING, bytes(126)), 1002),
    ("close > 125", m(Opcode.CLOSE, encode_close(1000, "x" * 124)), 1002),
    ("fragmented ping", m(Opcode.PING, b"x", fin=False), 1002),
    ("fragmented close", m(Opcode.CLOSE, b"", fin=False), 1002),
    ("continuation first", m(Opcode.CONTINUATION, b"x"), 1002),
    ("text inside message", m(Opcode.TEXT, b"a", fin=False) + m(Opcode.TEXT, b"b"), 1002),
    ("binary inside message", m(Opcode.BINARY, b"a", fin=False) + m(Opcode.BINARY, b"b"), 1002),
    ("continuation after end", m(Opcode.TEXT, b"a") + m(Opcode.CONTINUATION, b"b"), 1002),
    ("too big", m(Opcode.BINARY, bytes(1025)), 1009),
    ("too big fragmented", m(Opcode.BINARY, bytes(1000), fin=False)
     + m(Opcode.CONTINUATION, bytes(25)), 1009),
    ("bad utf-8", m(Opcode.TEXT, b"\xff"), 1007),
    ("surrogate", m(Opcode.TEXT, b"\xed\xa0\x80"), 1007),
    ("overlong", m(Opcode.TEXT, b"\xc0\xaf"), 1007),
    ("above U+10FFFF", m(Opcode.TEXT, b"\xf4\x90\x80\x80"), 1007),
    ("truncated at end", m(Opcode.TEXT, b"ok\xe2\x82"), 1007),
    ("truncated at end, fragmented", m(Opcode.TEXT, b"ok\xe2", fin=False)
     + m(Opcode.CONTINUATION, b"\x82"), 1007),
    ("invalid across fragments", m(Opcode.TEXT, b"\xe2\x82", fin=False)
     + m(Opcode.CONTINUATION, b"\x41"), 1007),
    ("close length 1", m(Opcode.CLOSE, b"\x03"), 1002),
    ("close reason bad utf-8", m(Opcode.CLOSE, encode_close(1000, b"\xff")), 1007),
]


@pytest.mark.parametrize("name,data,code", ERRORS, ids=[e[0] for e in ERRORS])
@pytest.mark.parametrize("chunk", [0, 1])
def test_errors(name, data, code, chunk):
    p = FrameParser(max_message_size=1024)
    events = feed_chunks(p, data, [chunk] if chunk else [])
    assert events[-1][:2] == ("error", code), events
    assert isinstance(events[-1][2], str) and events[-1][2]
    assert all(e[0] != "error" for e in events[:-1])
    assert p.failed
    assert p.feed(m(Opcode.TEXT, b"later")) == []


@pytest.mark.parametrize("code,ok", [
    (0, False), (999, False), (1000, True), (1001, True), (1002, True), (1003, True),
    (1004, False), (1005, False), (1006, False), (1007, True), (1008, True), (1009, True),
    (1010, True), (1011, True), (1012, True), (1013, True), (1014, True), (1015, False),
    (1016, False), (2000, False), (2999, False), (3000, True), (4000, True), (4999, True),
    (5000, False), (65535, False),
])
def test_close_codes(code, ok):
    events = FrameParser().feed(m(Opcode.CLOSE, encode_close(code, "r\u00e9ason")))
    if ok:
        assert events == [("close", code, "r\u00e9ason")]
    else:
        assert events[0][:2] == ("error", 1002)


def test_empty_close_is_1005_and_ends_parsing():
    p = FrameParser()
    assert p.feed(m(Opcode.CLOSE) + m(Opcode.TEXT, b"after")) == [("close", 1005, "")]
    assert p.failed and p.feed(m(Opcode.TEXT, b"x")) == []


def test_utf8_split_across_fragments_valid():
    text = "a\u00e9\u20ac\U0001F600z".encode()
    for cut in range(len(text) + 1):
        data = m(Opcode.TEXT, text[:cut], fin=False) + m(Opcode.CONTINUATION, text[cut:])
        assert FrameParser().feed(data) == [("message", 1, text)], cut


def test_utf8_fail_fast_mid_frame():
    # The header announces 1000 bytes; the error comes with the first invalid byte.
    frame = m(Opcode.TEXT, b"abc\xff" + bytes(996))
    p = FrameParser()
    assert p.feed(frame[:8 + 4]) == [("error", 1007, "invalid UTF-8")]
    # also across a fragment boundary, before the continuation ends
    p = FrameParser()
    frame2 = m(Opcode.CONTINUATION, b"\x28" + bytes(500))
    assert p.feed(m(Opcode.TEXT, b"\xe2\x82", fin=False) + frame2[:9]) == [
        ("error", 1007, "invalid UTF-8")]


def test_binary_is_not_utf8_checked():
    assert FrameParser().feed(m(Opcode.BINARY, b"\xff\xfe")) == [("message", 2, b"\xff\xfe")]


def test_ping_inside_fragmented_message():
    data = (m(Opcode.BINARY, b"one ", fin=False) + m(Opcode.PING, b"p1")
            + m(Opcode.CONTINUATION, b"two ", fin=False) + m(Opcode.PONG, b"p2")
            + m(Opcode.CLOSE, encode_close(1000), fin=True)[:0]
            + m(Opcode.CONTINUATION, b"three"))
    assert FrameParser().feed(data) == [
        ("ping", b"p1"), ("pong", b"p2"), ("message", 2, b"one two three")]


def test_oversized_detected_before_payload():
    p = FrameParser(max_message_size=1 << 16)
    header = m(Opcode.BINARY, bytes(1 << 20))[:14]  # header only, no payload yet
    assert p.feed(header) == [("error", 1009, "message too big")]
    p = FrameParser(max_message_size=100)
    assert p.feed(m(Opcode.TEXT, b"x" * 60, fin=False) + m(Opcode.CONTINUATION, b"y" * 41)[:8]) \
        == [("error", 1009, "message too big")]
    # exactly the limit is fine
    assert FrameParser(max_message_size=100).feed(m(Opcode.BINARY, bytes(100))) == [
        ("message", 2, bytes(100))]


def test_many_frames_one_feed_and_reuse():
    frames = b"".join(m(Opcode.TEXT, f"msg {i}".encode()) for i in range(1000))
    p = FrameParser()
    assert p.feed(frames) == [("message", 1, f"msg {i}".encode()) for i in range(1000)]
    big = m(Opcode.BINARY, payload_of(300000, 1))
    assert p.feed(big + frames[:22]) == [("message", 2, payload_of(300000, 1)),
                                         ("message", 1, b"msg 0"), ("message", 1, b"msg 1")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.booleans(), st.integers(1, 50))
def test_garbage_never_crashes(data, require_mask, chunk):
    p = FrameParser(max_message_size=200, require_mask=require_mask)
    events = feed_chunks(p, data, [chunk])
    kinds = [e[0] for e in events]
    assert set(kinds) <= {"message", "ping", "pong", "close", "error"}
    if "error" in kinds or "close" in kinds:
        assert kinds[-1] in ("error", "close") and p.failed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([m(Opcode.TEXT, b"ok"), m(Opcode.TEXT, b"\xe2\x82", fin=False),
                                 m(Opcode.CONTINUATION, b"\xac"), m(Opcode.PING, b"p"),
                                 m(Opcode.BINARY, b"\x00", fin=False), m(Opcode.CLOSE, b"\x03"),
                                 b"\x81\x81", MASK, b"\xff"]), max_size=12), st.integers(1, 7))
def test_structured_garbage_chunking_invariant(parts, chunk):
    data = b"".join(parts)
    assert feed_chunks(FrameParser(), data, [chunk]) == FrameParser().feed(data)


# --- UTF-8 validator -------------------------------------------------------------------------

def py_valid(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_utf8_all_two_byte_sequences():
    for a in range(256):
        for b in range(256):
            s = bytes((a, b))
            assert F.utf8_check(s) == py_valid(s), s


def test_utf8_three_and_four_byte_leads():
    tails = [0x7F, 0x80, 0x9F, 0xA0, 0xBF, 0xC0]
    for a in range(0xE0, 0x100):
        for b in range(256):
            for c in tails:
                s = bytes((a, b, c))
                assert F.utf8_check(s) == py_valid(s), s
                s4 = bytes((a, b, c, 0x80))
                assert F.utf8_check(s4) == py_valid(s4), s4


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), st.text(max_size=64).map(str.encode)),
       st.binary(max_size=3), st.integers(0, 20))
def test_utf8_random(data, junk, pos):
    for s in (data, data[:pos] + junk + data[pos:], b"a" * 17 + data):
        assert F.utf8_check(s) == py_valid(s)
        assert F.utf8_check(bytearray(s)) == py_valid(s)
