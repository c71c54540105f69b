"""Integration tests of gogin._core.hub (Hub + Connection) through real sockets and real
clients (websockets, picows, aiohttp, httpx, raw streams).  Every wait is bounded."""

import asyncio
import email.utils
import hashlib
import json
import socket
import struct
import time
from urllib.parse import quote

import aiohttp
import httpx
import picows
import pytest
import websockets
import yarl
from websockets.asyncio.client import connect as ws_connect

from hub_helpers import (
    BACKENDS, LP_TIMEOUT, T, RawWS, Server, handshake_request, open_raw, read_eof, read_response,
    render, run_server, until, ws_encode,
)

TEXTS = [
    "plain",
    'quote " and backslash \\ end',
    "line1\nline2\r\n\ttab",
    "ctrl \x00\x01\x1f bell\x07 \b\f",
    "unicode é ü 中文 \u2028 \U0001F600",
    "",
]


class Collector(picows.WSListener):
    """picows listener that copies every frame into a queue."""

    def __init__(self):
        self.q = asyncio.Queue()

    def on_ws_frame(self, transport, frame):
        code = frame.get_close_code() if frame.msg_type == picows.WSMsgType.CLOSE else None
        self.q.put_nowait((frame.msg_type, frame.get_payload_as_bytes(), code))

    async def next(self, types=(picows.WSMsgType.TEXT, picows.WSMsgType.BINARY), timeout=T):
        deadline = time.monotonic() + timeout
        while True:
            item = await asyncio.wait_for(self.q.get(), max(0.01, deadline - time.monotonic()))
            if item[0] in types:
                return item


async def http_publish(session, server, channel, payload, **headers):
    url = yarl.URL(f"{server.http}/pub?id={quote(channel, safe='')}", encoded=True)
    async with session.post(url, data=payload, headers=headers,
                            timeout=aiohttp.ClientTimeout(total=T)) as r:
        assert r.status == 200
        return int(await r.text())


# -- 1. fanout to real clients -------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_fanout_websockets_and_picows_byte_exact(run_loop, backend):
    async def scenario(s):
        chs = ['a', 'q"x\\y/é']
        path = "/ws?ch=" + ",".join(quote(c, safe="") for c in chs)
        async with ws_connect(s.ws + path, open_timeout=T, max_size=None) as w1:
            tr, pc = await asyncio.wait_for(picows.ws_connect(Collector, s.ws + path), T)
            try:
                await until(lambda: s.hub.stats()["subscribers"] == 4, what="4 subscriptions")
                assert s.subs("a") == 2 and s.subs(chs[1]) == 2
                expected = []
                ids = {c: 0 for c in chs}
                async with aiohttp.ClientSession() as sess:
                    for i, text in enumerate(TEXTS):
                        ch = chs[i % 2]
                        ids[ch] += 1
                        assert await http_publish(sess, s, ch, text.encode()) == 2
                        expected.append(render(ids[ch], ch, text))
                    # binary: untemplated binary frame
                    blob = bytes(range(256)) * 3
                    assert await http_publish(sess, s, "a", blob, **{"X-Binary": "1"}) == 2
                for exp, text in zip(expected, TEXTS):
                    got_ws = await asyncio.wait_for(w1.recv(decode=False), T)
                    _, got_pc, _ = await pc.next()
                    assert got_ws == exp and got_pc == exp
                    assert json.loads(got_ws)["text"] == text
                got = await asyncio.wait_for(w1.recv(), T)
                assert isinstance(got, bytes) and got == blob
                t, got_pc, _ = await pc.next()
                assert t == picows.WSMsgType.BINARY and got_pc == blob
            finally:
                tr.disconnect()

    run_loop(lambda: run_server(scenario, backend=backend))


async def test_text_json_roundtrip_odd_bytes(make_server):
    """~text-json~ of every control char, DEL, quotes, backslashes: valid JSON, same text."""
    s = make_server()
    text = "".join(chr(i) for i in range(32)) + '\x7f"\\/' + "é\u2028"
    async with ws_connect(s.ws + "/ws?ch=j", open_timeout=T) as w:
        assert s.hub.publish("j", text) == 1
        got = await asyncio.wait_for(w.recv(), T)
        assert json.loads(got) == {"id": 1, "channel": "j", "text": text}


