"""Connections of gogin-bench: the handshake requests of its subscribers, and the publisher
connections, opened here (blocking, once), then handed to the C
publisher inside the load client's loop (``LoadClient.pub_attach``, ``_publisher.pxi``), which
owns the schedule, the framing and the acknowledgements.

Kinds:

* ``ws``: one WebSocket per channel (``target.pub(channel)`` is a WebSocket URL); every message
  is one masked Text frame.
* ``ws-json``: one WebSocket to a multi-channel publisher (``target.pub_multi()``); the
  messages due in one loop pass leave as one JSON array of ``{"id", "text"}`` items.
* ``http``: keep-alive connections POSTing to ``target.pub(channel)`` (pipelined, up to
  ``window`` requests in flight per connection); 2xx answers are the acknowledgements.

Every payload carries the send stamp (``make_payload``: '@gb:' + 16 hex digits of
CLOCK_MONOTONIC ns); channels are used round-robin (message k goes to channel k % channels).
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="   # RFC 6455 §1.3's sample key: any valid key will do
CONNECT_TIMEOUT = 10.0                # seconds for a publisher connection and its handshake
HTTP_CONNECTIONS = 4                  # default HTTP publisher connections
HTTP_WINDOW = 32                      # default pipelined requests per HTTP connection


@dataclass
class PubResult:
    sent: int = 0                     # messages written (HTTP: requests)
    acked: int = 0                    # 2xx answers (HTTP) or frames queued (WebSocket)
    errors: int = 0                   # non-2xx answers, error reports, broken connections
    per_channel: list = field(default_factory=list)   # acknowledged publishes per channel
    seconds: float = 0.0              # from the first due time to the last acknowledgement
    last_error: str = ""


def split_url(url: str) -> tuple[str, int, str]:
    u = urlsplit(url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path


def _connect(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def handshake(url: str, sse: bool = False) -> tuple[str, int, bytes]:
    """(host, port, request) of a WebSocket upgrade, or of an EventSource GET (the load
    client's subscribers use these too)."""
    host, port, path = split_url(url)
    if sse:
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n").encode()
    else:
        req = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    return host, port, req


def _ws_open(url: str) -> socket.socket:
    host, port, req = handshake(url)
    s = _connect(host, port)
    try:
        s.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"WebSocket publisher {url}: {head[:80]!r}")
        if len(head) > head.index(b"\r\n\r\n") + 4:
            raise ConnectionError(f"WebSocket publisher {url}: data after the 101 head")
    except BaseException:
        s.close()
        raise
    return s


def attach_publisher(client, kind: str, urls: list[str], size: int,
                     connections: int = HTTP_CONNECTIONS, window: int = HTTP_WINDOW,
                     names: list[str] | None = None) -> None:
    """Open the publisher connections and give them to the load client (before its run()).

    ``ws``: urls = one WebSocket URL per channel; ``ws-json``: urls = [the multi-channel
    publisher URL] and names = the channel names; ``http``: urls = one POST URL per channel
    (one host:port), ``connections`` keep-alive connections."""
    socks: list[socket.socket] = []
    try:
        if kind == "ws":
            socks = [_ws_open(u) for u in urls]
            prefixes: list[bytes] = []
        elif kind == "ws-json":
            if not names:
                raise ValueError("ws-json needs the channel names")
            socks = [_ws_open(urls[0])]
            prefixes = [b'{"id":' + json.dumps(n).encode() + b',"text":"' for n in names]
        elif kind == "http":
            host, port, _ = split_url(urls[0])
            prefixes = []
            for u in urls:
                h, p, path = split_url(u)
                if (h, p) != (host, port):
                    raise ValueError("all publish URLs must share one host:port")
                prefixes.append(f"POST {path} HTTP/1.1\r\nHost: {h}:{p}\r\n"
                                f"Content-Type: text/plain\r\nContent-Length: ".encode())
            socks = [_connect(host, port) for _ in range(max(1, connections))]
        else:
            raise ValueError(f"unknown publisher kind {kind!r}")
        for s in socks:
            s.setblocking(False)
        client.pub_attach(kind, [s.fileno() for s in socks], prefixes, size, window)
    except BaseException:
        for s in socks:
            s.close()
        raise
    for s in socks:
        s.detach()                    # the client closes them


def result(d: dict) -> PubResult:
    return PubResult(sent=d["sent"], acked=d["acked"], errors=d["errors"],
                     per_channel=d["per_channel"], seconds=d["seconds"],
                     last_error=d["error"])
