"""Fuzz target: the RFC 6455 client-frame parser (gogin/_core/frames.pyx, ``FrameParser``).

    python tests/fuzz/fuzz_frames.py tests/fuzz/corpus/frames -max_total_time=60

The input is the bytes a client sent after the upgrade.  Invariants:
- the events do not depend on how the bytes are split into reads: all at once, in random
  chunks and (for short inputs) one byte at a time give the same list;
- they are the events of ``reference_events``, a plain-Python reading of RFC 6455 §5 with the
  same policy as frames.pyx (fail at the first bad byte, UTF-8 checked as it arrives, the
  size limit taken from the header) - error reasons are not compared, close codes are;
- after an error or a close nothing more comes out, and ``failed`` says so;
- data messages never exceed max_message_size and text messages are valid UTF-8.
The size limit and whether client frames must be masked come from the input's RNG.
"""

from _fuzzing import feature, main, rng_for
from gogin._core.frames import FrameParser

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
ERROR_CODES = {1002, 1007, 1009, 1011}     # protocol error, bad data, too big, out of memory


class _Stop(Exception):
    """The reference parser's end: an error event was emitted, or the input ran out."""


def _close_code_ok(code):
    # RFC 6455 §7.4: what may appear on the wire (1004-1006 and 1015 never do)
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def utf8_viable(b) -> bool:
    """True if ``b`` is UTF-8 (RFC 3629) or can still become UTF-8 with more bytes - the
    fail-fast check of RFC 6455 §8.1.  Written out because CPython's incremental decoder
    waits on a cut surrogate (b"\\xed\\xa1" is invalid already: ED takes 80-9F only)."""
    i, n = 0, len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF            # no overlongs
        elif c == 0xED:
            need, lo, hi = 2, 0x80, 0x9F            # no surrogates
        elif 0xE1 <= c <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif c == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF            # no overlongs
        elif 0xF1 <= c <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F            # nothing above U+10FFFF
        else:
            return False
        for k in range(1, need + 1):
            if i + k == n:
                return True                         # cut short at the end: a prefix
            if not (lo <= b[i + k] <= hi if k == 1 else 0x80 <= b[i + k] <= 0xBF):
                return False
        i += need + 1
    return True


def reference_events(data: bytes, max_size: int, require_mask: bool) -> list:
    """RFC 6455 §5 over the whole input; ("error", code) stands for an error event."""
    events = []
    pos = 0
    msg_op, msg = 0, bytearray()

    def fail(code):
        events.append(("error", code))
        raise _Stop

    def take(n):
        nonlocal pos
        chunk = data[pos:pos + n]
        pos += len(chunk)
        return chunk

    try:
        while pos < len(data):
            b0 = take(1)[0]
            fin, op = bool(b0 & 0x80), b0 & 0x0F
            if b0 & 0x70:
                fail(1002)                        # RSV bits without an extension
            if op > 0xA or 0x3 <= op <= 0x7:
                fail(1002)                        # unknown opcode
            if op >= 0x8 and not fin:
                fail(1002)                        # fragmented control frame
            if op == 0 and not msg_op:
                fail(1002)                        # continuation of nothing
            if op in (TEXT, BINARY) and msg_op:
                fail(1002)                        # new message inside a fragmented one
            b1 = take(1)
            if not b1:
                raise _Stop
            masked, len7 = bool(b1[0] & 0x80), b1[0] & 0x7F
            if require_mask and not masked:
                fail(1002)
            if op >= 0x8 and len7 > 125:
                fail(1002)
            ext = {126: 2, 127: 8}.get(len7, 0)
            rest = take(ext + (4 if masked else 0))
            if len(rest) < ext + (4 if masked else 0):
                raise _Stop
            length = int.from_bytes(rest[:ext], "big") if ext else len7
            if length >> 63:
                fail(1002)                        # §5.2: the 64-bit length's MSB must be 0
            mask = rest[ext:] if masked else b"\0\0\0\0"
            if op < 0x8:
                if length > max_size - len(msg):
                    fail(1009)                    # from the header, before any payload
                if op != 0:
                    msg_op = op
            raw = take(length)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(raw))
            if op < 0x8:
                msg += payload
                if msg_op == TEXT and not utf8_viable(msg):
                    fail(1007)                    # at the first bad byte, mid-frame too
            if len(raw) < length:
                raise _Stop
            if op in (PING, PONG):
                events.append(("ping" if op == PING else "pong", payload))
            elif op == CLOSE:
                if length == 0:
                    events.append(("close", 1005, ""))
                    raise _Stop
                if length == 1:
                    fail(1002)
                code = int.from_bytes(payload[:2], "big")
                if not _close_code_ok(code):
                    fail(1002)
                try:
                    reason = payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    fail(1007)
                events.append(("close", code, reason))
                raise _Stop
            elif fin:
                if msg_op == TEXT:
                    try:
                        msg.decode("utf-8")       # a sequence cut at the end
                    except UnicodeDecodeError:
                        fail(1007)
                events.append(("message", msg_op, bytes(msg)))
                msg_op, msg = 0, bytearray()
    except _Stop:
        pass
    return events


def feed_in_chunks(data, sizes, max_size, require_mask):
    parser = FrameParser(max_size, require_mask)
    events, pos = [], 0
    for size in sizes:
        events += parser.feed(data[pos:pos + size])
        pos += size
    events += parser.feed(data[pos:])
    return events, parser


def comparable(events):
    # error reasons are frames.pyx's wording; the code is the contract
    return [e[:2] if e[0] == "error" else e for e in events]


def one_input(data: bytes) -> None:
    rng = rng_for(data)
    max_size = rng.choice((1 << 20, rng.randint(0, 300)))
    require_mask = rng.random() < 0.8

    whole, parser = feed_in_chunks(data, [], max_size, require_mask)
    # what the C parser produced, as names atheris can tell apart (see _fuzzing.feature)
    feature(" ".join(f"{e[0]}:{e[1]}" if e[0] in ("message", "close", "error") else e[0]
                     for e in whole[:8]))
    for i, ev in enumerate(whole):
        if ev[0] == "error":
            feature(f"error {ev[2]}")
        assert ev[0] in ("message", "ping", "pong", "close", "error"), ev
        if ev[0] in ("close", "error"):
            assert i == len(whole) - 1, whole          # nothing after the end
            assert parser.failed, whole
        if ev[0] == "error":
            assert ev[1] in ERROR_CODES and ev[2], ev
        if ev[0] == "message":
            assert ev[1] in (TEXT, BINARY) and len(ev[2]) <= max_size, ev[:2]
            if ev[1] == TEXT:
                ev[2].decode("utf-8")                  # raises if not UTF-8
        if ev[0] in ("ping", "pong"):
            assert len(ev[1]) <= 125, ev
    if parser.failed:
        assert parser.feed(data or b"x") == [], "a failed parser stays silent"

    sizes, left = [], len(data)
    while left > 0:
        sizes.append(rng.randint(1, max(1, min(left, rng.choice((3, 17, 200))))))
        left -= sizes[-1]
    chunked, _ = feed_in_chunks(data, sizes, max_size, require_mask)
    assert chunked == whole, (sizes, chunked, whole)
    if len(data) <= 256:
        bytewise, _ = feed_in_chunks(data, [1] * len(data), max_size, require_mask)
        assert bytewise == whole, (bytewise, whole)

    expected = reference_events(data, max_size, require_mask)
    assert comparable(whole) == expected, (whole, expected)


if __name__ == "__main__":
    main(one_input)
