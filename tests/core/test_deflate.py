"""permessage-deflate (RFC 7692) without sockets: the codec (compress once, inflate one), the
frame parser's RSV1 rules, and the server's answer to extension offers."""

from __future__ import annotations

import zlib

import pytest

from gogin._core import Hub
from gogin._core.deflate import compress_message, inflate_message, stats
from gogin._core.frames import FrameParser, Opcode, encode_frame
from gogin.extensions import negotiate_deflate

MASK = b"\x11\x22\x33\x44"
TEXT = ('{"id":1,"channel":"news","text":"a notification, a notification, '
        'a notification"}' * 20).encode()


def client_deflate(data: bytes, bits: int = 15) -> bytes:
    """A client's compressed message payload (RFC 7692 §7.2.1): trailing 00 00 ff ff cut."""
    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def server_payload(frame: bytes) -> tuple[int, bytes]:
    """(first header byte, payload) of an unmasked server frame."""
    n = frame[1] & 0x7F
    k = 2 if n < 126 else 4 if n == 126 else 10
    return frame[0], frame[k:]


@pytest.mark.parametrize("bits", [9, 12, 15])
@pytest.mark.parametrize("data", [b"", b"x", TEXT, bytes(range(256)) * 300])
def test_compressed_frames_inflate_with_zlib(bits, data):
    b0, payload = server_payload(compress_message(data, bits))
    assert b0 == 0xC1                               # FIN + RSV1 + text
    out = zlib.decompressobj(-bits).decompress(payload + b"\x00\x00\xff\xff")
    assert out == data
    assert server_payload(compress_message(data, bits, binary=True))[0] == 0xC2


def test_each_message_is_its_own_stream():
    # no context takeover: the same message compresses to the same bytes every time
    first = compress_message(TEXT)
    assert compress_message(b"something else entirely" * 9) != first
    assert compress_message(TEXT) == first
    assert len(first) < len(TEXT) // 4


def test_inflate_client_messages():
    before = stats()["inflated"]
    assert inflate_message(client_deflate(TEXT)) == TEXT
    assert inflate_message(client_deflate(TEXT, 9)) == TEXT       # any client window
    assert inflate_message(client_deflate(b"")) == b""
    # a final block (BFINAL) ends the message; the appended tail is then ignored
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert inflate_message(c.compress(b"fin") + c.flush(zlib.Z_FINISH)) == b"fin"
    assert stats()["inflated"] == before + 4


def test_inflate_is_bounded_and_checked():
    bomb = client_deflate(b"\x00" * (8 << 20))     # 8 MiB of zeros in a few KiB
    assert len(bomb) < 16 << 10
    with pytest.raises(ValueError, match="too big"):
        inflate_message(bomb, max_size=1 << 20)
    assert len(inflate_message(bomb, max_size=8 << 20)) == 8 << 20
    with pytest.raises(ValueError, match="invalid"):
        inflate_message(b"\xff\xfe\xfd\xfc")


def test_format_compresses_once_per_message():
    hub = Hub(max_connections=16)
    try:
        fmt = hub.format("websocket", '{"text":"~text-json~"}', deflate=15, deflate_min=64)
        big = fmt.render_bytes(TEXT)
        assert big[0] == 0xC1
        doc = zlib.decompressobj(-15).decompress(server_payload(big)[1] + b"\x00\x00\xff\xff")
        assert doc.startswith(b'{"text":"{\\"id\\":1')
        small = fmt.render_bytes(b"hi")               # under deflate_min: sent as it is
        assert server_payload(small) == (0x81, b'{"text":"hi"}')
        with pytest.raises(ValueError):
            hub.format("eventsource", "~text~", deflate=15)
        with pytest.raises(ValueError):
            hub.format("websocket", "~text~", deflate=8)
    finally:
        hub.close()


# -- the frame parser: RSV1 only where permessage-deflate says -------------------------------

def test_rsv1_marks_a_compressed_message_when_negotiated():
    p = FrameParser(deflate=True)
    payload = client_deflate(TEXT)
    assert p.feed(encode_frame(Opcode.TEXT, payload, mask=MASK, rsv=4)) == \
        [("compressed", Opcode.TEXT, payload)]
    # fragmented: RSV1 on the first frame only; invalid UTF-8 of the compressed bytes is
    # not the parser's business (checked once inflated)
    frames = (encode_frame(Opcode.BINARY, payload[:10], fin=False, mask=MASK, rsv=4)
              + encode_frame(Opcode.CONTINUATION, payload[10:], mask=MASK))
    assert p.feed(frames) == [("compressed", Opcode.BINARY, payload)]
    assert p.feed(encode_frame(Opcode.TEXT, b"plain", mask=MASK)) == \
        [("message", Opcode.TEXT, b"plain")]


@pytest.mark.parametrize("frame", [
    encode_frame(Opcode.TEXT, b"x", mask=MASK, rsv=4),                  # not negotiated
], ids=["not negotiated"])
def test_rsv1_without_negotiation_is_a_protocol_error(frame):
    assert FrameParser().feed(frame) == [("error", 1002, "reserved bits set")]


@pytest.mark.parametrize("frames", [
    encode_frame(Opcode.PING, b"p", mask=MASK, rsv=4),                  # control frame
    encode_frame(Opcode.TEXT, b"a", fin=False, mask=MASK)
    + encode_frame(Opcode.CONTINUATION, b"b", mask=MASK, rsv=4),        # continuation
    encode_frame(Opcode.TEXT, b"a", mask=MASK, rsv=2),                  # RSV2
], ids=["ping", "continuation", "rsv2"])
def test_rsv1_where_deflate_forbids_it(frames):
    assert FrameParser(deflate=True).feed(frames)[-1] == ("error", 1002, "reserved bits set")


# -- negotiation (RFC 7692 §5, §7) ----------------------------------------------------------

BASE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.mark.parametrize("header, response, bits", [
    ("permessage-deflate", BASE, 15),
    ("permessage-deflate; client_max_window_bits", BASE, 15),
    ("permessage-deflate; client_max_window_bits=10", BASE, 15),
    ("permessage-deflate; server_no_context_takeover", BASE, 15),
    ('permessage-deflate; server_max_window_bits="10"', BASE + "; server_max_window_bits=10", 10),
    ("PerMessage-Deflate;server_max_window_bits=12", BASE + "; server_max_window_bits=12", 12),
    # the first acceptable offer wins: 8 is declined (zlib has no 8-bit window), then plain
    ("permessage-deflate; server_max_window_bits=8, permessage-deflate", BASE, 15),
    ("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits", BASE, 15),
])
def test_accepted_offers(header, response, bits):
    got = negotiate_deflate(header)
    assert got is not None and (got.response, got.server_bits) == (response, bits)


@pytest.mark.parametrize("header", [
    None, "", "x-webkit-deflate-frame",
    "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; server_max_window_bits",                      # needs a value
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=010",
    "permessage-deflate; client_max_window_bits=7",
    "permessage-deflate; server_no_context_takeover=1",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "permessage-deflate; unknown_param",
])
def test_declined_offers(header):
    assert negotiate_deflate(header) is None
