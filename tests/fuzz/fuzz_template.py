"""Fuzz target: the message templates (``Hub.format(kind, template).render_bytes(...)``).

    python tests/fuzz/fuzz_template.py tests/fuzz/corpus/template -max_total_time=60

The input is NUL-separated: ``kind NUL template NUL channel NUL event-id NUL event-type NUL
text`` (missing fields are empty; the text is the rest and may hold NULs).  An unknown kind
word picks one of the four kinds.  Invariants:
- rendering never fails, and the body is ``expected_body``: the template with every ~token~
  replaced (unknown ~words~ stay), computed here in Python;
- each kind wraps that body as its wire format says: one unfragmented WebSocket text frame,
  an HTTP chunk (or the raw body), a long-poll response whose Content-Length and
  Last-Modified are right, one EventSource event whose data, id and event type read back
  (HTML Living Standard §9.2.6 parsing);
- with ``~text-json~`` / ``~channel-json~`` inside the strings of a JSON template, the result
  is JSON that json.loads reads back to the text and the channel (when the text is UTF-8).

Event ids and types are fuzzed as the HTTP publisher delivers them: header-value bytes,
stripped (no CR, LF or other control byte - http.pyx refuses those).  Times stay in the range
of time(NULL) for the next centuries: that is where messages get their time.
"""

import email.utils
import json
import re

from _fuzzing import feature, main, rng_for
from gogin._core.frames import FrameParser, header_size
from gogin._core.hub import Hub
from gogin._core.formats import escape_json

KINDS = ("websocket", "eventsource", "stream", "longpoll")
TOKEN = re.compile(rb"~(id|text|text-json|channel|channel-json|time|tag|event-id|event-type|"
                   rb"event-id-json|event-type-json|size)~")
JSON_TEMPLATE = ('{"text":"~text-json~","channel":"~channel-json~","id":~id~,"tag":~tag~,'
                 '"size":~size~,"both":"~channel-json~/~text-json~"}')

_hub = None
_formats = 0


def new_format(kind, template, **kw):
    """Hub.format on a shared Hub, replaced every 500 formats (a Hub keeps all its formats)."""
    global _hub, _formats
    if _hub is None or _formats >= 500:
        _hub, _formats = Hub(), 0
    _formats += 1
    return _hub.format(kind, template, **kw)


def http_date(t):
    return email.utils.formatdate(t, usegmt=True).encode()


def expected_body(template, text, channel, event_id, event_type, id, tag, time):
    values = {b"id": b"%d" % id, b"text": text, b"text-json": escape_json(text),
              b"channel": channel, b"channel-json": escape_json(channel),
              b"time": http_date(time), b"tag": b"%d" % tag, b"event-id": event_id,
              b"event-type": event_type, b"event-id-json": escape_json(event_id),
              b"event-type-json": escape_json(event_type), b"size": b"%d" % len(text)}
    return TOKEN.sub(lambda m: values[m.group(1)], template)


def read_eventsource(out):
    """The events a browser's EventSource reads from ``out`` (HTML LS §9.2.6), as dicts."""
    events, data, fields = [], None, {}
    lines = re.split(rb"\r\n|\r|\n", out)
    assert lines[-1] == b"", out                 # the stream ends at a line end
    for line in lines[:-1]:
        if not line:
            if data is not None:                 # dispatch
                fields["data"] = data[:-1] if data.endswith(b"\n") else data
                events.append(fields)
            data, fields = None, {}
            continue
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            data = (data or b"") + value + b"\n"
        elif name in (b"id", b"event"):
            fields[name.decode()] = value
        else:
            raise AssertionError(f"unexpected EventSource line {line!r}")
    assert data is None and not fields, f"an event left undispatched in {out!r}"
    return events


def header_value(raw):
    """What http.pyx hands over as a header value: allowed bytes only, OWS stripped."""
    return bytes(b for b in raw if b >= 0x20 and b != 0x7F or b == 0x09).strip(b" \t")


def check_kind(kind, out, body, fmt_kw, event_id, event_type, tag, time):
    if kind == "websocket":
        hl = header_size(len(body))
        assert out[hl:] == body and out[0] == 0x81, (out, body)   # FIN + text, one frame
        events = FrameParser(len(body) + 1, False).feed(out)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            assert [e[:2] for e in events] == [("error", 1007)], events
        else:
            assert events == [("message", 1, body)], (events, body)
    elif kind == "stream":
        chunk = b"%x\r\n%s\r\n" % (len(body), body) if fmt_kw["chunked"] else body
        assert out == chunk, (out, body)
    elif kind == "longpoll":
        assert out == (fmt_kw["head"] + b"Last-Modified: " + http_date(time) + b"\r\n"
                       b"Etag: W/%d\r\nContent-Length: %d\r\n\r\n" % (tag, len(body)) + body)
    else:
        events = read_eventsource(out)
        assert len(events) == 1, events
        want = {"data": b"\n".join(re.split(rb"\r\n|\r|\n", body))}
        if event_id:
            want["id"] = event_id
        if event_type:
            want["event"] = event_type
        assert events[0] == want, (events, want)


def one_input(data: bytes) -> None:
    rng = rng_for(data)
    parts = data.split(b"\0", 5)
    parts += [b""] * (6 - len(parts))
    kind_word, template, channel_raw, eid_raw, etype_raw, text = parts
    kind = kind_word.decode("latin-1")
    if kind not in KINDS:
        kind = KINDS[len(kind_word) % len(KINDS)]
    channel = channel_raw.decode("utf-8", "replace")   # channel ids are str (from a URL path)
    channel_b = channel.encode("utf-8")
    event_id, event_type = header_value(eid_raw), header_value(etype_raw)
    id = rng.choice((1, 0, -1, -2, -3, 2**63 - 1, -2**63, rng.randint(-2**63, 2**63 - 1)))
    tag = rng.choice((0, 1, 2**31 - 1, -2**31, rng.randint(-2**31, 2**31 - 1)))
    time = rng.choice((0, 1764547200, rng.randint(0, 2**33)))
    fmt_kw = {"chunked": rng.random() < 0.7, "head": rng.choice((b"", b"HTTP/1.1 200 OK\r\n"))}

    # what the template holds, as names atheris can tell apart (see _fuzzing.feature)
    for token in TOKEN.findall(template):
        feature(f"{kind} {token.decode()}")
    feature(f"{kind} {len(template).bit_length()} {len(text).bit_length()}")

    fmt = new_format(kind, template, **fmt_kw)
    out = fmt.render_bytes(text, id=id, time=time, tag=tag, channel=channel,
                           event_id=event_id, event_type=event_type)
    body = expected_body(template, text, channel_b, event_id, event_type, id, tag, time)
    check_kind(kind, out, body, fmt_kw, event_id, event_type, tag, time)

    # JSON-escaping tokens inside the strings of a JSON template give JSON.
    raw = new_format("stream", JSON_TEMPLATE, chunked=False).render_bytes(
        text, id=id, tag=tag, channel=channel)
    try:
        text_str = text.decode("utf-8")
    except UnicodeDecodeError:
        return                  # not UTF-8: the output is not UTF-8 either, so not JSON
    doc = json.loads(raw)
    assert doc == {"text": text_str, "channel": channel, "id": id, "tag": tag,
                   "size": len(text), "both": f"{channel}/{text_str}"}, (doc, raw)


if __name__ == "__main__":
    main(one_input)
