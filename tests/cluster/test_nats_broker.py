"""Several gogin nodes on one real nats-server (broker.type = "nats", core NATS subjects):
a publish on either node reaches the WebSocket and EventSource subscribers of both, exactly
once, in order; a resume on the other node gets the gap signal (history is per node); NATS
going away gives 503s and degraded health while subscribers stay connected, and delivery
comes back after; --workers 2 works with it."""

from __future__ import annotations

import asyncio
import email.utils
import json
from urllib.parse import quote

import aiohttp
import pytest
import websockets

from cluster_clients import EventSourceSubscriber, WsSubscriber, wait_count
from nats_process import NATS_SERVER, NatsProcess

pytestmark = pytest.mark.skipif(NATS_SERVER is None, reason="nats-server is not installed")

GAP = "Messages were lost."          # the gap signal's text (id -4), docs/protocol.md


@pytest.fixture
def nats_server(tmp_path):
    made = []

    def start():
        n = NatsProcess(tmp_path / f"nats{len(made)}").start()
        made.append(n)
        return n
    try:
        yield start
    finally:
        for n in made:
            n.stop()


def nats_nodes(nodes, server, n=2, **config):
    return nodes(n, url=server.url, prefix="g", broker={"type": "nats", **config})


def key(m: dict) -> tuple:
    """A message's position as a client orders it: (time as an HTTP date, tag)."""
    return (email.utils.parsedate_to_datetime(m["time"]).timestamp(), int(m["tag"]))


