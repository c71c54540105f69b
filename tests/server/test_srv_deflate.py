"""permessage-deflate end to end: a location with compression = true, real clients that
negotiate it (websockets, headless Chromium) and one that does not, against a real gogin
process; the compression counter of /metrics shows one compression per message."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from gogin_e2e import (GoginFactory, chromium_page, default_locations_plus, metric_values,
                       publish)

SUBSCRIBERS = 20
MESSAGES = 30
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>z</title></head><body><script>
window.msgs = []; window.ext = null;
window.start = function (url) {
  const ws = new WebSocket(url);
  ws.onopen = () => { window.ext = ws.extensions; };
  ws.onmessage = (e) => window.msgs.push(e.data);
};
</script></body></html>
"""


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deflate")
    (tmp / "index.html").write_text(PAGE)
    f = GoginFactory(tmp)
    srv = f({"locations": default_locations_plus(
        {"path": "/wz/", "role": "subscriber", "mode": "websocket", "compression": True,
         "compression_min_size": 64, "template": "~text~", "public": True},
        {"path": "/page/", "role": "static", "root": str(tmp)})})
    try:
        yield srv
    finally:
        f.close()


async def metric(http, g, name) -> int:
    async with http.get(f"{g.base}/metrics") as r:
        text = (await r.read()).decode()
    return int(metric_values(text)[f"gogin_{name}"])


def document(i: int) -> str:
    return json.dumps({"id": i, "items": [{"user": f"u{k}", "text": "a new reply " * 4}
                                          for k in range(8)]})


async def test_compressed_fanout_compresses_once_per_message(g, http, chan):
    clients = [await websockets.connect(f"{g.ws}/wz/{chan}", compression="deflate")
               for _ in range(SUBSCRIBERS)]
    plain = await websockets.connect(f"{g.ws}/wz/{chan}", compression=None)
    try:
        ext = clients[0].response.headers["Sec-WebSocket-Extensions"]
        assert ext == ("permessage-deflate; server_no_context_takeover; "
                       "client_no_context_takeover")
        assert "Sec-WebSocket-Extensions" not in plain.response.headers
        before = await metric(http, g, "deflate_compressed_total")
        sent_in = await metric(http, g, "deflate_bytes_in_total")
        sent_out = await metric(http, g, "deflate_bytes_out_total")
        docs = [document(i) for i in range(MESSAGES)]
        for d in docs:
            assert (await publish(http, g.base, chan, d))[0] == 200
        for ws in clients + [plain]:
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in docs]
            assert got == docs
        # once per message, not once per subscriber; and it did compress
        assert await metric(http, g, "deflate_compressed_total") - before == MESSAGES
        bytes_in = await metric(http, g, "deflate_bytes_in_total") - sent_in
        bytes_out = await metric(http, g, "deflate_bytes_out_total") - sent_out
        assert bytes_in == sum(len(d) for d in docs)
        assert bytes_out < bytes_in // 3
        # a short message goes uncompressed (compression_min_size), binary is compressed too
        assert (await publish(http, g.base, chan, "short"))[0] == 200
        blob = bytes(range(256)) * 4
        assert (await publish(http, g.base, chan, blob,
                              {"Content-Type": "application/octet-stream"}))[0] == 200
        for ws in clients[:3] + [plain]:
            assert await asyncio.wait_for(ws.recv(), 5) == "short"
            assert await asyncio.wait_for(ws.recv(), 5) == blob
    finally:
        for ws in clients + [plain]:
            await ws.close()


async def test_compressed_client_messages_are_inflated(gogin_factory, chan):
    g = gogin_factory({"locations": default_locations_plus(
        {"path": "/echo/", "role": "subscriber", "mode": "websocket", "compression": True,
         "compression_min_size": 0, "template": "~text~", "client_publish": "open",
         "public": True})})
    async with websockets.connect(f"{g.ws}/echo/{chan}", compression="deflate") as ws:
        for text in ("é" * 500, "x", json.dumps({"k": list(range(300))})):
            await ws.send(text)
            assert await asyncio.wait_for(ws.recv(), 5) == text
    # a client message that inflates past max_message_size: 1009
    g2 = gogin_factory({"locations": default_locations_plus(
        {"path": "/echo/", "role": "subscriber", "mode": "websocket", "compression": True,
         "template": "~text~", "client_publish": "open", "max_message_size": 4096,
         "public": True})})
    async with websockets.connect(f"{g2.ws}/echo/{chan}", compression="deflate",
                                  max_size=None) as ws:
        await ws.send("z" * 3000)                      # under the limit once inflated
        assert await asyncio.wait_for(ws.recv(), 5) == "z" * 3000
        await ws.send("z" * 100_000)                   # compresses to ~100 bytes
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1009


async def test_chromium_negotiates_and_reads_compressed_messages(g, http, chan):
    async with chromium_page() as page:
        await page.goto(f"{g.base}/page/index.html")
        await page.evaluate(f"window.start('{g.ws}/wz/{chan}')")
        await page.wait_for_function("window.ext !== null", timeout=10000)
        assert "permessage-deflate" in await page.evaluate("window.ext")
        docs = [document(i) for i in range(5)]
        for d in docs:
            assert (await publish(http, g.base, chan, d))[0] == 200
        await page.wait_for_function(f"window.msgs.length >= {len(docs)}", timeout=10000)
        assert await page.evaluate("window.msgs") == docs


async def test_compression_off_by_default(gogin, chan):
    async with websockets.connect(f"{gogin.ws}/ws/{chan}", compression="deflate") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
