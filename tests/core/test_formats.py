"""formats.pyx without sockets: each wire format renders a message into the exact bytes its
subscribers are sent, templates substitute every token, JSON escaping cannot be escaped from."""

import json
import zlib

import pytest

from gogin._core.formats import Format, escape_json, format_http_date
from gogin._core.frames import FrameParser, Opcode

T0 = 1_700_000_000               # Tue, 14 Nov 2023 22:13:20 GMT
T0_DATE = "Tue, 14 Nov 2023 22:13:20 GMT"


def ws_messages(frame):
    """Decode server frames (unmasked) as a client would."""
    return FrameParser(require_mask=False).feed(frame)


def test_every_token_is_substituted_and_unknown_words_stay_literal():
    fmt = Format(0, "stream", "~id~|~text~|~text-json~|~channel~|~channel-json~|~time~|~tag~|"
                              "~event-id~|~event-type~|~size~|~event-id-json~|~event-type-json~|"
                              "~nope~|~", chunked=False)
    out = fmt.render_bytes(b'a"b', id=42, time=T0, tag=3, channel='c"h', event_id=b'e"1',
                           event_type=b't"y')
    assert out == (b'42|a"b|a\\"b|c"h|c\\"h|' + T0_DATE.encode() + b'|3|e"1|t"y|3|e\\"1|t\\"y|'
                   b"~nope~|~")


def test_raw_template_is_the_payload_in_one_text_frame_at_every_length_boundary():
    fmt = Format(0, "websocket", "~text~")
    for n in (0, 1, 125, 126, 65535, 65536, 70000):
        payload = (b"0123456789" * (n // 10 + 1))[:n]
        frame = fmt.render_bytes(payload)
        header = 2 if len(payload) < 126 else 4 if len(payload) < 65536 else 10
        assert len(frame) == header + len(payload)
        assert ws_messages(frame) == [("message", Opcode.TEXT, payload)]


def test_a_binary_message_ignores_the_template_and_goes_as_a_binary_frame():
    fmt = Format(0, "websocket", '{"text": "~text-json~"}')
    frame = fmt.render_bytes(b"\x00\xff\x80", binary=True)
    assert ws_messages(frame) == [("message", Opcode.BINARY, b"\x00\xff\x80")]


def test_eventsource_event_splits_lines_on_cr_lf_and_crlf():
    fmt = Format(0, "eventsource", "~text~")
    out = fmt.render_bytes(b"a\nb\rc\r\nd", event_id=b"7", event_type=b"news")
    assert out == b"id: 7\nevent: news\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    assert fmt.render_bytes(b"plain") == b"data: plain\n\n"          # no id, no type: no line


def test_eventsource_drops_cr_and_lf_from_event_id_and_type():
    """An id with a line break would end its field and forge the lines after it."""
    fmt = Format(0, "eventsource", "~text~")
    out = fmt.render_bytes(b"m", event_id=b"1\ndata: forged", event_type=b"x\r\nid: 9")
    assert out == b"id: 1data: forged\nevent: xid: 9\ndata: m\n\n"
    assert out.count(b"\n") == 4


def test_stream_chunks_or_raw_bytes():
    chunked = Format(0, "stream", "<~text~>")
    assert chunked.render_bytes(b"x" * 20) == b"16\r\n<" + b"x" * 20 + b">\r\n"
    raw = Format(1, "stream", "<~text~>", chunked=False)
    assert raw.render_bytes(b"hi") == b"<hi>"


def test_longpoll_is_a_whole_answer_with_last_modified_etag_and_length():
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
    fmt = Format(0, "longpoll", "[~text~]", head=head)
    out = fmt.render_bytes(b"body", time=T0, tag=5)
    assert out == (head + b"Last-Modified: " + T0_DATE.encode() + b"\r\nEtag: W/5\r\n"
                   b"Content-Length: 6\r\n\r\n[body]")


def test_event_fields_json_escaped():
    """~event-id-json~ / ~event-type-json~ escape like ~text-json~ (an event id cannot close
    the JSON string it is written into), and raw ~event-id~ stays as published."""
    fmt = Format(0, "websocket", '{"e":"~event-id-json~","t":"~event-type-json~",'
                                 '"x":"~text-json~","raw":"~event-id~"}')
    frame = fmt.render_bytes(b"real", event_id=b'x","text":"FORGED', event_type=b'a\\b\x01')
    body = frame[2:]                        # a short text frame: 2 header bytes
    assert body.startswith(b'{"e":"x\\",\\"text\\":\\"FORGED","t":"a\\\\b\\u0001","x":"real",')
    doc = json.loads(body[:body.index(b',"raw"')] + b"}")
    assert doc == {"e": 'x","text":"FORGED', "t": "a\\b\x01", "x": "real"}
    empty = fmt.render_bytes(b"m")          # no event id: empty strings, still valid JSON
    assert empty[2:] == b'{"e":"","t":"","x":"m","raw":""}'


def test_json_escaping_of_every_byte_round_trips_through_a_json_parser():
    raw = bytes(range(128)) + "é✓".encode()
    escaped = escape_json(raw)
    assert json.loads(b'"' + escaped + b'"') == raw.decode("utf-8")
    assert escape_json(b'"\\\n\r\t\x08\x0c\x01\x7f') == b'\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u007f'
    plain = b"nothing to escape"
    assert escape_json(plain) is plain      # no copy when nothing changes


def test_deflate_format_compresses_once_and_small_messages_stay_plain():
    fmt = Format(0, "websocket", "~text~", deflate=15, deflate_min=64)
    big = b"abc" * 100
    frame = fmt.render_bytes(big)
    assert frame[0] == 0xC1                 # FIN + RSV1 (compressed) + text
    length = frame[1] & 0x7F
    data = frame[2:] if length < 126 else frame[4:]
    assert zlib.decompressobj(-15).decompress(data + b"\x00\x00\xff\xff") == big
    small = fmt.render_bytes(b"short")
    assert small == b"\x81\x05short"


def test_http_date_is_imf_fixdate():
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(T0) == T0_DATE


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="sse"), "unknown format kind"),
    (dict(kind="websocket", ping=b"x" * 126), "at most 125 bytes"),
    (dict(kind="stream", deflate=15), "deflate is a WebSocket window size"),
    (dict(kind="websocket", deflate=7), "deflate is a WebSocket window size"),
])
def test_bad_formats_are_refused(kwargs, message):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message):
        Format(0, kind, "~text~", **kwargs)
