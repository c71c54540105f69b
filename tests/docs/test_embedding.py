"""Runs the example of docs/embedding.md (the first ```python block after the
'<!-- embedding-example -->' marker) with real websockets clients."""

import asyncio
import json
import os
import re

import pytest
import websockets

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "embedding.md")
T = 5.0


def example_code() -> str:
    with open(DOC, encoding="utf-8") as fh:
        doc = fh.read()
    after = doc.split("<!-- embedding-example -->", 1)[1]
    m = re.search(r"```python\n(.*?)```", after, re.S)
    assert m, "no ```python block after the marker"
    return m.group(1)


@pytest.fixture
def example():
    ns = {"__name__": "gogin_docs_embedding_example"}   # not __main__: main() does not run
    exec(compile(example_code(), DOC, "exec"), ns)
    return ns


async def recv_json(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), T))


async def test_embedding_example(example):
    server = await example["start"]("127.0.0.1:0")
    try:
        host, port = server.addresses[0]
        base = f"ws://{host}:{port}/subscribe/"

        # denied by the hook: the hook's status and body
        with pytest.raises(websockets.InvalidStatus) as exc:
            await asyncio.wait_for(websockets.connect(base + "?token=mallory"), T)
        assert exc.value.response.status_code == 401
        assert bytes(exc.value.response.body) == b"login required"

        alice = await asyncio.wait_for(websockets.connect(base + "?token=alice"), T)
        bob = await asyncio.wait_for(websockets.connect(base + "?token=bob"), T)

        # in-process publish, to one user's channel
        assert server.publish("user.alice", "for alice only") == 1
        msg = await recv_json(alice)
        assert msg["channel"] == "user.alice" and msg["text"] == "for alice only"

        # in-process publish to a shared channel reaches both
        assert server.publish("news", "to everyone") == 2
        for ws in (alice, bob):
            msg = await recv_json(ws)
            assert msg["channel"] == "news" and msg["text"] == "to everyone"

        # a client message: the publish hook drops blanks, rejects long ones, rewrites the rest
        await alice.send("   ")
        await alice.send("x" * 600)
        assert await recv_json(alice) == {"error": "publish rejected", "status": 413}
        await alice.send("hello")
        for ws in (alice, bob):
            msg = await recv_json(ws)
            assert msg["channel"] == "news"
            assert json.loads(msg["text"]) == {"from": "Alice", "text": "hello"}
        # the blank message was dropped: nothing else arrived
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(bob.recv(), 0.3)
    finally:
        await server.stop()
    # graceful stop: WebSocket clients got close 1001
    with pytest.raises(websockets.ConnectionClosed) as exc:
        await asyncio.wait_for(alice.recv(), T)
    assert exc.value.rcvd is not None and exc.value.rcvd.code == 1001
