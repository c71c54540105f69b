"""docs/protocol.md, Channels and Publisher: the publisher location's answers, byte-exact to
push-stream's formats."""

from __future__ import annotations

import asyncio
import re
import socket

from gogin_e2e import NO_CACHE, parse_default, publish, recv, ws_connect


def info(ch, published, subscribers, stored=None) -> bytes:
    # message storage is on by default (docs/protocol.md, Message storage): every message is
    # kept, up to 100
    stored = min(published, 100) if stored is None else stored
    return (f'{{"channel": "{ch}", "published_messages": {published}, '
            f'"stored_messages": {stored}, "subscribers": {subscribers}}}\r\n').encode()


GROUP = re.compile(
    rb'^\{"hostname": "([^"]+)", "time": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", "channels": (\d+), '
    rb'"wildcard_channels": (\d+), "uptime": (\d+), "infos": \[\r\n(.*)\]\}\r\n$', re.S)


async def test_channel_info_on_publish_and_get(shared_gogin, http, chan):
    g = shared_gogin
    async with ws_connect(f"{g.ws}/ws/{chan}"), ws_connect(f"{g.ws}/ws/{chan}"):
        for n in (1, 2, 3):
            status, headers, body = await publish(http, g.base, chan, f"msg{n}")
            assert status == 200
            assert body == info(chan, n, 2)
            assert headers["Content-Type"] == "application/json"
            assert headers["Cache-Control"] == NO_CACHE
            assert "Expires" in headers
        async with http.get(f"{g.base}/pub", params={"id": chan}) as r:
            assert r.status == 200
            assert await r.read() == info(chan, 3, 2)
            assert r.headers["Cache-Control"] == NO_CACHE
    async with http.get(f"{g.base}/pub", params={"id": chan + "missing"}) as r:
        assert r.status == 404
        assert r.headers["Cache-Control"] == NO_CACHE


async def test_publish_to_several_channels_answers_group_format(shared_gogin, http, chan):
    g = shared_gogin
    a, b = f"{chan}a", f"{chan}b"
    async with ws_connect(f"{g.ws}/ws/{a}") as wa, ws_connect(f"{g.ws}/ws/{b}") as wb:
        status, headers, body = await publish(http, g.base, f"{a}/{b}", "both")
        assert status == 200
        assert headers["Cache-Control"] == NO_CACHE
        m = GROUP.match(body)
        assert m, body
        assert m.group(1) == socket.gethostname().lower().encode()
        assert int(m.group(2)) >= 2            # every channel of the (shared) server
        assert m.group(5) == info(a, 1, 1)[:-2] + b",\r\n" + info(b, 1, 1)
        for ws, ch in ((wa, a), (wb, b)):
            doc = parse_default(await recv(ws))
            assert (doc["channel"], doc["text"], doc["id"]) == (ch, "both", 1)


