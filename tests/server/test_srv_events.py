"""The events channel (limits.events_channel_id), wildcard channel rules,
authorized_channels_only, and the channel lifecycle (channel_inactivity_time, message_ttl)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from gogin_e2e import (default_locations_plus, explain_of, publish, recv, wait_for,
                       ws_connect)

EV = "events"
TEXT_WS = {"path": "/wst/", "role": "subscriber", "mode": "websocket", "template": "~text~"}


def ev(kind, channel):
    return f'{{"type": "{kind}", "channel": "{channel}"}}'


def events_config(**limits):
    return {"limits": {"events_channel_id": EV, "channel_inactivity_time": 1.0, **limits},
            "locations": default_locations_plus(TEXT_WS)}


async def no_more(ws, wait=0.3):
    try:
        extra = await asyncio.wait_for(ws.recv(), wait)
    except asyncio.TimeoutError:
        return None
    return extra


async def test_events_subscribe_unsubscribe_and_inactivity(gogin_factory, chan):
    g = gogin_factory(events_config())
    x = f"x{chan}"
    async with ws_connect(f"{g.ws}/wst/{EV}") as events:
        async with ws_connect(f"{g.ws}/wst/{x}"):
            assert await recv(events) == ev("channel_created", x)
            assert await recv(events) == ev("client_subscribed", x)
        assert await recv(events) == ev("client_unsubscribed", x)
        # the sweeper runs every 5 s; the channel is idle for 1 s → destroyed within ~8 s
        t0 = time.monotonic()
        assert await recv(events, timeout=9) == ev("channel_destroyed", x)
        assert time.monotonic() - t0 >= 0.9
        assert await no_more(events) is None


async def test_events_rendered_through_the_location_template(gogin_factory, chan):
    """The default template wraps the event document as JSON text (json-escaped)."""
    g = gogin_factory(events_config())
    x = f'q"{chan}'      # a quote in the channel id: the event stays valid JSON
    async with ws_connect(f"{g.ws}/ws/{EV}") as events:
        async with ws_connect(f"{g.ws}/ws/{x.replace(chr(34), '%22')}"):
            frame = json.loads(await recv(events))
            assert frame["channel"] == EV
            assert json.loads(frame["text"]) == {"type": "channel_created", "channel": x}
            frame = json.loads(await recv(events))
            assert json.loads(frame["text"]) == {"type": "client_subscribed", "channel": x}


async def test_events_channel_deleted(gogin_factory, http, chan):
    g = gogin_factory(events_config())
    y = f"y{chan}"
    async with ws_connect(f"{g.ws}/wst/{EV}") as events:
        assert (await publish(http, g.base, y, "stored"))[0] == 200
        assert await recv(events) == ev("channel_created", y)
        status, hdrs, _ = await publish(http, g.base, y, b"", method="DELETE")
        assert status == 200 and explain_of(hdrs) == "Channel deleted."
        assert await recv(events) == ev("channel_destroyed", y)
        assert await no_more(events) is None


async def test_events_channel_refuses_publish_and_delete(gogin_factory, http):
    g = gogin_factory(events_config())
    async with ws_connect(f"{g.ws}/wst/{EV}") as events:
        status, hdrs, _ = await publish(http, g.base, EV, '{"type": "forged"}')
        assert status == 403
        assert explain_of(hdrs) == "Channel id not authorized for this method."
        status, hdrs, _ = await publish(http, g.base, EV, b"", method="DELETE")
        assert status == 403
        assert explain_of(hdrs) == "Channel id not authorized for this method."
        assert await no_more(events) is None, "the events subscriber got something"


# -- wildcard channels, authorized_channels_only --------------------------------------------------

async def ws_refused(url):
    """Channel errors on a valid handshake: upgraded, then closed with 1008 and a JSON reason
    (docs/protocol.md, Subscribers) - returned as (http_status, explain)."""
    async with ws_connect(url) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1008, ws.close_code
    doc = json.loads(ws.close_reason)
    return doc["http_status"], doc["explain"]


async def test_wildcard_rules(gogin, http, chan):
    g = gogin
    too_much = (403, "Subscribed too much wildcard channels.")
    assert await ws_refused(f"{g.ws}/ws/broad_{chan}") == too_much
    async with http.get(f"{g.base}/poll/broad_{chan}") as r:
        assert (r.status, explain_of(r.headers)) == too_much
    async with ws_connect(f"{g.ws}/ws/a{chan}/broad_{chan}") as ws:
        await publish(http, g.base, f"broad_{chan}", "to all")
        assert json.loads(await recv(ws))["text"] == "to all"
    # wildcard_channel_max_qtd = 3 (default)
    three = "/".join(f"broad_{i}{chan}" for i in range(3))
    async with ws_connect(f"{g.ws}/ws/a{chan}/{three}"):
        pass
    four = "/".join(f"broad_{i}{chan}" for i in range(4))
    assert await ws_refused(f"{g.ws}/ws/a{chan}/{four}") == too_much


async def test_wildcard_max_qtd_from_config(gogin_factory, chan):
    g = gogin_factory({"limits": {"wildcard_channel_prefix": "all.", "wildcard_channel_max_qtd": 1}})
    async with ws_connect(f"{g.ws}/ws/a{chan}/all.{chan}"):
        pass
    assert await ws_refused(f"{g.ws}/ws/a{chan}/all.1/all.2") == \
        (403, "Subscribed too much wildcard channels.")


async def test_authorized_channels_only(gogin_factory, http, chan):
    g = gogin_factory({"limits": {"authorized_channels_only": True}})
    refused = (403, "Subscriber could not create channels.")
    assert await ws_refused(f"{g.ws}/ws/{chan}") == refused
    async with http.get(f"{g.base}/ev/{chan}") as r:
        assert (r.status, explain_of(r.headers)) == refused
    async with http.get(f"{g.base}/pub", params={"id": chan}) as r:
        assert r.status == 404, "a refused subscriber must not have created the channel"
    assert (await publish(http, g.base, chan, "first"))[0] == 200
    async with ws_connect(f"{g.ws}/ws/{chan}") as ws:
        await publish(http, g.base, chan, "second")
        assert json.loads(await recv(ws))["text"] == "second"


# -- channel lifecycle ----------------------------------------------------------------------------

async def channels(http, base):
    async with http.get(f"{base}/channels-stats", params={"id": "ALL"}) as r:
        assert r.status == 200
        return {i["channel"]: i for i in json.loads(await r.read())["infos"]}


async def test_channel_lifecycle_inactivity_and_ttl(gogin_factory, http, chan):
    g = gogin_factory({"limits": {"channel_inactivity_time": 1.0, "message_ttl": 6.0}})
    empty, kept = f"empty{chan}", f"kept{chan}"
    async with ws_connect(f"{g.ws}/ws/{empty}"):
        pass
    assert (await publish(http, g.base, kept, "stays while stored"))[0] == 200
    t0 = time.monotonic()
    now = await channels(http, g.base)
    assert empty in now and kept in now
    # no subscriber, nothing stored: gone at the first sweep after 1 s idle (sweeps every 5 s)
    gone = await wait_for(lambda: _absent(http, g.base, empty), timeout=8, interval=0.2)
    assert gone, "an idle channel without storage was not reclaimed"
    now = await channels(http, g.base)
    assert kept in now and now[kept]["stored_messages"] == 1, \
        "a channel with stored messages was reclaimed before they expired"
    assert time.monotonic() - t0 < 6
    # its message expires at 6 s; the next sweep reclaims it
    gone = await wait_for(lambda: _absent(http, g.base, kept), timeout=9, interval=0.2)
    assert gone, "the channel stayed after its stored messages expired"
    assert time.monotonic() - t0 >= 5.5


async def _absent(http, base, name):
    return name not in await channels(http, base)