async def ws_recv(ws, timeout=5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


@pytest.mark.asyncio
async def test_publish_on_either_node_reaches_both_once_in_order(nodes, nats_server):
    a, b = nats_nodes(nodes, nats_server())
    async with aiohttp.ClientSession() as http:
        subs = []
        for n in (a, b):
            subs.append(await WsSubscriber(f"{n.ws}/ws/room").start())
            subs.append(await EventSourceSubscriber(http, f"{n.base}/ev/room").start())
        for i in range(60):
            r = await http.post(f"{(a, b)[i % 2].base}/pub?id=room", data=f"m{i}",
                                headers={"Event-Id": f"e{i}"})
            assert r.status == 200, await r.text()
        assert await wait_count(subs, 60), [len(s.got) for s in subs]
        await asyncio.sleep(0.3)                    # nothing more arrives: exactly once
        for s in subs:
            assert [m["text"] for m in s.got] == [f"m{i}" for i in range(60)], type(s)
            assert [m["eventid"] for m in s.got] == [f"e{i}" for i in range(60)]
            assert [m["id"] for m in s.got] == list(range(1, 61))   # each node's numbering
        # a channel with a dot, a ">" and a space in its id has a subject of its own
        odd = quote("a.b> c", safe="")
        sub = await WsSubscriber(f"{b.ws}/ws/{odd}").start()
        other = await WsSubscriber(f"{b.ws}/ws/a").start()
        r = await http.post(f"{a.base}/pub?id={odd}", data="odd")
        assert r.status == 200
        assert await wait_count([sub], 1)
        await asyncio.sleep(0.2)
        assert [m["text"] for m in sub.got] == ["odd"] and other.got == []
        for s in subs + [sub, other]:
            await s.close()
        r = await http.get(f"{b.base}/channels-stats?id=room",
                           headers={"Accept": "application/json"})
        doc = json.loads(await r.text())                     # this node's counts
        assert r.status == 200 and doc["published_messages"] == 60, doc
        health = await http.get(f"{a.base}/healthz")
        assert health.status == 200
        metrics = await (await http.get(f"{b.base}/metrics")).text()
        assert "gogin_broker_up 1.0" in metrics
        assert "gogin_broker_delivered_total 61.0" in metrics, metrics


@pytest.mark.asyncio
async def test_resume_on_the_other_node_gets_the_gap_signal(nodes, nats_server):
    a, b = nats_nodes(nodes, nats_server())
    async with aiohttp.ClientSession() as http:
        keep_b = await WsSubscriber(f"{b.ws}/ws/res").start()      # node B holds the channel
        async with websockets.connect(f"{a.ws}/ws/res") as ws:
            r = await http.post(f"{b.base}/pub?id=res", data="first")
            assert r.status == 200
            last = await ws_recv(ws)
            assert last["text"] == "first"
        for i in range(5):
            r = await http.post(f"{(a, b)[i % 2].base}/pub?id=res", data=f"gap{i}")
            assert r.status == 200
        assert await wait_count([keep_b], 6)
        pos = f"time={quote(last['time'])}&tag={last['tag']}"
        # the same node: its own history, exactly what was missed
        async with websockets.connect(f"{a.ws}/ws/res?{pos}") as ws:
            got = [(await ws_recv(ws))["text"] for _ in range(5)]
            assert got == [f"gap{i}" for i in range(5)]
            with pytest.raises(asyncio.TimeoutError):
                await ws_recv(ws, timeout=0.3)
        # the other node: the gap signal, nothing of its history, then live messages
        async with websockets.connect(f"{b.ws}/ws/res?{pos}") as ws:
            gap = await ws_recv(ws)
            assert gap["id"] == -4 and gap["text"] == GAP, gap
            with pytest.raises(asyncio.TimeoutError):
                await ws_recv(ws, timeout=0.3)
            r = await http.post(f"{a.base}/pub?id=res", data="after")
            assert r.status == 200
            nxt = await ws_recv(ws)
            assert nxt["text"] == "after"
            # positions keep their order for the client: what follows the gap is after it
            assert key(nxt) > key(gap) > key(last)
        # EventSource with Last-Event-ID of a message node B never numbered: the gap too
        async with http.get(f"{b.base}/ev/res", headers={"Last-Event-ID": "nope"},
                            timeout=aiohttp.ClientTimeout(total=5)) as r:
            line = b""
            while not line.startswith(b"data: "):
                line = await r.content.readline()
            assert json.loads(line[6:])["id"] == -4
        await keep_b.close()


@pytest.mark.asyncio
async def test_nats_restart_503_meanwhile_delivery_after(nodes, nats_server):
    ns = nats_server()
    a, b = nats_nodes(nodes, ns)
    async with aiohttp.ClientSession() as http:
        subs = [await WsSubscriber(f"{a.ws}/ws/live").start(),
                await WsSubscriber(f"{b.ws}/ws/live").start(),
                await EventSourceSubscriber(http, f"{b.base}/ev/live").start()]
        r = await http.post(f"{a.base}/pub?id=live", data="before")
        assert r.status == 200
        assert await wait_count(subs, 1)
        ns.stop()
        statuses = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while loop.time() < deadline:
            r = await http.post(f"{a.base}/pub?id=live", data="lost?")
            statuses.append(r.status)
            if r.status == 503:
                assert r.headers.get("X-Gogin-Explain") == "Broker unavailable.", r.headers
                break
            await asyncio.sleep(0.05)
        assert statuses[-1] == 503, statuses
        assert 200 not in statuses[1:], statuses
        for n in (a, b):
            h = await http.get(f"{n.base}/healthz")
            assert h.status == 503 and "degraded" in await h.text()
        r = await http.post(f"{b.base}/pub?id=live", data="x")
        assert r.status == 503
        ns.start()                                    # the same port
        deadline = loop.time() + 15
        while loop.time() < deadline:
            codes = [(await http.get(f"{n.base}/healthz")).status for n in (a, b)]
            if codes == [200, 200]:
                break
            await asyncio.sleep(0.1)
        assert codes == [200, 200]
        for s in subs:
            assert s.task is not None and not s.task.done()    # still connected
        r = await http.post(f"{b.base}/pub?id=live", data="after")
        assert r.status == 200, await r.text()
        assert await wait_count(subs, 3)
        await asyncio.sleep(0.2)
        for s in subs:
            texts = [m["text"] for m in s.got]
            # what went meanwhile is not known here: the gap signal, then delivery again
            assert texts == ["before", GAP, "after"], texts
            assert s.got[1]["id"] == -4
        metrics = await (await http.get(f"{a.base}/metrics")).text()
        assert "gogin_broker_publish_errors_total" in metrics
        for s in subs:
            await s.close()


@pytest.mark.asyncio
async def test_two_workers_share_channels_over_nats(nodes, nats_server):
    ns = nats_server()
    (w,) = nodes(1, url=ns.url, prefix="g", broker={"type": "nats"}, server={"workers": 2})
    # a new connection per request: the kernel spreads connections over the workers
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        seen = set()
        for _ in range(200):                    # the port accepts once the first one listens
            r = await http.get(f"{w.base}/healthz")
            assert r.status == 200
            seen.add(r.headers.get("X-Gogin-Worker"))
            if len(seen) == 2:
                break
            await asyncio.sleep(0.05)
        assert seen == {"1", "2"}, seen
        subs = [await WsSubscriber(f"{w.ws}/ws/wk").start() for _ in range(16)]
        await asyncio.sleep(0.2)
        for i in range(5):
            r = await http.post(f"{w.base}/pub?id=wk", data=f"w{i}")
            assert r.status == 200, await r.text()
        assert await wait_count(subs, 5), [len(s.got) for s in subs]
        await asyncio.sleep(0.2)
        for s in subs:
            assert [m["text"] for m in s.got] == [f"w{i}" for i in range(5)]
            await s.close()


@pytest.mark.asyncio
async def test_concurrent_first_subscribers_subscribe_once(nodes, nats_server):
    """30 subscribers of a channel new on node B arrive at once: one subscription, each gets
    every message once."""
    a, b = nats_nodes(nodes, nats_server())
    subs = await asyncio.gather(*[WsSubscriber(f"{b.ws}/ws/burst").start() for _ in range(30)])
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            r = await http.post(f"{a.base}/pub?id=burst", data=f"b{i}")
            assert r.status == 200
        assert await wait_count(subs, 3)
        await asyncio.sleep(0.3)
        for s in subs:
            assert [m["text"] for m in s.got] == ["b0", "b1", "b2"]
        metrics = await (await http.get(f"{b.base}/metrics")).text()
        assert "gogin_broker_received_total 3.0" in metrics, metrics
    for s in subs:
        await s.close()


def test_broker_url_for_nats_is_checked():
    from gogin.brokers.nats import subject_token
    from gogin.config import ConfigError, load

    ok = load(env={}, overrides={"broker.type": "nats",
                                 "broker.url": "nats://u:p@10.0.0.1:4222,tls://10.0.0.2:4222"})
    assert ok.broker.type == "nats"
    assert load(env={}, overrides={"broker.type": "nats"}).broker.type == "nats"  # default URL
    with pytest.raises(ConfigError, match=r"broker.url: must be nats:// or tls://"):
        load(env={}, overrides={"broker.type": "nats", "broker.url": "redis://10.0.0.1:6379/0"})
    with pytest.raises(ConfigError, match=r"broker.url: must be a redis://"):
        load(env={}, overrides={"broker.type": "redis", "broker.url": "nats://10.0.0.1:4222"})
    assert subject_token("room-1_a") == "room-1_a"
    assert subject_token("a.b> c%") == "a%2Eb%3E%20c%25"
    assert subject_token("é") == "%C3%A9"


@pytest.mark.asyncio
async def test_unreachable_nats_at_start_is_a_clear_error(tmp_path):
    from gogin_e2e import Gogin, free_port

    url = f"nats://127.0.0.1:{free_port()}"
    g = Gogin(tmp_path, {"broker": {"type": "nats", "url": url, "connect_timeout": 1.0}})
    with pytest.raises(RuntimeError, match=r"exited with 1"):
        g.start()
    assert f"cannot connect to NATS at {url}" in g.log(), g.log()
