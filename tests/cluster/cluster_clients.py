"""Subscribers of the cluster tests, each recording the messages it received (the default
template's JSON: id, channel, text, tag, time, eventid), in the three transports."""

from __future__ import annotations

import asyncio
import email.utils
import json

import aiohttp
import websockets

DECODER = json.JSONDecoder()


def split_json(body: str) -> list:
    """Concatenated JSON documents (a long-poll answer of several messages) -> list."""
    out, i = [], 0
    body = body.strip()
    while i < len(body):
        doc, j = DECODER.raw_decode(body, i)
        out.append(doc)
        i = j
        while i < len(body) and body[i] in " \r\n\t":
            i += 1
    return out


class WsSubscriber:
    def __init__(self, url: str):
        self.url = url
        self.got: list = []
        self.ws = None
        self.task = None

    async def start(self):
        self.ws = await websockets.connect(self.url, open_timeout=10, max_queue=None)
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self):
        try:
            async for m in self.ws:
                self.got.append(json.loads(m))
        except websockets.ConnectionClosed:
            pass

    async def close(self):
        await self.ws.close()
        await asyncio.wait_for(self.task, 5)


class EventSourceSubscriber:
    def __init__(self, http: aiohttp.ClientSession, url: str):
        self.http, self.url = http, url
        self.got: list = []
        self.task = None
        self.opened = asyncio.Event()

    async def start(self):
        self.task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self.opened.wait(), 10)
        return self

    async def _run(self):
        async with self.http.get(self.url, timeout=aiohttp.ClientTimeout(total=None)) as r:
            assert r.status == 200, r.status
            self.opened.set()
            async for line in r.content:
                line = line.decode().rstrip("\r\n")
                if line.startswith("data: "):
                    self.got.append(json.loads(line[6:]))

    async def close(self):
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, aiohttp.ClientError):
            pass


class LongPollSubscriber:
    """Polls again right after each answer, from the answer's position (Last-Modified, Etag),
    so no message is missed between requests."""

    def __init__(self, http: aiohttp.ClientSession, url: str):
        self.http, self.url = http, url
        self.got: list = []
        self.task = None
        self.since = ("Thu, 01 Jan 1970 00:00:00 GMT", "0")
        self.stopping = False

    async def start(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self):
        while not self.stopping:
            hdrs = {"If-Modified-Since": self.since[0], "If-None-Match": self.since[1]}
            async with self.http.get(self.url, headers=hdrs,
                                     timeout=aiohttp.ClientTimeout(total=40)) as r:
                body = await r.text()
                if r.status == 200:
                    self.got.extend(split_json(body))
                    self.since = (r.headers["Last-Modified"], r.headers["Etag"])
                elif r.status != 304:
                    raise AssertionError(f"long-poll answered {r.status}: {body}")

    async def close(self):
        self.stopping = True
        self.task.cancel()
        try:
            await self.task
        except (asyncio.CancelledError, aiohttp.ClientError):
            pass


def http_date(t: int) -> str:
    return email.utils.formatdate(t, usegmt=True)


async def wait_count(subs, n: int, timeout: float = 10.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(len(s.got) >= n for s in subs):
            return True
        await asyncio.sleep(0.05)
    return False
