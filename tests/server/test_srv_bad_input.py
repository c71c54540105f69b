"""Bad input: broken handshakes, oversized heads, API key and address checks, garbage frames
(which must close only the offending client)."""

from __future__ import annotations

import asyncio
import base64
import os
import struct

import aiohttp
import pytest

from gogin_e2e import free_port, parse_default, publish, raw_request, recv, ws_connect

HEADERS_EXPLAIN = ("Don't have at least one of the mandatory headers: Connection, Upgrade, "
                   "Sec-WebSocket-Key and Sec-WebSocket-Version")
KEY = base64.b64encode(b"0123456789abcdef").decode()


def handshake(path, *, key=KEY, version="13", extra=""):
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade"]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


@pytest.mark.parametrize("kwargs,explain", [
    ({"key": None}, HEADERS_EXPLAIN),
    ({"version": None}, HEADERS_EXPLAIN),
    ({"version": "12"}, "Version not supported. Supported versions: 8, 13"),
])
async def test_malformed_handshake_is_400_with_explain(shared_gogin, chan, kwargs, explain):
    g = shared_gogin
    status, headers, _ = await raw_request(g.host, g.port, handshake(f"/ws/{chan}", **kwargs))
    assert status == 400
    assert headers.get("x-gogin-explain") == explain
    if kwargs.get("version") == "12":
        assert headers.get("sec-websocket-version") == "8, 13"


async def test_head_over_max_head_size_is_431(shared_gogin, http, chan):
    g = shared_gogin
    big = "X-Big: " + "a" * 9000 + "\r\n"
    status, _, _ = await raw_request(
        g.host, g.port, f"GET /pub?id={chan} HTTP/1.1\r\nHost: x\r\n{big}\r\n".encode())
    assert status == 431
    # a head just under the limit is fine
    status, _, _ = await raw_request(
        g.host, g.port, f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Small: {'a' * 7000}\r\n\r\n"
        .encode())
    assert status == 200


async def test_api_key(gogin_factory, http, chan):
    g = gogin_factory({"server": {"api_key": "s3cret"}})
    for headers in ({}, {"X-Api-Key": "wrong"}, {"X-Api-Key": "s3cre"},
                    {"Authorization": "Bearer nope"}):
        status, h, _ = await publish(http, g.base, chan, "x", headers)
        assert status == 403, headers
        assert h.get("X-Gogin-Explain") == "Invalid API key."
    async with http.get(f"{g.base}/channels-stats", headers={"X-Api-Key": "wrong"}) as r:
        assert r.status == 403
    status, _, _ = await publish(http, g.base, chan, "x", {"X-Api-Key": "s3cret"})
    assert status == 200
    status, _, _ = await publish(http, g.base, chan, "y", {"Authorization": "Bearer s3cret"})
    assert status == 200


async def test_address_not_allowed(gogin_factory, http, chan):
    port = free_port()
    g = gogin_factory({"server": {"listen": [f"127.0.0.1:{port}", f"127.0.0.2:{port}"],
                                  "allowed_networks": ["127.0.0.1/32"]}}, port=port)
    conn = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), force_close=True)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=10)) as other:
        for base in (f"http://127.0.0.2:{port}", f"http://127.0.0.1:{port}"):
            async with other.post(f"{base}/pub", params={"id": chan}, data=b"x") as r:
                assert r.status == 403
                assert r.headers.get("X-Gogin-Explain") == "Address not allowed."
            async with other.get(f"{base}/channels-stats") as r:
                assert r.status == 403
            async with other.get(f"{base}/healthz") as r:      # public
                assert r.status == 200
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await other.ws_connect(f"http://127.0.0.2:{port}/ws/{chan}")
        assert exc.value.status == 403
    # the allowed address still publishes (and nothing leaked from the refused ones)
    status, _, body = await publish(http, g.base, chan, "ok")
    assert status == 200
    assert b'"published_messages": 1,' in body


# -- garbage frames ---------------------------------------------------------------------------

def client_frame(opcode: int, payload: bytes, *, masked=True, fin=True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    assert len(payload) < 126
    if not masked:
        return head + bytes([len(payload)]) + payload
    mask = os.urandom(4)
    return head + bytes([0x80 | len(payload)]) + mask + \
        bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def read_frame(reader, timeout=5.0):
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), timeout)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack(">H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", await reader.readexactly(8))[0]
    assert not b1 & 0x80, "server frames must not be masked"
    return b0 & 0x0F, await asyncio.wait_for(reader.readexactly(n), timeout)


async def garbage_client(g, path, garbage: bytes) -> int:
    """Valid handshake, then garbage; returns the close code the server sends."""
    reader, writer = await asyncio.open_connection(g.host, g.port)
    try:
        writer.write(handshake(path))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        writer.write(garbage)
        await writer.drain()
        while True:       # published messages may come first
            opcode, payload = await read_frame(reader)
            if opcode == 0x8:
                code = struct.unpack(">H", payload[:2])[0]
                break
        # then the server closes the TCP connection
        rest = await asyncio.wait_for(reader.read(), 5)
        assert rest == b"" or rest.startswith(b"")
        return code
    finally:
        writer.close()


async def test_garbage_frames_close_only_that_client(shared_gogin, http, chan):
    g = shared_gogin
    cases = [
        ("unmasked text", client_frame(0x1, b"hello", masked=False), 1002),
        ("invalid utf-8", client_frame(0x1, b"ok \xff\xfe bad"), 1007),
        ("truncated utf-8", client_frame(0x1, b"caf\xc3"), 1007),
        ("reserved opcode 3", client_frame(0x3, b"x"), 1002),
        ("reserved control opcode 0xB", client_frame(0xB, b""), 1002),
        ("reserved bits", bytes([0xC1]) + client_frame(0x1, b"x")[1:], 1002),
    ]
    async with ws_connect(f"{g.ws}/ws/{chan}") as good:
        async def publisher():
            for i in range(200):
                status, _, _ = await publish(http, g.base, chan, f"n{i}")
                assert status == 200
                if i % 20 == 0:
                    await asyncio.sleep(0)

        async def garbage(name, data, code):
            got = await garbage_client(g, f"/ws/{chan}", data)
            return name, got, code

        results = await asyncio.wait_for(asyncio.gather(
            publisher(), *(garbage(*c) for c in cases * 2)), 30)
        for name, got, expected in results[1:]:
            assert got == expected, f"{name}: close code {got}, expected {expected}"
        ids = []
        for i in range(200):
            doc = parse_default(await recv(good))
            assert doc["text"] == f"n{i}"
            ids.append(doc["id"])
        assert ids == list(range(1, 201))
        await good.ping()       # still open
    async with http.get(f"{g.base}/pub", params={"id": chan}) as r:
        assert b'"subscribers": 0' in await r.read()
