"""Long-polling extras of push-stream (PROTOCOL.md §3): JSONP `?callback=` and
`timeout_with_body` (the timeout message, id -3, instead of 304)."""

from __future__ import annotations

import asyncio
import json

from gogin_e2e import default_locations_plus, publish


def _config():
    return {"locations": default_locations_plus(
        {"path": "/lpj/", "role": "subscriber", "mode": "longpoll", "template": "~text~",
         "ttl": 0.6},
        {"path": "/lpb/", "role": "subscriber", "mode": "longpoll", "ttl": 0.6,
         "timeout_with_body": True},
    )}


async def test_jsonp_long_poll_wraps_the_message_and_times_out_empty(gogin_factory, http, chan):
    g = gogin_factory(_config())

    async def later():
        await asyncio.sleep(0.2)
        await publish(http, g.base, chan, b"hi there")

    task = asyncio.ensure_future(later())
    async with http.get(f"{g.base}/lpj/{chan}?callback=app.onMessage") as r:
        body = await r.text()
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/javascript")
    await task
    assert body == "app.onMessage([hi there]);"      # utils.h, CALLBACK_*_CHUNK
    # nothing new: the answer still calls back, with nothing in it
    async with http.get(f"{g.base}/lpj/{chan}?callback=cb") as r:
        assert r.status == 200 and await r.text() == "cb([]);"
    # polling with JSONP answers at once from storage
    async with http.get(f"{g.base}/poll/{chan}.b1?callback=cb") as r:
        text = await r.text()
        assert text.startswith("cb([") and json.loads(text[4:-3])["text"] == "hi there"
    async with http.get(f"{g.base}/lpj/{chan}?callback=alert(1)") as r:
        assert r.status == 400 and r.headers["X-Gogin-Explain"] == "Invalid callback name."


async def test_timeout_with_body_sends_the_timeout_message_at_the_clients_position(
        gogin_factory, http, chan):
    g = gogin_factory(_config())
    await publish(http, g.base, chan, b"one")
    async with http.get(f"{g.base}/lpb/{chan}.b1") as r:
        assert json.loads(await r.text())["text"] == "one"
        pos = {"If-Modified-Since": r.headers["Last-Modified"], "If-None-Match": r.headers["Etag"]}
    async with http.get(f"{g.base}/lpb/{chan}", headers=pos) as r:
        doc = json.loads(await r.text())
        assert r.status == 200 and doc["id"] == -3 and doc["text"] == ""
        # resuming from the timeout answer neither skips nor repeats
        pos = {"If-Modified-Since": r.headers["Last-Modified"], "If-None-Match": r.headers["Etag"]}
    await publish(http, g.base, chan, b"two")
    async with http.get(f"{g.base}/lpb/{chan}", headers=pos) as r:
        assert json.loads(await r.text())["text"] == "two"
