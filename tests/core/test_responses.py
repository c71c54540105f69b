"""responses.pyx without sockets: the one writer of the core's HTTP answer heads."""

import pytest

from gogin._core import NO_CACHE_HEADERS, build_head, build_head_start
from gogin._core.responses import REASONS, build_error


def test_a_head_is_status_line_headers_length_and_blank_line():
    assert build_head(200, [("Content-Type", "text/plain"), ("X-N", 5)], 11) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-N: 5\r\nContent-Length: 11\r\n\r\n")


def test_no_length_without_a_body_size_and_close_when_not_kept_alive():
    assert build_head(101, [("Upgrade", "websocket")]) == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert build_head(404, (), 0, keep_alive=False) == (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_every_named_status_and_an_unnamed_one():
    for status, reason in REASONS.items():
        assert build_head(status).startswith(b"HTTP/1.1 %d %s\r\n" % (status, reason.encode()))
    assert build_head(299) == b"HTTP/1.1 299 Unknown\r\n\r\n"


@pytest.mark.parametrize("status", [0, 99, 1000, -200])
def test_a_status_that_is_not_three_digits_is_refused(status):
    with pytest.raises(ValueError, match="three digits"):
        build_head(status)


class Str:
    """A value that is not a str: written with str(), checked after that."""

    def __str__(self):
        return "1\n2"


@pytest.mark.parametrize("name, value", [
    ("X-Bad", "a\r\nSet-Cookie: forged=1"), ("X-Bad", "a\nb"), ("X-Bad", "a\rb"),
    ("X-Bad\r\nInjected", "v"), ("X-Obj", Str()),
])
def test_cr_or_lf_in_a_header_is_refused(name, value):
    with pytest.raises(ValueError, match="CR or LF"):
        build_head(200, [(name, value)])
    with pytest.raises(ValueError, match="CR or LF"):
        build_head_start(200, [(name, value)])


def test_head_start_is_the_head_without_its_framing():
    hdrs = [("Content-Type", "text/plain")] + list(NO_CACHE_HEADERS)
    start = build_head_start(200, hdrs)
    assert start == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     b"Cache-Control: no-cache, no-store, must-revalidate\r\n"
                     b"Expires: Thu, 01 Jan 1970 00:00:01 GMT\r\n")
    assert build_head(200, hdrs, 3) == start + b"Content-Length: 3\r\n\r\n"


def test_the_error_answer_explains_and_closes():
    assert build_error(413, "Message too large.") == (
        b"HTTP/1.1 413 Content Too Large\r\nX-Gogin-Explain: Message too large.\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    with pytest.raises(ValueError, match="CR or LF"):
        build_error(400, "two\r\nlines")


def test_a_value_that_is_not_latin_1_is_refused_not_mangled():
    with pytest.raises(UnicodeEncodeError):
        build_head(200, [("X-Name", "✓")])
