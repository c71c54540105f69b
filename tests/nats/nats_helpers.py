"""Helpers of the NATS ingest tests: gogin configs, the main server's NATS publisher, clients
that keep the bytes they received (WebSocket: websockets; EventSource: aiohttp, read raw so
that binary bytes are compared as they are).  Every wait is bounded."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Optional

import aiohttp
import nats
import websockets

from gogin_e2e import default_locations_plus, metric_values

# what a test subscriber sees of a message: enough to compare bytes exactly
TEMPLATE = "~id~|~event-id~|~channel~|~text~"
TEST_LOCATIONS = [
    {"path": "/tws/", "role": "subscriber", "mode": "websocket", "template": TEMPLATE},
    {"path": "/tev/", "role": "subscriber", "mode": "eventsource", "template": TEMPLATE},
]


def gogin_config(nats_url: str, *, limits: Optional[dict] = None, **nats_keys) -> dict:
    return {"server": {"log_level": "info"},
            "limits": dict(limits or {}),
            "nats": {"url": nats_url, **nats_keys},
            "locations": default_locations_plus(*TEST_LOCATIONS)}


async def add_stream(nc, name: str, subjects: list[str]):
    js = nc.jetstream()
    try:
        await js.delete_stream(name)
    except Exception:
        pass
    await js.add_stream(name=name, subjects=subjects)
    return js


def envelope(channel, payload: bytes, binary: bool, event_id=None, key="channel") -> bytes:
    doc = {key: channel}
    if binary:
        doc["data"] = base64.b64encode(payload).decode()
    else:
        doc["text"] = payload.decode("utf-8")
    if event_id is not None:
        doc["event_id"] = event_id
    return json.dumps(doc).encode()


def text_payload(i: int) -> bytes:
    return f"n{i} é✓ \"q\" \\ {'x' * (i % 17)}".encode()


def binary_payload(i: int) -> bytes:
    # not UTF-8 (0xff), no CR/LF (an EventSource data line splits at them)
    return b"\xff" + bytes((i * 7 + k) % 256 for k in range(i % 40 + 1)).replace(
        b"\r", b"\x01").replace(b"\n", b"\x02")


async def http_get(url: str, timeout: float = 5.0):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
        async with s.get(url) as r:
            return r.status, await r.text()


async def metrics(base: str) -> dict:
    """/metrics as {name: value}, labelled samples as 'name{k="v"}' too."""
    from prometheus_client.parser import text_string_to_metric_families
    status, text = await http_get(base + "/metrics")
    assert status == 200
    values = metric_values(text)
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.labels:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                values[f"{s.name}{{{labels}}}"] = s.value
    return values


async def wait_healthy(base: str, timeout: float = 15.0, state: str = "nats: ok") -> str:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            status, text = await http_get(base + "/healthz", 2.0)
            last = (status, text)
            if status == 200 and state in text:
                return text
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            last = e
        await asyncio.sleep(0.1)
    raise AssertionError(f"/healthz never said {state!r}: {last!r}")


class WsCollector:
    """A websockets client that keeps every frame (bytes for binary, str for text)."""

    def __init__(self, url: str, **kw):
        self.url = url
        self.kw = kw
        self.frames: list = []
        self.ws = None
        self.task = None

    async def start(self):
        self.ws = await websockets.connect(self.url, max_size=None, **self.kw)
        self.task = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        try:
            async for frame in self.ws:
                self.frames.append(frame)
        except websockets.ConnectionClosed:
            pass

    async def wait_count(self, n: int, timeout: float):
        deadline = time.monotonic() + timeout
        while len(self.frames) < n:
            if time.monotonic() > deadline or (self.task.done() and len(self.frames) < n):
                raise AssertionError(f"{self.url}: {len(self.frames)} of {n} frames")
            await asyncio.sleep(0.02)

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self.task is not None:
            await asyncio.wait_for(self.task, 5)


class SseCollector:
    """An EventSource client on aiohttp: the raw bytes of each event (id/data lines)."""

    def __init__(self, url: str):
        self.url = url
        self.events: list[bytes] = []
        self.task = None
        self.session = None

    async def start(self):
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        self.resp = await self.session.get(self.url, headers={"Accept": "text/event-stream"})
        assert self.resp.status == 200, self.resp.status
        self.task = asyncio.ensure_future(self._read())
        return self

    async def _read(self):
        buf = b""
        try:
            async for chunk in self.resp.content.iter_any():
                buf += chunk
                *done, buf = buf.split(b"\n\n")
                for ev in done:
                    if not ev.startswith(b":"):          # the opening comment and pings
                        self.events.append(ev)
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass

    async def wait_count(self, n: int, timeout: float):
        deadline = time.monotonic() + timeout
        while len(self.events) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.url}: {len(self.events)} of {n} events")
            await asyncio.sleep(0.02)

    async def close(self):
        self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            pass
        self.resp.close()
        await self.session.close()


async def nats_connect(url: str):
    return await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0,
                              allow_reconnect=False)