# -- 2. HTTP -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_http_keepalive_and_pipelining(run_loop, backend):
    async def scenario(s):
        r, w = await open_raw(s)
        try:
            for i in range(3):      # keep-alive: sequential requests on one connection
                w.write(f"GET /echo?k={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                st, _, body = await read_response(r)
                assert st == 200 and body.startswith(f"GET /echo?k={i} 0 ".encode())
            # pipelining: three requests in one send, answered in order
            w.write(b"".join(f"GET /echo?p={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                             for i in range(3)))
            for i in range(3):
                st, _, body = await read_response(r)
                assert st == 200 and body.startswith(f"GET /echo?p={i} 0 ".encode())
            assert s.hub.stats()["accepted"] == 1
            peers = {req.peer for req in s.requests}
            assert len(peers) == 1 and len(s.requests) == 6
        finally:
            w.close()

    run_loop(lambda: run_server(scenario, backend=backend))


async def test_httpx_keepalive_reuses_connection(make_server):
    s = make_server()
    async with httpx.AsyncClient(timeout=T) as c:
        for i in range(4):
            resp = await c.get(f"{s.http}/echo?n={i}")
            assert resp.status_code == 200 and resp.text.startswith(f"GET /echo?n={i} 0")
    assert s.hub.stats()["accepted"] == 1
    assert len({req.peer for req in s.requests}) == 1


async def test_post_body_in_pieces(make_server):
    s = make_server()
    body = bytes(range(256)) * 40          # 10240 bytes
    r, w = await open_raw(s)
    w.write(f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:100])
    await w.drain()
    for i in range(100, len(body), 2500):
        await asyncio.sleep(0.02)
        assert len(s.requests) == 0        # not dispatched before the body is complete
        w.write(body[i:i + 2500])
        await w.drain()
    st, _, got = await read_response(r)
    assert st == 200
    assert got == b"POST /echo %d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())
    assert s.requests[0].body == body
    w.close()


async def test_post_body_with_aiohttp(make_server):
    s = make_server()
    body = b"x" * 50000
    async with aiohttp.ClientSession() as sess:
        async with sess.post(f"{s.http}/echo", data=body,
                             timeout=aiohttp.ClientTimeout(total=T)) as resp:
            assert resp.status == 200
            assert (await resp.read()).split()[2] == b"50000"


@pytest.mark.parametrize("request_bytes, status, hub_kw", [
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     411, {}),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, {}),
    (b"GARBAGE\r\n\r\n", 400, {}),
    (b"GET /x HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, {}),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"z" * 5000, 413,
     {"max_body_size": 1000}),
], ids=["chunked-411", "big-head-431", "bad-line-400", "bad-version-400", "body-413"])
async def test_http_errors(make_server, request_bytes, status, hub_kw):
    s = make_server(**hub_kw)
    r, w = await open_raw(s)
    w.write(request_bytes)
    st, headers, _ = await read_response(r)
    assert st == status
    assert headers.get("x-gogin-explain"), headers
    assert headers.get("connection", "").lower() == "close"
    await read_eof(r)                       # and the connection is closed
    assert s.requests == []
    w.close()


async def test_header_timeout_slowloris(make_server):
    s = make_server(header_timeout=0.3, tick=0.05)
    r, w = await open_raw(s)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n")     # half a head, then nothing
    t0 = time.monotonic()
    data = await read_eof(r, timeout=3)
    elapsed = time.monotonic() - t0
    assert data == b"" or data.startswith(b"HTTP/1.1 408 "), data
    assert 0.2 <= elapsed < 2.5, elapsed
    w.close()
    await until(lambda: s.hub.connections == 0)


async def test_idle_keepalive_closed(make_server):
    s = make_server(keepalive_timeout=0.3, tick=0.05)
    r, w = await open_raw(s)
    w.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    st, _, _ = await read_response(r)
    assert st == 200
    t0 = time.monotonic()
    assert await read_eof(r, timeout=3) == b""
    assert 0.2 <= time.monotonic() - t0 < 2.5
    await until(lambda: s.hub.connections == 0)
    w.close()


# -- 3. max_connections ----------------------------------------------------------------------


async def test_max_connections(make_server):
    s = make_server(max_connections=2)
    async with ws_connect(s.ws + "/ws?ch=a", open_timeout=T) as w1, \
            ws_connect(s.ws + "/ws?ch=a", open_timeout=T) as w2:
        r, w = await open_raw(s)
        w.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        st, headers, _ = await read_response(r)
        assert st == 503
        assert headers.get("x-gogin-explain") == "Too many connections."
        await read_eof(r)
        w.close()
        assert s.hub.stats()["rejected"] >= 1
        assert s.hub.publish("a", "still here") == 2
        for c in (w1, w2):
            assert b'"text":"still here"' in (await asyncio.wait_for(c.recv(decode=False), T))


# -- 4. WebSocket protocol -------------------------------------------------------------------


