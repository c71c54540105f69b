"""The publisher's fast path (gogin/_core/pubroute.pyx, Hub.publish_route): the core answers the
common publish itself, with the bytes the Python publisher location gives, and hands every
other request to Python unchanged.  An in-process server, raw sockets."""

from __future__ import annotations

import asyncio

import pytest

from gogin.config import Config
from gogin.server import serve


async def _server(**server_kw):
    cfg = Config()
    cfg.server.listen = ["127.0.0.1:0"]
    for k, v in server_kw.items():
        setattr(cfg.server, k, v)
    return await serve(cfg)


WARM = b"OPTIONS /pub HTTP/1.1\r\nHost: x\r\n\r\n"   # Python decides the peer's network


async def _exchange(port: int, data: bytes, answers: int = 1, warm: bool = True) -> list[bytes]:
    """Send data in one write (after a first request that lets Python decide the connection's
    network, as on any keep-alive publisher connection); read `answers` responses."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if warm:
        writer.write(WARM)
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first.startswith(b"HTTP/1.1 200 "), first
    writer.write(data)
    out = []
    try:
        for _ in range(answers):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            n = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            out.append(head + await asyncio.wait_for(reader.readexactly(n), 5))
    finally:
        writer.close()
    return out


def _post(chan: str, body: bytes, *headers: str) -> bytes:
    extra = "".join(h + "\r\n" for h in headers)
    return (f"POST /pub?id={chan} HTTP/1.1\r\nHost: x\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


CASES = [
    ((), b"hello"),
    (("Accept: text/x-json",), b"hello"),
    (("Accept: */*",), b"hello"),
    (("Content-Type: application/octet-stream",), b"\x00\x01"),
    ((), b"\xff\xfe not utf-8"),
    (("Connection: close",), b"bye"),
]


@pytest.mark.parametrize("headers,body", CASES)
async def test_fast_answer_is_the_python_answer(headers, body):
    srv = await _server()
    try:
        port = srv.addresses[0][1]
        fast = (await _exchange(port, _post("fast", body, *headers)))[0]
        assert srv.hub.publish_routes["/pub"] == 1          # the core answered it
        srv.hub.clear_publish_routes()                      # now Python answers
        slow = (await _exchange(port, _post("slow", body, *headers)))[0]
        assert fast.startswith(b"HTTP/1.1 200 OK\r\n")
        assert fast.replace(b"fast", b"slow") == slow
        for name in ("fast", "slow"):
            ch = srv.hub.channel(name)
            assert (ch.published, ch.stored, ch.subscribers) == (1, 1, 0)
    finally:
        await srv.stop(0.5)


async def test_pipelined_publishes_answered_in_order():
    srv = await _server()
    try:
        port = srv.addresses[0][1]
        data = b"".join(_post(f"p{i}", b"m%d" % i) for i in range(5))
        answers = await _exchange(port, data, 5)
        assert [a.rsplit(b"\r\n\r\n", 1)[1] for a in answers] == [
            (f'{{"channel": "p{i}", "published_messages": 1, "stored_messages": 1, '
             f'"subscribers": 0}}\r\n').encode() for i in range(5)]
        assert srv.hub.publish_routes["/pub"] == 5
    finally:
        await srv.stop(0.5)


FALLBACKS = [
    (_post("e", b"x", "Event-Id: 7"), 200),            # event fields: Python's checks
    (_post("a/b", b"x"), 200),                          # the group answer: Python
    (_post("q", b"x", "Accept: application/xml"), 200),  # another format: Python
    (_post("ALL", b"x"), 403),
    (_post("a*", b"x"), 403),
    (_post("x", b""), 400),
    (b"POST /pub?id=%41 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 200),   # an escape
    (b"POST /pub?id=a&id=b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 200),
    (b"DELETE /pub?id=nothere HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 404),
]


@pytest.mark.parametrize("data,status", FALLBACKS)
async def test_other_requests_go_to_python(data, status):
    srv = await _server()
    try:
        answer = (await _exchange(srv.addresses[0][1], data))[0]
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer
        assert srv.hub.publish_routes["/pub"] == 0
    finally:
        await srv.stop(0.5)


async def test_api_key_is_checked_by_the_core():
    srv = await _server(api_key="s3cret")
    try:
        port = srv.addresses[0][1]
        bad = (await _exchange(port, _post("k", b"x", "X-Api-Key: wrong"), warm=False))[0]
        assert bad.startswith(b"HTTP/1.1 403 ")
        good = (await _exchange(port, _post("k", b"x", "Authorization: Bearer s3cret"),
                                warm=False))[0]
        assert good.startswith(b"HTTP/1.1 200 ")
        # the first request on a connection decides its network in Python, the rest in C
        assert srv.hub.publish_routes["/pub"] == 0
        three = await _exchange(port, _post("k", b"y", "X-Api-Key: s3cret") * 2
                                + _post("k", b"z", "X-Api-Key: nope"), 3, warm=False)
        assert [a[:13] for a in three] == [b"HTTP/1.1 200 "] * 2 + [b"HTTP/1.1 403 "]
        assert srv.hub.publish_routes["/pub"] == 1
        assert srv.hub.channel("k").published == 3
    finally:
        await srv.stop(0.5)


async def test_events_channel_hears_of_channels_made_by_a_publish():
    srv = await _server()
    srv.config.limits.events_channel_id = "events"
    srv._publish_routes()
    try:
        port = srv.addresses[0][1]
        srv.hub.ensure_channel("events")
        await _exchange(port, _post("new1", b"x"))
        await _exchange(port, _post("new1", b"x"))       # exists now: the core answers it
        assert srv.hub.channel("events").published == 1
        assert srv.hub.publish_routes["/pub"] == 1
    finally:
        await srv.stop(0.5)
