"""Fuzz target: the HTTP request-head parser (gogin/_core/http.pyx, through ``http.parse``).

    python tests/fuzz/fuzz_http.py tests/fuzz/corpus/http -max_total_time=60

The input is the bytes a client sent.  Invariants (http.pxd's contract, RFC 9112):
- the result is exactly one of: a Request with the size of its head, "incomplete" (only while
  the input is under max_head_size), or an error status with its explanation;
- an accepted head never exceeds max_head_size nor max_headers, ends with CRLF CRLF, and
  every field of the Request is what the bytes say (checked here with plain Python);
- the hub parses the bytes received so far, again and again: a prefix of the input is either
  incomplete or gives exactly the whole input's answer (the split point comes from the input);
- a head accepted under tight limits is accepted, the same, under the defaults.
"""

import re
from urllib.parse import unquote_to_bytes

from _fuzzing import feature, main, rng_for
from gogin._core import http

DEFAULT_HEAD, DEFAULT_HEADERS = 8192, 100
STATUSES = {400, 411, 431, 501, 505}          # http.pxd: the error statuses parse_head sets
TCHAR = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
VALUE = re.compile(rb"[\x21-\x7e\x80-\xff \t]*")  # field-value bytes (RFC 9110 §5.5)


def parse(data, max_head, max_headers):
    """http.parse as a comparable tuple: (status, request fields or None, consumed, explain)."""
    status, req, consumed, explain = http.parse(data, max_head, max_headers)
    fields = None
    if req is not None:
        fields = (req.method, req.target, req.path, req.query, req.version,
                  tuple(req.headers), req.keep_alive, req.content_length)
        req.query_params()                    # Python-side helper: must not raise either
    return status, fields, consumed, explain


def check_one(data, max_head, max_headers, result):
    status, fields, consumed, explain = result
    if status:
        assert status in STATUSES, result
        assert fields is None and consumed == 0, result
        assert isinstance(explain, str) and explain, result
        return
    assert explain is None, result
    if fields is None:
        assert consumed == 0, result
        # incomplete is only allowed below the limit; at or past it the answer is 431
        # (an empty buffer is "nothing yet" whatever the limit: the hub never parses one)
        assert len(data) < max_head or not data, (len(data), max_head)
        return
    check_request(data, max_head, max_headers, fields, consumed)


def check_request(data, max_head, max_headers, fields, consumed):
    method, target, path, query, version, headers, keep_alive, content_length = fields
    assert 0 < consumed <= min(len(data), max_head), (consumed, len(data), max_head)
    assert len(headers) <= max_headers, (len(headers), max_headers)
    head = data[:consumed]
    assert head.endswith(b"\r\n\r\n"), head
    while head.startswith(b"\r\n"):           # empty lines before the request-line (§2.2)
        head = head[2:]
    lines = head[:-4].split(b"\r\n")
    assert not any(b"\n" in line or b"\r" in line for line in lines), head

    # request-line: method SP request-target SP HTTP-version
    parts = lines[0].split(b" ")
    assert len(parts) == 3, lines[0]
    assert TCHAR.fullmatch(parts[0]) and parts[0].decode() == method, (parts, method)
    assert parts[1].decode("ascii") == target, (parts, target)
    assert re.fullmatch(rb"HTTP/1\.[0-9]", parts[2]), parts
    assert version == (10 if parts[2] == b"HTTP/1.0" else 11), (parts, version)
    raw = parts[1]
    assert all(0x21 <= b <= 0x7E for b in raw), raw
    raw_path = re.split(rb"[?#]", raw, maxsplit=1)[0]
    if not raw.startswith((b"/", b"*")):
        # absolute-form: the path starts after the authority ("/" when there is none)
        after = raw.split(b"://", 1)[1]
        raw_path = re.split(rb"[?#]", after, maxsplit=1)[0]
        raw_path = raw_path[raw_path.index(b"/"):] if b"/" in raw_path else b""
    expected_path = unquote_to_bytes(raw_path).decode("utf-8") if raw_path else "/"
    assert path == expected_path and "\0" not in path, (raw, path)
    q = raw.split(b"?", 1)[1].split(b"#", 1)[0].decode() if b"?" in raw.split(b"#", 1)[0] else ""
    assert query == q, (raw, query)

    # header fields: name ":" OWS value OWS, in arrival order, names lower-cased
    assert len(headers) == len(lines) - 1, (headers, lines)
    for line, (name, value) in zip(lines[1:], headers):
        raw_name, sep, raw_value = line.partition(b":")
        assert sep and TCHAR.fullmatch(raw_name), line
        assert name == raw_name.decode().lower(), (line, name)
        raw_value = raw_value.strip(b" \t")
        assert VALUE.fullmatch(raw_value) and value == raw_value.decode("latin-1"), line
    names = [n for n, _ in headers]
    assert names.count("host") <= 1 and (version == 10 or names.count("host") == 1), names
    assert "transfer-encoding" not in names, names       # chunked bodies are refused (411)
    # RFC 9110 §8.6: repeated Content-Length fields are accepted when they hold the same
    # value - compared as numbers ("2" and "02" are the same length)
    lengths = {int(v) for n, v in headers if n == "content-length"}
    assert len(lengths) <= 1, lengths
    assert content_length == (lengths.pop() if lengths else -1), (headers, content_length)
    tokens = {t.strip(" \t").lower() for n, v in headers if n == "connection"
              for t in v.split(",")}
    if version == 11:
        assert keep_alive == ("close" not in tokens), (tokens, keep_alive)
    else:
        assert keep_alive == ("keep-alive" in tokens and "close" not in tokens), tokens


def outcome_features(result):
    # what the C parser decided, as names atheris can tell apart (see _fuzzing.feature)
    status, fields, consumed, explain = result
    if status:
        feature(f"{status} {explain}")
    elif fields is None:
        feature("incomplete")
    else:
        method, target, path, query, version, headers, keep_alive, content_length = fields
        feature(f"ok {method} HTTP/{version} keep-alive={keep_alive} cl={content_length >= 0}")
        feature(f"form {target[:1]} query={bool(query)} decoded={path != target.split('?')[0]}")
        feature(f"{len(headers)} headers")
        for name, _ in headers:
            feature(f"header {name}")


def one_input(data: bytes) -> None:
    rng = rng_for(data)
    whole = parse(data, DEFAULT_HEAD, DEFAULT_HEADERS)
    check_one(data, DEFAULT_HEAD, DEFAULT_HEADERS, whole)
    outcome_features(whole)

    # The hub re-parses its growing buffer: every prefix is "incomplete" or the final answer.
    cuts = {rng.randint(0, len(data)), len(data) - 1}
    if whole[2]:
        cuts |= {whole[2] - 1, whole[2]}          # around the end of the head
    for cut in cuts:
        if 0 < cut <= len(data):
            part = parse(data[:cut], DEFAULT_HEAD, DEFAULT_HEADERS)
            check_one(data[:cut], DEFAULT_HEAD, DEFAULT_HEADERS, part)
            assert part == (0, None, 0, None) or part == whole, (cut, part, whole)

    # Tight limits: never exceeded, and what passes them passes the defaults unchanged.
    max_head = rng.randint(0, min(len(data) + 8, DEFAULT_HEAD))
    max_headers = rng.choice((0, 1, 2, 3, rng.randint(0, DEFAULT_HEADERS)))
    tight = parse(data, max_head, max_headers)
    check_one(data, max_head, max_headers, tight)
    outcome_features(tight)
    if tight[1] is not None:
        assert tight == whole, (max_head, max_headers, tight, whole)


if __name__ == "__main__":
    main(one_input)