async def test_ping_pong_same_payload(make_server):
    s = make_server()
    raw = await RawWS.connect(s)
    raw.send(0x9, b"ping-payload-\x00\xff")
    fin, op, payload = await raw.recv()
    assert (fin, op, payload) == (1, 0xA, b"ping-payload-\x00\xff")
    async with ws_connect(s.ws + "/ws?ch=a", open_timeout=T) as w:
        latency = await asyncio.wait_for(await w.ping(b"abc"), T)
        assert latency >= 0
    raw.close()


async def test_close_without_code_gets_empty_close(make_server):
    s = make_server()
    raw = await RawWS.connect(s)
    raw.send(0x8, b"")
    fin, op, payload = await raw.recv()
    assert (op, payload) == (0x8, b"")      # RFC 6455 §5.5.1: 1005 is never sent on the wire
    assert await read_eof(raw.reader) == b""
    raw.close()


async def test_head_request_has_no_body(make_server):
    s = make_server()
    r, w = await open_raw(s)
    w.write(b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), T)
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: " in head
    await asyncio.sleep(0.1)
    w.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")    # the next answer comes right after
    st, _, body = await read_response(r)
    assert st == 200 and body.startswith(b"GET /echo 0 ")
    w.close()


async def test_frames_sent_with_the_handshake(make_server):
    """A client may send frames right behind its handshake, in the same segment."""
    s = make_server()
    r, w = await open_raw(s)
    w.write(handshake_request("/ws?ch=a", "dGhlIHNhbXBsZSBub25jZQ==") + ws_encode(0x9, b"early")
            + ws_encode(0x1, b"first"))
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), T)
    assert head.startswith(b"HTTP/1.1 101 ")
    fin, op, payload = await RawWS(r, w).recv(timeout=2)
    assert (op, payload) == (0xA, b"early")
    await until(lambda: s.messages == [(1, b"first")], timeout=2, what="on_message")
    w.close()


async def test_client_close_echo_and_on_close(make_server):
    s = make_server()
    async with ws_connect(s.ws + "/ws?ch=a,b", open_timeout=T) as keep:
        w = await ws_connect(s.ws + "/ws?ch=a,c", open_timeout=T)
        assert s.hub.stats()["subscribers"] == 4
        await asyncio.wait_for(w.close(1000, "bye"), T)
        assert w.protocol.close_rcvd is not None and w.protocol.close_rcvd.code == 1000
        await until(lambda: len(s.closes) == 1, what="on_close")
        _, channels, subscribers = s.closes[0]
        assert channels == [] and subscribers == 2
        assert s.hub.stats()["subscribers"] == 2
        assert s.subs("a") == 1 and s.subs("c") == 0
        assert keep.state == websockets.protocol.State.OPEN


GARBAGE = {
    "unmasked-1002": (ws_encode(0x1, b"hello", mask=False), 1002, {}),
    "bad-utf8-1007": (ws_encode(0x1, b"ok \xff\xfe \xc3("), 1007, {}),
    "too-big-1009": (ws_encode(0x1, b"x" * 2000), 1009, {"max_message_size": 1024}),
    "reserved-opcode-1002": (ws_encode(0x3, b"zz"), 1002, {}),
    "rsv-bit-1002": (ws_encode(0x1, b"zz", rsv=4), 1002, {}),
    "close-code-999-1002": (ws_encode(0x8, struct.pack("!H", 999)), 1002, {}),
    "long-ping-1002": (ws_encode(0x9, b"p" * 126), 1002, {}),
    "fragmented-ping-1002": (ws_encode(0x9, b"p", fin=False), 1002, {}),
    "lone-continuation-1002": (ws_encode(0x0, b"zz"), 1002, {}),
    "text-inside-fragments-1002": (ws_encode(0x1, b"a", fin=False) + ws_encode(0x1, b"b"),
                                   1002, {}),
}


