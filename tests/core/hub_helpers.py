"""Shared helpers for the Hub integration tests: a small server around a real Hub, raw HTTP and
WebSocket codecs for malformed input, and loop/backend parametrization.  No mocks."""

import asyncio
import base64
import hashlib
import json
import os
import struct
import time

import pytest
import uvloop

from gogin._core import Hub, backends

T = 5.0                     # upper bound of any single wait: a hang fails fast
BACKENDS = backends()
LOOP_FACTORIES = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}

# ~channel-json~ and ~text-json~ are escaped without quotes (formats.escape_json docstring)
TEMPLATE = '{"id":~id~,"channel":"~channel-json~","text":"~text-json~"}'
SSE_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Cache-Control: no-cache\r\n\r\n")
LP_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
LP_TIMEOUT = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def json_escape(text: str) -> bytes:
    """Reference RFC 8259 escaping (no quotes) for byte-exact comparisons."""
    return json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")


def render(msg_id: int, channel: str, text: str) -> bytes:
    return (b'{"id":%d,"channel":"%s","text":"%s"}'
            % (msg_id, json_escape(channel), json_escape(text)))


async def until(pred, timeout=T, what="condition"):
    """Poll `pred` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class Server:
    """A Hub with a tiny router: /ws (upgrade), /pub (publish), /echo, /sse, /lp."""

    def __init__(self, backend=None, template=TEMPLATE, **limits):
        self.hub = Hub(self.on_request, self.on_message, self.on_close, backend=backend, **limits)
        self.fmt = self.hub.format("websocket", template)
        self.es = self.hub.format("eventsource", "~text~", ping=b": ping\n\n")
        self.lp = self.hub.format("longpoll", "~text~", head=LP_HEAD)
        self.requests = []          # Request objects, in arrival order
        self.messages = []          # (opcode, bytes) given to on_message
        self.closes = []            # (reason, channels at on_close, stats()['subscribers'])
        self.host = self.port = None
        self.stopped = False

    # -- callbacks -------------------------------------------------------------------------
    def on_request(self, conn, req):
        self.requests.append(req)
        q = req.query_params()
        chans = [c for c in q.get("ch", "").split(",") if c]
        if req.path == "/ws":
            pub = [c for c in q.get("pub", "").split(",") if c] or None
            conn.upgrade(chans, self.fmt, key=req.get("sec-websocket-key"),
                         ping_interval=float(q.get("ping", 0)), ttl=float(q.get("ttl", 0)),
                         publish_to=pub)
        elif req.path == "/pub":
            n = self.hub.publish(q["id"], req.body, event_id=req.get("x-event-id"),
                                 event_type=req.get("x-event-type"),
                                 binary=req.get("x-binary") == "1")
            conn.respond(200, [("Content-Type", "text/plain")], str(n))
        elif req.path == "/echo":
            body = b"%s %s %d %s" % (req.method.encode(), req.target.encode(), len(req.body),
                                     hashlib.sha256(req.body).hexdigest().encode())
            conn.respond(200, [("Content-Type", "text/plain")], body)
        elif req.path == "/sse":
            conn.start_stream(SSE_HEAD, chans, self.es, ping_interval=float(q.get("ping", 0)))
        elif req.path == "/lp":
            conn.hold(chans, self.lp, float(q.get("timeout", 5)), LP_TIMEOUT)
        else:
            conn.respond(404, [("Content-Type", "text/plain")], "no route")

    def on_message(self, conn, opcode, data):
        self.messages.append((int(opcode), bytes(data)))

    def on_close(self, conn, reason):
        self.closes.append((reason, list(conn.channels), self.hub.stats()["subscribers"]))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self):
        self.host, self.port = self.hub.listen("127.0.0.1", 0)
        self.hub.attach()
        return self

    async def stop(self):
        if not self.stopped:
            self.stopped = True
            await asyncio.wait_for(self.hub.shutdown(timeout=1.0), T)

    @property
    def http(self):
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self):
        return f"ws://{self.host}:{self.port}"

    def subs(self, channel):
        return len(self.hub.subscribers(channel))


@pytest.fixture
async def make_server():
    """make_server(**hub_kwargs) -> started Server in the test's loop; shut down at teardown."""
    servers = []

    def make(**kw):
        s = Server(**kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        await s.stop()


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def run_loop(request):
    """run_loop(async_fn) runs async_fn() in a fresh asyncio or uvloop loop, bounded."""
    factory = LOOP_FACTORIES[request.param]

    def run(fn, timeout=20.0):
        async def main():
            return await asyncio.wait_for(fn(), timeout)
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(main())

    run.loop_name = request.param
    return run


async def run_server(fn, **kw):
    """Start a Server in the running loop, run fn(server), always shut it down."""
    s = Server(**kw).start()
    try:
        return await fn(s)
    finally:
        await s.stop()


# -- raw HTTP ----------------------------------------------------------------------------------

async def open_raw(server):
    return await asyncio.wait_for(asyncio.open_connection(server.host, server.port), T)


async def read_response(reader, timeout=T):
    """(status, {lower-name: value}, body) of one response read by Content-Length."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", 0))
    body = await asyncio.wait_for(reader.readexactly(n), timeout) if n else b""
    return status, headers, body


async def read_eof(reader, timeout=T):
    """Read until EOF (or reset); returns everything read."""
    out = b""
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), timeout)
            if not chunk:
                return out
            out += chunk
    except ConnectionResetError:
        return out


# -- raw WebSocket -----------------------------------------------------------------------------

def mask_bytes(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""


def ws_encode(opcode, payload=b"", fin=True, mask=True, rsv=0):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        hdr = bytes([b0, mbit | n])
    elif n < 65536:
        hdr = bytes([b0, mbit | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return hdr + key + mask_bytes(payload, key)
    return hdr + payload


def handshake_request(path, key):
    return (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


class RawWS:
    """Minimal RFC 6455 client over asyncio streams, for frames real clients refuse to send."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, server, path="/ws?ch=a"):
        reader, writer = await open_raw(server)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(handshake_request(path, key))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        assert head.startswith(b"HTTP/1.1 101 "), head
        assert f"Sec-WebSocket-Accept: {accept_for(key)}".encode() in head, head
        return cls(reader, writer)

    def send(self, opcode, payload=b"", **kw):
        self.writer.write(ws_encode(opcode, payload, **kw))

    def send_raw(self, data):
        self.writer.write(data)

    async def recv(self, timeout=T):
        """(fin, opcode, payload) of the next server frame; asserts it is unmasked."""
        r = self.reader
        h = await asyncio.wait_for(r.readexactly(2), timeout)
        fin, op, n = h[0] >> 7, h[0] & 0x0F, h[1] & 0x7F
        assert not h[1] & 0x80, "server frames must not be masked (RFC 6455 §5.1)"
        if n == 126:
            n = struct.unpack("!H", await asyncio.wait_for(r.readexactly(2), timeout))[0]
        elif n == 127:
            n = struct.unpack("!Q", await asyncio.wait_for(r.readexactly(8), timeout))[0]
        payload = await asyncio.wait_for(r.readexactly(n), timeout) if n else b""
        return fin, op, payload

    async def recv_close(self, timeout=T):
        """Skip frames up to the close frame; returns (code or None, reason bytes)."""
        deadline = time.monotonic() + timeout
        while True:
            _, op, payload = await self.recv(max(0.01, deadline - time.monotonic()))
            if op == 0x8:
                if len(payload) >= 2:
                    return struct.unpack("!H", payload[:2])[0], payload[2:]
                return None, b""

    def close(self):
        self.writer.close()

