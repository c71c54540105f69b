"""Publishers of gogin-bench (asyncio): HTTP keep-alive POST, or one WebSocket connection.

Rate control is a token schedule: message k is due at start + k / rate.  Each HTTP worker
connection takes the next due message, sleeps until it is due and sends it; when the server is
slower than the rate, due messages go out back to back (one in flight per connection), so the
achieved rate is reported, never assumed.  The WebSocket publisher writes every due message of
a loop turn in one write (batching).

Every payload carries the send stamp (``_loadclient.make_payload``: '@gb:' + 16 hex digits of
CLOCK_MONOTONIC ns); channels are used round-robin (message k goes to channels[k % len]).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from gogin._core.frames import encode_frame
from gogin.bench._loadclient import make_payload

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="   # RFC 6455 §1.3's sample key: any valid key will do
CONNECT_TIMEOUT = 10.0                # seconds
ANSWER_TIMEOUT = 30.0                 # seconds for one publish answer


@dataclass
class PubResult:
    sent: int = 0                     # requests / frames written
    acked: int = 0                    # 2xx answers (HTTP) or frames written (WebSocket)
    errors: int = 0                   # non-2xx answers, broken connections
    per_channel: list = field(default_factory=list)   # acked publishes per channel index
    seconds: float = 0.0              # from the first due time to the last answer
    last_error: str = ""


class _Schedule:
    """Message k is due at t0 + k / rate; nothing is due at or after t0 + duration."""

    def __init__(self, rate: float, duration: float, count: int | None = None) -> None:
        self.rate = rate
        self.t0 = time.monotonic()
        self.end = self.t0 + duration
        self.k = 0
        self.count = count            # exact number of messages (overrides duration)

    def take(self) -> tuple[int, float] | None:
        k = self.k
        if self.count is not None:
            if k >= self.count:
                return None
            due = self.t0 + k / self.rate
        else:
            due = self.t0 + k / self.rate
            if due >= self.end:
                return None
        self.k = k + 1
        return k, due


def _split(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path


class HttpPublisher:
    """`connections` keep-alive HTTP/1.1 connections POSTing to the channels' publish URLs."""

    def __init__(self, urls: list[str], connections: int = 4, content_type: str = "text/plain"):
        self.urls = urls                         # publish URL per channel index
        self.connections = max(1, connections)
        self.content_type = content_type
        self.host, self.port, _ = _split(urls[0])
        self._heads = []
        for url in urls:
            host, port, path = _split(url)
            if (host, port) != (self.host, self.port):
                raise ValueError("all publish URLs must share one host:port")
            self._heads.append(
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: ".encode())
        self._conns: list = []

    async def open(self) -> None:
        for _ in range(self.connections):
            self._conns.append(await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), CONNECT_TIMEOUT))

    async def close(self) -> None:
        for _, w in self._conns:
            w.close()
        self._conns = []

    async def _worker(self, conn, sched: _Schedule, size: int, res: PubResult) -> None:
        reader, writer = conn
        heads, nch = self._heads, len(self._heads)
        while True:
            item = sched.take()
            if item is None:
                return
            k, due = item
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ch = k % nch
            body = make_payload(size)
            writer.write(heads[ch] + b"%d\r\n\r\n" % len(body) + body)
            res.sent += 1
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError) as e:
                res.errors += 1
                res.last_error = f"publish connection: {e!r}"
                return
            status = int(head[9:12])
            length = 0
            low = head.lower()
            i = low.find(b"content-length:")
            if i >= 0:
                length = int(low[i + 15:low.index(b"\r\n", i)])
            elif b"transfer-encoding: chunked" in low:
                res.errors += 1
                res.last_error = "chunked publish answers are not supported"
                return
            if length:
                await reader.readexactly(length)
            if 200 <= status < 300:
                res.acked += 1
                res.per_channel[ch] += 1
            else:
                res.errors += 1
                res.last_error = f"publish answered {status}"

    async def run(self, rate: float, duration: float, size: int,
                  count: int | None = None) -> PubResult:
        res = PubResult(per_channel=[0] * len(self.urls))
        sched = _Schedule(rate, duration, count)
        await asyncio.gather(*(self._worker(c, sched, size, res) for c in self._conns))
        res.seconds = time.monotonic() - sched.t0
        return res


class WsPublisher:
    """One WebSocket connection per channel URL; masked text frames (RFC 6455 §5.3).
    Whatever the server sends back on these connections is read and discarded."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self._conns: list = []
        self._drains: list = []

    async def open(self) -> None:
        for url in self.urls:
            host, port, path = _split(url)
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
                f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CONNECT_TIMEOUT)
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"WebSocket publisher {url}: {head[:60]!r}")
            self._conns.append((reader, writer))
            self._drains.append(asyncio.ensure_future(self._drain(reader)))

    @staticmethod
    async def _drain(reader) -> None:
        try:
            while await reader.read(1 << 16):
                pass
        except (OSError, asyncio.CancelledError):
            pass

    async def close(self) -> None:
        for d in self._drains:
            d.cancel()
        for _, w in self._conns:
            w.close()
        self._conns, self._drains = [], []

    async def run(self, rate: float, duration: float, size: int,
                  count: int | None = None) -> PubResult:
        res = PubResult(per_channel=[0] * len(self.urls))
        sched = _Schedule(rate, duration, count)
        nch = len(self._conns)
        pending = [bytearray() for _ in range(nch)]
        while True:
            now = time.monotonic()
            done = False
            # every message due by now goes into this turn's writes
            while True:
                k = sched.k
                if sched.count is not None and k >= sched.count:
                    done = True
                    break
                due = sched.t0 + k / rate
                if sched.count is None and due >= sched.end:
                    done = True
                    break
                if due > now:
                    break
                sched.k += 1
                ch = k % nch
                pending[ch] += encode_frame(1, make_payload(size), mask=os.urandom(4))
                res.sent += 1
                res.acked += 1
                res.per_channel[ch] += 1
            for ch in range(nch):
                if pending[ch]:
                    self._conns[ch][1].write(bytes(pending[ch]))
                    pending[ch].clear()
            await asyncio.gather(*(w.drain() for _, w in self._conns))
            if done:
                break
            wait = sched.t0 + sched.k / rate - time.monotonic()
            await asyncio.sleep(max(wait, 0))
        res.seconds = time.monotonic() - sched.t0
        return res


def make_publisher(kind: str, urls: list[str], connections: int = 4):
    if kind == "http":
        return HttpPublisher(urls, connections)
    if kind == "ws":
        return WsPublisher(urls)
    raise ValueError(f"unknown publisher kind {kind!r}")
