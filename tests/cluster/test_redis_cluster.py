"""Several gogin nodes on one Redis (broker.type = "redis"): a publish on any node reaches the
subscribers of every node exactly once, in order; a client resumes on another node; a
deletion reaches every node."""

from __future__ import annotations

import asyncio
import json
from urllib.parse import quote

import aiohttp
import websockets
import pytest

from cluster_clients import (EventSourceSubscriber, LongPollSubscriber, WsSubscriber,
                             wait_count)
from gogin_e2e import picows_connect


@pytest.mark.asyncio
async def test_publish_on_any_node_reaches_every_node_once_in_order(nodes, prefix):
    a, b, c = nodes(3, prefix=prefix)
    async with aiohttp.ClientSession() as http:
        subs = []
        for n in (a, b, c):
            subs.append(await WsSubscriber(f"{n.ws}/ws/room").start())
            subs.append(await EventSourceSubscriber(http, f"{n.base}/ev/room").start())
            subs.append(await LongPollSubscriber(http, f"{n.base}/lp/room").start())
        for i in range(60):
            node = (a, b, c)[i % 3]
            r = await http.post(f"{node.base}/pub?id=room", data=f"m{i}")
            assert r.status == 200, await r.text()
        assert await wait_count(subs, 60), [len(s.got) for s in subs]
        await asyncio.sleep(0.3)            # nothing more arrives: exactly once
        for s in subs:
            assert [m["text"] for m in s.got] == [f"m{i}" for i in range(60)], type(s)
            assert [m["id"] for m in s.got] == list(range(1, 61))
        # every node agrees on the id, time and tag of each message
        ref = [(m["id"], m["time"], m["tag"]) for m in subs[0].got]
        for s in subs[1:]:
            assert [(m["id"], m["time"], m["tag"]) for m in s.got] == ref
        for s in subs:
            await s.close()


@pytest.mark.asyncio
async def test_publisher_answer_counts_come_from_redis(nodes, prefix):
    a, b = nodes(2, prefix=prefix)
    async with aiohttp.ClientSession() as http:
        for i in range(3):
            r = await http.post(f"{(a, b)[i % 2].base}/pub?id=cnt", data=b"x",
                                headers={"Accept": "application/json"})
            doc = json.loads(await r.text())
        assert doc["published_messages"] == 3 and doc["stored_messages"] == 3


@pytest.mark.asyncio
async def test_thousand_clients_resume_on_another_node(nodes, prefix):
    """1,000 clients leave node A while 50 messages are published, and come back on node B
    from their last message's time and tag: each gets exactly the 50, in order."""
    a, b = nodes(2, prefix=prefix)
    n_clients = 1000
    async with aiohttp.ClientSession() as http:
        r = await http.post(f"{a.base}/pub?id=resume", data="before")
        assert r.status == 200
        clients = []
        for i in range(0, n_clients, 100):
            clients += await asyncio.gather(*[picows_connect(f"{a.ws}/ws/resume.b1")
                                              for _ in range(100)])
        last = []
        for cl in clients:
            _, payload = await cl.recv()
            last.append(json.loads(payload))
        assert all(m["text"] == "before" for m in last)
        for cl in clients:
            cl.transport.disconnect()
        for i in range(50):
            r = await http.post(f"{(a, b)[i % 2].base}/pub?id=resume", data=f"gap{i}")
            assert r.status == 200
        back = []
        for i in range(0, n_clients, 100):
            back += await asyncio.gather(*[
                picows_connect(f"{b.ws}/ws/resume?time={quote(m['time'])}&tag={m['tag']}")
                for m in last[i:i + 100]])
        for cl in back:
            got = [json.loads((await cl.recv())[1])["text"] for _ in range(50)]
            assert got == [f"gap{i}" for i in range(50)]
            with pytest.raises(asyncio.TimeoutError):
                await cl.recv(timeout=0.001)
        for cl in back:
            cl.transport.disconnect()