async def test_publish_event_id_and_body_published_once_when_body_arrives_late(shared_gogin, chan):
    """A client (httpx, curl with big bodies) may send the head and the body in two packets:
    the message must still be published exactly once, with one answer."""
    g = shared_gogin
    async with ws_connect(f"{g.ws}/ws/{chan}") as ws:
        reader, writer = await asyncio.open_connection(g.host, g.port)
        try:
            writer.write(f"POST /pub?id={chan} HTTP/1.1\r\nHost: x\r\nEvent-Id: late\r\n"
                         "Content-Length: 4\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(b"body")
            await writer.drain()
            doc = parse_default(await recv(ws))
            assert (doc["id"], doc["text"], doc["eventid"]) == (1, "body", "late")
            writer.write(f"GET /pub?id={chan} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(0.3)
            data = await asyncio.wait_for(reader.read(65536), 5)
        finally:
            writer.close()
        assert data.count(b"HTTP/1.1 200") == 2, data     # one for the POST, one for the GET
        assert data.endswith(info(chan, 1, 1)), data
        with_timeout = asyncio.wait_for(ws.recv(), 0.3)
        try:
            extra = await with_timeout
        except asyncio.TimeoutError:
            extra = None
        assert extra is None, f"published twice: {extra!r}"


async def test_expect_100_continue_is_answered_before_the_body(shared_gogin, chan):
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits for the interim
    answer before sending the body (RFC 9110 §10.1.1)."""
    g = shared_gogin
    reader, writer = await asyncio.open_connection(g.host, g.port)
    try:
        body = b"x" * 2000
        writer.write(f"POST /pub?id={chan} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode())
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(body)
        await writer.drain()
        final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert final.startswith(b"HTTP/1.1 200 OK")
    finally:
        writer.close()


async def test_publisher_errors(shared_gogin, http, chan):
    g = shared_gogin
    cases = [
        ("POST", {"id": chan}, b"", 400, "Empty post requests are not allowed."),
        ("POST", {}, b"x", 400, "No channel id provided."),
        ("POST", {"id": ""}, b"x", 400, "No channel id provided."),
        ("GET", {}, None, 400, "No channel id provided."),
        ("POST", {"id": "ALL"}, b"x", 403, "Channel id not authorized for this method."),
        ("POST", {"id": "ro*om"}, b"x", 403, "Channel id not authorized for this method."),
        ("GET", {"id": "*"}, None, 403, "Channel id not authorized for this method."),
        ("POST", {"id": "c" * 1025}, b"x", 400, "Channel id is too large."),
    ]
    for method, params, body, status, explain in cases:
        async with http.request(method, f"{g.base}/pub", params=params, data=body) as r:
            assert (r.status, r.headers.get("X-Gogin-Explain")) == (status, explain), \
                (method, params, body)
            assert r.headers["Cache-Control"] == NO_CACHE
            assert await r.read() == b""
    # 1024 characters is still fine
    status, _, _ = await publish(http, g.base, "c" * 1024, "x")
    assert status == 200


async def test_publisher_methods(shared_gogin, http, chan):
    g = shared_gogin
    # the module's admin publisher: Allow exactly "GET, POST, PUT, DELETE" (HEAD is refused)
    for method in ("PATCH", "HEAD", "TRACE"):
        async with http.request(method, f"{g.base}/pub", params={"id": chan}, data=b"x") as r:
            assert (r.status, r.headers["Allow"]) == (405, "GET, POST, PUT, DELETE"), method
            assert r.headers["Cache-Control"] == NO_CACHE
    # OPTIONS (a CORS preflight): 200 without Allow, as publisher.c answers it
    async with http.options(f"{g.base}/pub", params={"id": chan}) as r:
        assert r.status == 200
        assert await r.read() == b""
        assert "Allow" not in r.headers
        assert r.headers["Cache-Control"] == NO_CACHE
    # PUT publishes like POST
    async with http.put(f"{g.base}/pub", params={"id": chan}, data=b"via put") as r:
        assert r.status == 200
        assert await r.read() == info(chan, 1, 0)


async def test_message_too_large_is_413(gogin_factory, http, chan):
    g = gogin_factory({"limits": {"max_message_size": 100}})
    status, headers, _ = await publish(http, g.base, chan, b"x" * 101)
    assert status == 413
    status, _, body = await publish(http, g.base, chan, b"x" * 100)
    assert (status, body) == (200, info(chan, 1, 0))


async def test_multi_channel_json_publisher_websocket(shared_gogin, chan):
    """docs/protocol.md, Publisher: a WebSocket on the publisher location without ?id= takes
    JSON items
    {"id", "text", "event_id", "event_type"} (one or an array), published in order; a bad
    item is answered {"error", "index"} and the stream stays open."""
    import json
    g = shared_gogin
    a, b = chan + "a", chan + "b"
    async with ws_connect(f"{g.ws}/ws/{a}") as sa, ws_connect(f"{g.ws}/ws/{b}") as sb, \
            ws_connect(f"{g.ws}/pub") as pub:
        await pub.send(json.dumps([
            {"id": a, "text": "one \"quoted\" \\ line\n"},
            {"id": [a, b], "text": "both ü"},
            {"id": b, "text": ""},                                  # index 2: empty text
            {"id": "x" * 5000, "text": "too long an id"},           # index 3
            {"id": b, "text": "\ud800 lone surrogate"},             # index 4: not UTF-8
            {"id": b, "text": "last", "event_id": "e1"},
        ]))
        errors = [json.loads(await recv(pub)) for _ in range(3)]
        assert [e["index"] for e in errors] == [2, 3, 4]
        assert all(e["error"] for e in errors)
        assert [parse_default(await recv(sa))["text"] for _ in range(2)] == [
            "one \"quoted\" \\ line\n", "both ü"]
        got_b = [parse_default(await recv(sb)) for _ in range(2)]
        assert [d["text"] for d in got_b] == ["both ü", "last"]
        assert got_b[1]["eventid"] == "e1"
        await pub.send("not json")
        assert json.loads(await recv(pub)) == {"error": "message is not JSON", "index": 0}
        await pub.send(json.dumps({"id": a, "text": "after errors"}))
        assert parse_default(await recv(sa))["text"] == "after errors"


def test_publisher_websocket_items_same_answers_in_the_core_and_in_python():
    """The publisher WebSocket's JSON items take the core's one call per frame
    (Hub.publish_items) without an events channel, and the Python path with one (its
    channel_created events go out between the publishes): both refuse the same items with the
    same reasons and publish the same messages, in order."""
    import json

    from gogin._core import Opcode
    from gogin.config import load
    from gogin.server import Server

    items = [
        {"id": "a", "text": "one"},
        {"id": ["a", "b", "a"], "text": "to three", "event_id": "e1", "event_type": "t"},
        {"id": [], "text": "no channel"},
        {"id": "a", "text": ""},
        {"id": "a", "text": "x", "event_id": "bad\nid"},
        {"id": "a", "text": "x", "event_type": "bad\rtype"},
        {"id": ["a", "x" * 5000], "text": "too long an id"},
        {"id": "ALL", "text": "forbidden"},
        {"id": "a/b", "text": "slash"},
        {"id": "c", "text": "\ud800 lone surrogate"},
        {"id": "c", "text": "last ü"},
        {"id": "", "text": "empty id"},
    ]
    frame = json.dumps(items).encode()

    def run(events_channel: str):
        cfg = load(env={}, overrides={
            "limits": {"events_channel_id": events_channel},
            "locations": [{"path": "/pub", "role": "publisher"}]})
        server = Server(cfg)
        loc = next(x for x in server.locations if type(x).__name__ == "PublisherLocation")

        class Conn:                     # what on_message uses of a connection: send, data
            data = None
            closed = False
            sent: list = []

            def send(self, text):
                self.sent.append(json.loads(text))

        conn = Conn()
        conn.sent = []
        loc.on_message(conn, Opcode.TEXT, frame)
        loc.on_message(conn, Opcode.TEXT, json.dumps(items[0]).encode())   # one object
        stored = {}
        for name in ("a", "b", "c"):
            ch = server.hub.channel(name)
            stored[name] = None if ch is None else (
                ch.published, [(eid, text) for _, _, _, eid, text in server.hub.stored(name)])
        return conn.sent, stored

    core_errors, core_stored = run("")
    py_errors, py_stored = run("events")
    assert core_errors == py_errors
    assert [e["index"] for e in core_errors] == [2, 3, 4, 5, 6, 7, 8, 9, 11]
    assert core_errors[0]["error"] == "id must be a channel id or a list of them"
    assert core_errors[4]["error"] == "Channel id is too large."
    assert core_errors[7]["error"] == "text is not valid Unicode"
    assert core_stored == py_stored
    assert core_stored["a"][0] == 4        # one, twice "to three", one again
    assert core_stored["c"][1] == [("", "last ü".encode())]
    assert core_stored["b"][1] == [("e1", b"to three")]
