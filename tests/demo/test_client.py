"""gogin.client against a real `gogin-server --demo` process: resume without loss or
duplicates after a cut connection (WebSocket and EventSource), the gap signal, refusals,
publishing over HTTP and over the publisher WebSocket.  The client connects through
CuttingProxy, so the test can cut it off while it publishes straight to gogin.  Every wait is
bounded."""

import asyncio
import time

import aiohttp
import pytest

from demo_process import T, CuttingProxy, DemoProcess
from gogin.client import Client, Gap, Message, Refused, retry_delay


@pytest.fixture(scope="module")
def demo():
    d = DemoProcess()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
async def proxy(demo):
    p = await CuttingProxy(demo.port).start()
    try:
        yield p
    finally:
        await p.close()


async def next_item(sub):
    return await asyncio.wait_for(sub.__anext__(), T)


async def wait_state(sub, state):
    deadline = time.monotonic() + T
    while sub.state != state:
        assert time.monotonic() < deadline, f"state {sub.state}, not {state}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("transport", ["websocket", "eventsource"])
async def test_resume_after_a_cut_connection(demo, proxy, transport):
    a, b = f"ca-{transport}", f"cb-{transport}"
    async with Client(demo.base) as pub, \
            Client(proxy.base, min_delay=0.2, max_delay=1.0) as client:
        sub = client.subscribe([a, b], transport=transport)
        await sub.wait_open()
        await pub.publish(a, "before")
        first = await next_item(sub)
        assert isinstance(first, Message) and (first.channel, first.text) == (a, "before")
        assert first.id == 1 and first.tag >= 1 and first.timestamp is not None   # tags: per server, from 1

        proxy.cut()
        await wait_state(sub, "waiting")
        sent = {a: [f"a{i:02d}" for i in range(1, 21)], b: [f"b{i}" for i in range(1, 6)]}
        for i in range(20):                   # while the client cannot connect
            await pub.publish(a, sent[a][i])
            if i % 4 == 0:
                await pub.publish(b, sent[b][i // 4])
        proxy.restore()

        got = {a: [], b: []}
        for _ in range(25):
            item = await next_item(sub)
            assert isinstance(item, Message), item
            got[item.channel].append(item.text)
        assert got == sent                    # each once, each channel in order
        assert sub.positions[a].id == 21
        # nothing else was pending: the next item is a new live message
        await pub.publish(b, "after")
        item = await next_item(sub)
        assert (item.channel, item.text) == (b, "after")
        assert sub.state == "open"


@pytest.mark.parametrize("transport", ["websocket", "eventsource"])
async def test_gap_when_history_no_longer_holds_the_position(demo, proxy, transport):
    ch = f"gap-{transport}"
    async with Client(demo.base) as pub, \
            Client(proxy.base, min_delay=0.2, max_delay=1.0) as client:
        sub = client.subscribe([ch, f"quiet-{transport}"], transport=transport)
        await sub.wait_open()
        await pub.publish(ch, "before")
        assert (await next_item(sub)).text == "before"
        proxy.cut()
        await wait_state(sub, "waiting")
        for i in range(130):                  # the demo stores 100 per channel
            await pub.publish(ch, f"g{i:03d}")
        proxy.restore()
        gap = await next_item(sub)
        assert isinstance(gap, Gap) and gap.channel == ch and "lost" in gap.text
        texts = [(await next_item(sub)).text for _ in range(100)]
        assert texts == [f"g{i:03d}" for i in range(30, 130)]


async def test_history_on_first_connect(demo):
    ch = "history-ch"
    async with Client(demo.base) as client:
        for i in range(5):
            await client.publish(ch, f"h{i}")
        sub = client.subscribe([ch], history=3)
        assert [(await next_item(sub)).text for _ in range(3)] == ["h2", "h3", "h4"]


@pytest.mark.parametrize("transport,path", [("websocket", "/subscribe/"),
                                            ("eventsource", "/subscribe-ev/")])
async def test_refusal_ends_the_subscription(demo, transport, path):
    kw = {"ws_path": path} if transport == "websocket" else {"ev_path": path}
    async with Client(demo.base, min_delay=0.1, **kw) as client:
        sub = client.subscribe(["user.alice"], transport=transport)
        with pytest.raises(Refused) as exc:
            await next_item(sub)
        assert exc.value.status == 401 and "not logged in" in exc.value.body
        assert sub.state == "refused"
        with pytest.raises(Refused):          # not retried: it stays refused
            await next_item(sub)


async def test_public_location_with_the_session_cookie(demo):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{demo.main}/login", data={"user": "bob"},
                          allow_redirects=False) as r:
            cookie = f"gogin_demo_session={r.cookies['gogin_demo_session'].value}"
    async with Client(demo.base) as pub, \
            Client(demo.base, headers={"Cookie": cookie}, ws_path="/subscribe/") as client:
        # the demo main server gives bob the channels he names, among his own
        sub = client.subscribe(["user.bob", "team.red"])
        await sub.wait_open()
        await pub.publish("team.red", "for the team")
        item = await next_item(sub)
        assert (item.channel, item.text) == ("team.red", "for the team")
        # ...and none of the others': the main server's 403, not retried
        other = client.subscribe(["user.alice"])
        with pytest.raises(Refused) as exc:
            await next_item(other)
        assert exc.value.status == 403 and "may not read user.alice" in exc.value.body


async def test_publisher_websocket(demo):
    async with Client(demo.base) as client:
        sub = client.subscribe(["pubws-a", "pubws-b"])
        await sub.wait_open()
        publisher = await client.publisher()
        publisher.send(["pubws-a", "pubws-b"], "both", event_id="e1")
        publisher.send_many([{"id": "pubws-a", "text": ""}, {"id": "pubws-b", "text": "ok"}])
        items = [await next_item(sub) for _ in range(3)]
        assert [(m.channel, m.text) for m in items] == [
            ("pubws-a", "both"), ("pubws-b", "both"), ("pubws-b", "ok")]
        assert items[0].event_id == "e1"
        err = await asyncio.wait_for(publisher.errors.get(), T)
        assert err == {"error": "text must be a non-empty string", "index": 0}
        await publisher.close()


def test_retry_delay_is_full_jitter():
    for n in range(6):
        window = min(30.0, 1.0 * 2 ** n)
        delays = [retry_delay(n, 1.0, 30.0) for _ in range(10000)]
        assert all(0 <= d <= window for d in delays)
        assert max(delays) > 0.9 * window and min(delays) < 0.1 * window
        # spread, not bunched: no tenth of the window holds more than 15% of the tries
        buckets = [0] * 10
        for d in delays:
            buckets[min(9, int(d / window * 10))] += 1
        assert max(buckets) < 1500


async def test_channel_refusal_is_a_1008_with_gogins_reason(demo):
    """A valid handshake refused by gogin's channel checks: upgraded, then closed 1008 with
    {"http_status": 403, "explain": ...}; the client reads it as a refusal."""
    async with Client(demo.base, min_delay=0.1) as client:
        sub = client.subscribe(["ALL"])
        with pytest.raises(Refused) as exc:
            await next_item(sub)
        assert exc.value.status == 403
        assert exc.value.explain == "Channel id not authorized for this method."


@pytest.mark.parametrize("transport", ["websocket", "eventsource"])
async def test_resume_across_a_gogin_restart(transport):
    """gogin restarts (its history is gone) while the client is cut off: what is published
    after the restart, before the client is back, arrives once, in order."""
    d = DemoProcess()
    proxy = await CuttingProxy(d.port).start()
    try:
        async with Client(proxy.base, min_delay=0.2, max_delay=1.0) as client:
            sub = client.subscribe(["r1", "r2"], transport=transport)
            await sub.wait_open()
            async with Client(d.base) as pub:
                await pub.publish("r1", "before")
            assert (await next_item(sub)).text == "before"
            proxy.cut()
            started = time.time()
            d = await asyncio.to_thread(d.restart)
            # positions are per second: not in the second of "before" (docs/clients.md, Limits)
            await asyncio.sleep(max(0.0, int(started) + 1.05 - time.time()))
            sent = [f"x{i:02d}" for i in range(20)]
            async with Client(d.base) as pub:
                for text in sent:
                    await pub.publish("r1", text)
            assert sub.state != "open"
            proxy.restore()
            got = [await next_item(sub) for _ in range(20)]
            assert [m.text for m in got] == sent
            assert [m.id for m in got] == list(range(1, 21))    # a new gogin: ids from 1
    finally:
        await proxy.close()
        d.stop()
