"""docs/protocol.md, Publisher and Subscribers end to end: HTTP publishers (aiohttp, httpx) →
WebSocket subscribers
(websockets, picows), the default and a custom template, binary messages, DELETE."""

from __future__ import annotations

import email.utils
import json

import httpx
import picows
import pytest
import websockets

from gogin_e2e import (NO_CACHE, default_locations_plus, parse_default, picows_connect,
                       publish, recv, ws_connect)

NASTY = 'He said "hi" \\ back\nnext\tline\r\x01\x1f\x7f ünïcødé ✓ 🎉 </script>'


def expected_frame(msg_id, channel, text, tag, time_, eventid):
    """The default template, filled by hand (JSON escaping checked separately)."""
    esc = json.dumps(text, ensure_ascii=False)[1:-1]
    return (f'{{"id":{msg_id},"channel":"{channel}","text":"{esc}","tag":"{tag}",'
            f'"time":"{time_}","eventid":"{eventid}"}}')


async def test_publish_aiohttp_and_httpx_reach_websockets_and_picows(shared_gogin, http, chan):
    g = shared_gogin
    async with ws_connect(f"{g.ws}/ws/{chan}") as ws:
        pc = await picows_connect(f"{g.ws}/ws/{chan}")
        try:
            # 1: aiohttp, plain text: the whole frame is byte-exact
            status, _, _ = await publish(http, g.base, chan, "hello", {"Event-Id": "ev-1"})
            assert status == 200
            frame = await recv(ws)
            assert isinstance(frame, str)
            doc = parse_default(frame)
            assert frame == expected_frame(1, chan, "hello", doc["tag"], doc["time"], "ev-1")
            assert email.utils.parsedate_to_datetime(doc["time"]) is not None
            kind, data = await pc.recv()
            assert kind == picows.WSMsgType.TEXT
            assert data == frame.encode("utf-8")

            # 2: httpx, a payload with every JSON-hostile character
            async with httpx.AsyncClient(trust_env=False, timeout=10) as hx:
                r = await hx.post(f"{g.base}/pub", params={"id": chan},
                                  content=NASTY.encode("utf-8"),
                                  headers={"Event-Id": "ev-2"})
            assert r.status_code == 200, r.text
            frame = await recv(ws)
            doc = parse_default(frame)
            assert doc["text"] == NASTY
            assert doc["id"] == 2
            assert doc["channel"] == chan
            assert doc["eventid"] == "ev-2"
            kind, data = await pc.recv()
            assert kind == picows.WSMsgType.TEXT and data == frame.encode("utf-8")
            assert json.loads(data)["text"] == NASTY

            # 3: ids keep incrementing, no event id → empty eventid
            for expected_id in (3, 4, 5):
                assert (await publish(http, g.base, chan, f"m{expected_id}"))[0] == 200
            for expected_id in (3, 4, 5):
                doc = parse_default(await recv(ws))
                assert (doc["id"], doc["text"], doc["eventid"]) == \
                    (expected_id, f"m{expected_id}", "")
                kind, data = await pc.recv()
                assert json.loads(data)["id"] == expected_id
        finally:
            pc.transport.disconnect()


async def test_binary_publish_arrives_as_binary_frame(shared_gogin, http, chan):
    g = shared_gogin
    raw = bytes(range(256))
    async with ws_connect(f"{g.ws}/ws/{chan}") as ws:
        pc = await picows_connect(f"{g.ws}/ws/{chan}")
        try:
            status, _, _ = await publish(http, g.base, chan, b"\x00{\"a\":1}\xff",
                                         {"Content-Type": "application/octet-stream"})
            assert status == 200
            frame = await recv(ws)
            assert frame == b"\x00{\"a\":1}\xff"
            assert await pc.recv() == (picows.WSMsgType.BINARY, b"\x00{\"a\":1}\xff")
            # not UTF-8, declared text/plain: still binary, bytes untouched
            status, _, _ = await publish(http, g.base, chan, raw,
                                         {"Content-Type": "text/plain"})
            assert status == 200
            assert await recv(ws) == raw
            assert await pc.recv() == (picows.WSMsgType.BINARY, raw)
            # a following text message is a text frame again
            await publish(http, g.base, chan, "after")
            assert parse_default(await recv(ws))["text"] == "after"
        finally:
            pc.transport.disconnect()


async def test_custom_template_location(gogin_factory, http, chan):
    template = "~channel~|~id~|~event-type~|~size~|~text~|{\"t\":\"~text-json~\"}"
    g = gogin_factory({"locations": default_locations_plus(
        {"path": "/custom/", "role": "subscriber", "mode": "websocket",
         "template": template})})
    async with ws_connect(f"{g.ws}/custom/{chan}") as custom, \
            ws_connect(f"{g.ws}/ws/{chan}") as default:
        status, _, _ = await publish(http, g.base, chan, 'say "x"', {"Event-Type": "greet"})
        assert status == 200
        assert await recv(custom) == f'{chan}|1|greet|7|say "x"|{{"t":"say \\"x\\""}}'
        assert parse_default(await recv(default))["text"] == 'say "x"'


async def test_delete_channel(shared_gogin, http, chan):
    g = shared_gogin
    a, b = f"{chan}a", f"{chan}b"
    async with ws_connect(f"{g.ws}/ws/{a}/{b}") as both, ws_connect(f"{g.ws}/ws/{a}") as only_a:
        await publish(http, g.base, a, "to-a")
        await publish(http, g.base, b, "to-b")
        got = sorted([parse_default(await recv(both))["text"] for _ in range(2)])
        assert got == ["to-a", "to-b"]
        assert parse_default(await recv(only_a))["text"] == "to-a"

        async with http.delete(f"{g.base}/pub", params={"id": a}) as r:
            assert r.status == 200
            assert r.headers.get("X-Gogin-Explain") == "Channel deleted."
            assert r.headers.get("Cache-Control") == NO_CACHE

        for ws in (both, only_a):
            doc = parse_default(await recv(ws))
            assert (doc["id"], doc["channel"], doc["text"]) == (-2, a, "Channel deleted")

        # the single-channel subscriber is closed with 1000
        with pytest.raises(websockets.ConnectionClosed) as exc:
            await recv(only_a)
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1000

        # the multi-channel subscriber keeps b, and no longer gets a
        await publish(http, g.base, a, "a-again")
        await publish(http, g.base, b, "b-again")
        doc = parse_default(await recv(both))
        assert (doc["channel"], doc["text"]) == (b, "b-again")

        async with http.get(f"{g.base}/pub", params={"id": b}) as r:
            assert r.status == 200
            assert b'"subscribers": 1' in await r.read()


async def test_delete_unknown_channel_is_404(shared_gogin, http, chan):
    async with http.delete(f"{shared_gogin.base}/pub", params={"id": chan + "nope"}) as r:
        assert r.status == 404


async def test_delete_with_body_and_picows_close(shared_gogin, http, chan):
    g = shared_gogin
    pc = await picows_connect(f"{g.ws}/ws/{chan}")
    try:
        await publish(http, g.base, chan, "first")
        kind, data = await pc.recv()
        assert json.loads(data)["text"] == "first"
        async with http.delete(f"{g.base}/pub", params={"id": chan}, data=b"gone for good") as r:
            assert r.status == 200
        kind, data = await pc.recv()
        doc = parse_default(data)
        assert (doc["id"], doc["text"]) == (-2, "gone for good")
        assert await pc.recv() == ("close", picows.WSCloseCode.OK)
        async with http.get(f"{g.base}/pub", params={"id": chan}) as r:
            assert r.status == 404
    finally:
        pc.transport.disconnect()