@pytest.mark.asyncio
async def test_delete_reaches_every_node(nodes, prefix):
    a, b = nodes(2, prefix=prefix)
    async with aiohttp.ClientSession() as http:
        sub_b = await WsSubscriber(f"{b.ws}/ws/gone").start()
        r = await http.post(f"{a.base}/pub?id=gone", data="hello")
        assert r.status == 200
        assert await wait_count([sub_b], 1)
        r = await http.delete(f"{a.base}/pub?id=gone")
        assert r.status == 200, await r.text()
        await asyncio.wait_for(sub_b.task, 5)       # closed: its only channel is gone
        assert [m["id"] for m in sub_b.got] == [1, -2]
        assert sub_b.ws.close_code == 1000
        # the numbering starts again (a new epoch)
        r = await http.post(f"{a.base}/pub?id=gone", data="again",
                            headers={"Accept": "application/json"})
        assert json.loads(await r.text())["published_messages"] == 1


@pytest.mark.asyncio
async def test_channel_statistics_count_every_live_node(nodes, prefix):
    a, b = nodes(2, prefix=prefix, broker={"node_ttl": 1.5})
    async with aiohttp.ClientSession() as http:
        subs = [await WsSubscriber(f"{a.ws}/ws/st").start() for _ in range(3)]
        subs += [await WsSubscriber(f"{b.ws}/ws/st").start() for _ in range(2)]
        r = await http.post(f"{a.base}/pub?id=st", data="x")
        assert r.status == 200
        await asyncio.sleep(1.2)                  # a heartbeat of each node
        for node in (a, b):
            doc = json.loads(await (await http.get(f"{node.base}/channels-stats?id=st")).text())
            assert (doc["subscribers"], doc["published_messages"]) == (5, 1), doc
            summary = json.loads(await (await http.get(f"{node.base}/channels-stats")).text())
            assert sorted(int(w["pid"]) for w in summary["by_worker"]) == \
                sorted([a.proc.pid, b.proc.pid])
            assert summary["subscribers"] == 5
        r = await http.get(f"{a.base}/channels-stats?id=nothere")
        assert r.status == 404
        b.kill()                                  # its counts go with its heartbeat
        b.returncode = b.proc.returncode          # (killed on purpose: not a failed stop)
        await asyncio.sleep(2.0)
        doc = json.loads(await (await http.get(f"{a.base}/channels-stats?id=st")).text())
        assert doc["subscribers"] == 3
        summary = json.loads(await (await http.get(f"{a.base}/channels-stats")).text())
        assert [int(w["pid"]) for w in summary["by_worker"]] == [a.proc.pid]
        for s in subs[:3]:
            await s.close()


@pytest.mark.asyncio
async def test_burst_on_a_new_channel_reaches_a_fresh_subscriber(nodes, prefix):
    """A subscriber of a channel Redis has never seen, then a burst larger than the stored
    history from another node: every message arrives (the held live ones fill what the
    trimmed history lost), once, in order."""
    a, b = nodes(2, prefix=prefix, limits={"max_messages_stored_per_channel": 20})
    sub = await WsSubscriber(f"{b.ws}/ws/burst").start()
    ws = await websockets.connect(f"{a.ws}/pub")
    await ws.send("[" + ",".join(json.dumps({"id": "burst", "text": f"b{i}"})
                                 for i in range(300)) + "]")
    assert await wait_count([sub], 300), str([m["id"] for m in sub.got])
    await asyncio.sleep(0.3)
    assert [m["text"] for m in sub.got] == [f"b{i}" for i in range(300)]
    await ws.close()
    await sub.close()


@pytest.mark.asyncio
async def test_client_messages_cross_nodes(nodes, prefix):
    """A WebSocket client's own message (client_publish = "open") goes through Redis like a
    POST: a subscriber on the other node gets it."""
    from gogin_e2e import default_locations_plus
    locs = default_locations_plus({"path": "/chat/", "role": "subscriber", "mode": "websocket",
                                   "client_publish": "open"})
    a, b = nodes(2, prefix=prefix, locations=locs)
    listener = await WsSubscriber(f"{b.ws}/chat/room").start()
    talker = await websockets.connect(f"{a.ws}/chat/room")
    await talker.send("hi from a")
    assert await wait_count([listener], 1)
    assert listener.got[0]["text"] == "hi from a"
    assert json.loads(await asyncio.wait_for(talker.recv(), 5))["text"] == "hi from a"
    await talker.close()
    await listener.close()