@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_closes_only_that_client(make_server, name):
    data, code, kw = GARBAGE[name]
    s = make_server(**kw)
    n = 40
    async with ws_connect(s.ws + "/ws?ch=a", open_timeout=T) as good:
        bad = await RawWS.connect(s)
        received = []

        async def reader():
            for _ in range(n):
                received.append(await asyncio.wait_for(good.recv(), T))

        task = asyncio.create_task(reader())
        for i in range(n // 2):
            s.hub.publish("a", f"m{i}")
        bad.send_raw(data)
        got_code, _ = await bad.recv_close()
        assert got_code == code
        assert await read_eof(bad.reader) == b""
        for i in range(n // 2, n):
            s.hub.publish("a", f"m{i}")
            await asyncio.sleep(0)
        await asyncio.wait_for(task, T)
        assert [r.split('"text":"')[1][:-2] for r in received] == [f"m{i}" for i in range(n)]
        assert s.subs("a") == 1
        assert s.messages == []
        bad.close()


async def test_on_message_reassembles_fragments(make_server):
    s = make_server()
    raw = await RawWS.connect(s)
    raw.send(0x1, "héllo ".encode()[:2], fin=False)     # split inside a UTF-8 sequence
    raw.send(0x0, "héllo ".encode()[2:], fin=False)
    raw.send(0x9, b"mid")                               # control frame between fragments
    raw.send(0x0, b"world", fin=True)
    raw.send(0x2, b"\x00\x01", fin=True)
    fin, op, payload = await raw.recv()
    assert (op, payload) == (0xA, b"mid")
    await until(lambda: len(s.messages) == 2, what="2 messages")
    assert s.messages[0] == (1, "héllo world".encode())
    assert s.messages[1] == (2, b"\x00\x01")
    async with ws_connect(s.ws + "/ws?ch=a", open_timeout=T) as w:
        await w.send(["frag1-", "frag2-", "frag3"])      # websockets fragments iterables
        await w.send("whole")
        await until(lambda: len(s.messages) == 4, what="4 messages")
    assert s.messages[2:] == [(1, b"frag1-frag2-frag3"), (1, b"whole")]
    assert s.hub.stats()["messages_in"] == 4
    raw.close()


async def test_publish_to_fast_path(make_server):
    s = make_server()
    async with ws_connect(s.ws + "/ws?ch=news", open_timeout=T) as sub, \
            ws_connect(s.ws + "/ws?pub=news", open_timeout=T) as pub:
        for i in range(5):
            await pub.send(f'msg "{i}"')
        for i in range(5):
            got = await asyncio.wait_for(sub.recv(decode=False), T)
            assert got == render(i + 1, "news", f'msg "{i}"')
        assert s.messages == []
        assert s.hub.stats()["messages_in"] == 5


# -- 5. timers --------------------------------------------------------------------------------


def test_server_pings(run_loop):
    async def scenario(s):
        tr, pc = await asyncio.wait_for(
            picows.ws_connect(Collector, s.ws + "/ws?ch=a&ping=0.2", enable_auto_pong=False), T)
        try:
            t0 = time.monotonic()
            for _ in range(3):
                t, payload, _ = await pc.next(types=(picows.WSMsgType.PING,), timeout=2)
            assert time.monotonic() - t0 >= 0.35     # three pings, 0.2 s apart
        finally:
            tr.disconnect()
        raw = await RawWS.connect(s, "/ws?ch=a&ping=0.2")
        fin, op, _ = await raw.recv(timeout=2)
        assert op == 0x9
        raw.close()

    run_loop(lambda: run_server(scenario, tick=0.05))


async def test_ttl_closes_with_1000(make_server):
    s = make_server(tick=0.05)
    t0 = time.monotonic()
    w = await ws_connect(s.ws + "/ws?ch=a&ttl=0.3", open_timeout=T)
    with pytest.raises(websockets.ConnectionClosedOK):
        await asyncio.wait_for(w.recv(), 3)
    assert w.protocol.close_rcvd.code == 1000
    assert 0.2 <= time.monotonic() - t0 < 2.5
    await until(lambda: s.hub.stats()["subscribers"] == 0)


# -- 6. streams -------------------------------------------------------------------------------


async def test_eventsource_stream(make_server):
    s = make_server(tick=0.05)
    async with httpx.AsyncClient(timeout=T) as c:
        async with c.stream("GET", f"{s.http}/sse?ch=ev") as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/event-stream"
            await until(lambda: s.subs("ev") == 1)
            s.hub.publish("ev", "l1\nl2", event_id="7", event_type="upd")
            s.hub.publish("ev", "plain")
            want = b"id: 7\nevent: upd\ndata: l1\ndata: l2\n\ndata: plain\n\n"
            buf = b""
            it = resp.aiter_raw()
            while len(buf) < len(want):
                buf += await asyncio.wait_for(it.__anext__(), T)
            assert buf == want
    async with httpx.AsyncClient(timeout=T) as c:
        async with c.stream("GET", f"{s.http}/sse?ch=ev2&ping=0.1") as resp:
            buf = b""
            it = resp.aiter_raw()
            while buf.count(b": ping\n\n") < 2:
                buf += await asyncio.wait_for(it.__anext__(), 2)
            assert buf == b": ping\n\n" * buf.count(b": ping\n\n")


async def test_longpoll_message_then_timeout(make_server):
    s = make_server(tick=0.05)
    async with httpx.AsyncClient(timeout=T) as c:
        task = asyncio.create_task(c.get(f"{s.http}/lp?ch=lp&timeout=5"))
        await until(lambda: s.subs("lp") == 1, what="long-poll subscriber")
        assert s.hub.publish("lp", "hello") == 1
        resp = await asyncio.wait_for(task, T)
        assert resp.status_code == 200
        assert resp.content == b"hello"
        assert resp.headers["content-length"] == "5"
        assert resp.headers["content-type"] == "text/plain"
        assert resp.headers["etag"] == "W/1"          # the server's first message: tag 1
        lm = email.utils.parsedate_to_datetime(resp.headers["last-modified"])
        assert abs(lm.timestamp() - time.time()) < 5
        assert s.subs("lp") == 0                  # one message, then unsubscribed
        # same (keep-alive) connection: nothing published -> timeout response
        t0 = time.monotonic()
        resp = await c.get(f"{s.http}/lp?ch=lp&timeout=0.3")
        assert resp.status_code == 304
        assert 0.2 <= time.monotonic() - t0 < 2.5
    assert s.hub.stats()["accepted"] == 1


async def test_longpoll_raw_timeout_bytes(make_server):
    s = make_server(tick=0.05)
    r, w = await open_raw(s)
    w.write(b"GET /lp?ch=z&timeout=0.2 HTTP/1.1\r\nHost: x\r\n\r\n")
    data = await asyncio.wait_for(r.readexactly(len(LP_TIMEOUT)), 3)
    assert data == LP_TIMEOUT
    w.close()


# -- 7. shutdown ------------------------------------------------------------------------------


def test_shutdown_closes_1001_and_refuses(run_loop):
    async def scenario():
        s = Server().start()
        try:
            w = await ws_connect(s.ws + "/ws?ch=a", open_timeout=T)
            raw = await RawWS.connect(s)
            await s.stop()
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(w.recv(), T)
            assert w.protocol.close_rcvd is not None and w.protocol.close_rcvd.code == 1001
            code, _ = await raw.recv_close()
            assert code == 1001
            raw.close()
            with pytest.raises(ConnectionRefusedError):
                await asyncio.wait_for(asyncio.open_connection(s.host, s.port), T)
            assert s.hub.connections == 0
        finally:
            await s.stop()

    run_loop(scenario)


# -- 8. slow consumer -------------------------------------------------------------------------


async def _slow_consumer(s, n=200):
    loop = asyncio.get_running_loop()
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    await asyncio.wait_for(loop.sock_connect(slow, (s.host, s.port)), T)
    await loop.sock_sendall(slow, handshake_request("/ws?ch=a", "dGhlIHNhbXBsZSBub25jZQ=="))
    head = b""
    while b"\r\n\r\n" not in head:
        head += await asyncio.wait_for(loop.sock_recv(slow, 1), T)
    assert head.startswith(b"HTTP/1.1 101")
    got = []
    async with ws_connect(s.ws + "/ws?ch=a", open_timeout=T, max_size=None) as good:
        async def reader():
            for _ in range(n):
                got.append(await asyncio.wait_for(good.recv(decode=False), T))

        task = asyncio.create_task(reader())
        pad = "x" * (65536 - 8)
        for i in range(n):
            s.hub.publish("a", f"{i:08d}{pad}")
            # keep the good reader within 4 messages (256 KiB) of the publisher
            await until(lambda: len(got) >= i - 3 or task.done(), what="good reader")
        await asyncio.wait_for(task, T)
        assert len(got) == n
        for i, m in enumerate(got):
            assert m.startswith(b'{"id":%d,"channel":"a","text":"%08d' % (i + 1, i))
            assert len(m) == len(render(i + 1, "a", f"{i:08d}{pad}"))
    return slow


async def test_slow_consumer_closed(make_server):
    s = make_server(max_backpressure=1 << 20)
    slow = await _slow_consumer(s)
    try:
        st = s.hub.stats()
        assert st["closed_slow"] >= 1
        assert st["dropped"] == 0
        await until(lambda: s.subs("a") == 0, what="slow consumer unsubscribed")
    finally:
        slow.close()


async def test_slow_consumer_drop_policy(make_server):
    s = make_server(max_backpressure=1 << 20, backpressure_policy="drop")
    slow = await _slow_consumer(s)
    try:
        st = s.hub.stats()
        assert st["dropped"] > 0
        assert st["closed_slow"] == 0
        assert s.hub.connections >= 1
        # the slow one is still subscribed (the good client has closed by now)
        await until(lambda: s.subs("a") == 1, what="good client gone, slow one kept")
    finally:
        slow.close()
