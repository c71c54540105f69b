"""Long-polling extras of push-stream (docs/protocol.md, Subscribers): JSONP `?callback=` and
`timeout_with_body` (the timeout message, id -3, instead of 304)."""

from __future__ import annotations

import asyncio
import json

import pytest

from gogin_e2e import default_locations_plus, publish


def _config():
    return {"locations": default_locations_plus(
        {"path": "/lpj/", "role": "subscriber", "mode": "longpoll", "template": "~text~",
         "ttl": 0.6},
        {"path": "/lpb/", "role": "subscriber", "mode": "longpoll", "ttl": 0.6,
         "timeout_with_body": True},
        {"path": "/pollj/", "role": "subscriber", "mode": "polling", "template": "~text~"},
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


@pytest.mark.parametrize("path", ["/lpj/", "/pollj/"])
async def test_jsonp_old_messages_grouped_in_one_answer(gogin_factory, http, chan, path):
    """The module's spec (misc/spec/subscriber/long_polling_spec.rb and polling_spec.rb,
    "should return old messages using function name specified in callback parameter grouping
    in one answer"), its expected bytes as written there."""
    g = gogin_factory(_config())
    await publish(http, g.base, chan, "body", {"Event-Id": "event_id"})
    await publish(http, g.base, chan, "body1")
    url = f"{g.base}{path}{chan}"
    async with http.get(f"{url}.b2?callback=callback_function") as r:
        assert await r.text() == "callback_function([body,body1]);"
    async with http.get(f"{url}?callback=callback_function",
                        headers={"Last-Event-Id": "event_id"}) as r:
        assert await r.text() == "callback_function([body1]);"
    async with http.get(f"{url}?callback=callback_function",
                        headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}) as r:
        assert await r.text() == "callback_function([body,body1]);"


async def test_jsonp_messages_of_several_channels_in_publish_order(gogin_factory, http, chan):
    """The module's spec "should return messages from different channels on JSONP response"
    publishes body1_1 (ch1), body1_2 (ch2), body1_3 (ch3), body2_1 (ch1), ... and expects them
    channel after channel: [body1_1,body2_1,body3_1,body1_2,...].  gogin merges the channels by
    (time, tag), the publish order, so that the array's last message is the newest, the one
    pushstream.js resumes from (docs/protocol.md, differences); the separators are the same."""
    g = gogin_factory(_config())
    chans = [f"{chan}1", f"{chan}2", f"{chan}3"]
    for rnd in (1, 2, 3):
        for i, ch in enumerate(chans, 1):
            await publish(http, g.base, ch, f"body{rnd}_{i}")
    path = "/".join(f"{ch}.b3" for ch in chans)
    async with http.get(f"{g.base}/lpj/{path}?callback=callback_function") as r:
        assert await r.text() == ("callback_function([body1_1,body1_2,body1_3,body2_1,body2_2,"
                                  "body2_3,body3_1,body3_2,body3_3]);")
