"""docs/protocol.md, Main-server callbacks: subscribe and client publish, with a real
aiohttp main server and a real gogin-server process."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from websockets.exceptions import InvalidStatus

from gogin_e2e import free_port, parse_default, publish, recv, ws_connect

CREDS = {"Cookie": "session=abc123; theme=dark", "Authorization": "Bearer tok-42"}


async def subscribers(http, g) -> int:
    async with http.get(f"{g.base}/channels-stats") as r:
        body = await r.read()
    return json.loads(body)["subscribers"]


async def assert_gets(http, g, ws, channel, text):
    status, _, _ = await publish(http, g.base, channel, text)
    assert status == 200
    doc = parse_default(await recv(ws))
    assert (doc["channel"], doc["text"]) == (channel, text)


async def test_allow_with_json_channels(gogin_factory, main_server, http):
    main_server.on_subscribe = main_server.allow(["x", "y"], user="42")
    g = gogin_factory({"auth": main_server.auth_config()})
    async with ws_connect(f"{g.ws}/subscribe/room?token=t1", additional_headers=CREDS) as ws:
        await assert_gets(http, g, ws, "x", "to x")
        await assert_gets(http, g, ws, "y", "to y")
        await publish(http, g.base, "room", "not mine")
        await assert_gets(http, g, ws, "x", "x again")     # 'room' was never delivered
    assert len(main_server.sub_requests) == 1
    h = main_server.sub_requests[0]["headers"]
    assert h.get("Cookie") == CREDS["Cookie"]
    assert h.get("Authorization") == CREDS["Authorization"]
    assert h.get("X-Original-URI") == "/subscribe/room?token=t1"


@pytest.mark.parametrize("redirect", ["/ws?channels=x/y", "/sub/x/y"])
async def test_allow_with_x_accel_redirect(gogin_factory, main_server, http, redirect):
    async def handler(request):
        return web.Response(status=200, headers={"X-Accel-Redirect": redirect})
    main_server.on_subscribe = handler
    g = gogin_factory({"auth": main_server.auth_config()})
    async with ws_connect(f"{g.ws}/subscribe/", additional_headers=CREDS) as ws:
        await assert_gets(http, g, ws, "x", "to x")
        await assert_gets(http, g, ws, "y", "to y")
    assert main_server.sub_requests[0]["headers"].get("Cookie") == CREDS["Cookie"]


async def test_deny_passes_status_and_body(gogin_factory, main_server, http):
    async def handler(request):
        return web.Response(status=401, text="please log in", content_type="text/plain")
    main_server.on_subscribe = handler
    g = gogin_factory({"auth": main_server.auth_config()})
    with pytest.raises(InvalidStatus) as exc:
        async with ws_connect(f"{g.ws}/subscribe/x", additional_headers=CREDS):
            pass
    assert exc.value.response.status_code == 401
    assert exc.value.response.body == b"please log in"
    assert await subscribers(http, g) == 0


async def test_main_server_down_is_503(gogin_factory, http):
    dead = f"http://127.0.0.1:{free_port()}/auth"
    g = gogin_factory({"auth": {"url": dead, "timeout": 2.0}})
    with pytest.raises(InvalidStatus) as exc:
        async with ws_connect(f"{g.ws}/subscribe/x"):
            pass
    assert exc.value.response.status_code == 503
    assert await subscribers(http, g) == 0


async def test_main_server_timeout_is_503_and_leaves_no_subscription(gogin_factory,
                                                                     main_server, http):
    done = asyncio.Event()

    async def slow(request):
        try:
            await asyncio.sleep(1.5)
            return web.json_response({"channels": ["x"]})
        finally:
            done.set()
    main_server.on_subscribe = slow
    g = gogin_factory({"auth": main_server.auth_config(timeout=0.5)})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(InvalidStatus) as exc:
        async with ws_connect(f"{g.ws}/subscribe/x"):
            pass
    assert exc.value.response.status_code == 503
    assert loop.time() - t0 < 1.4           # answered at the timeout, not after the main server
    await asyncio.wait_for(done.wait(), 5)
    await asyncio.sleep(0.2)
    assert await subscribers(http, g) == 0
    async with http.get(f"{g.base}/pub", params={"id": "x"}) as r:
        assert r.status == 404 or b'"subscribers": 0' in await r.read()


async def test_no_main_server_configured(shared_gogin):
    with pytest.raises(InvalidStatus) as exc:
        async with ws_connect(f"{shared_gogin.ws}/subscribe/x"):
            pass
    assert exc.value.response.status_code == 503
    assert exc.value.response.headers.get("X-Gogin-Explain") == "No main server configured."


async def test_client_publish_through_main_server(gogin_factory, main_server, http):
    main_server.on_subscribe = main_server.allow(["cp"], user="42")

    async def on_publish(request, body):
        if body.startswith(b"drop"):
            return web.Response(status=204)
        if body.startswith(b"asis"):
            return web.Response(status=304)
        if body.startswith(b"replace"):
            return web.Response(status=200, body=b"REPLACED " + body)
        return web.Response(status=403, text="no")
    main_server.on_publish = on_publish
    g = gogin_factory({"auth": main_server.auth_config()})

    async with ws_connect(f"{g.ws}/subscribe/", additional_headers=CREDS) as client, \
            ws_connect(f"{g.ws}/ws/cp") as watcher:
        for msg in ("drop-1", "asis-2", "replace-3", "deny-4", "asis-5"):
            await client.send(msg)
        got = [parse_default(await recv(watcher))["text"] for _ in range(3)]
        assert got == ["asis-2", "REPLACED replace-3", "asis-5"]
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(watcher.recv(), 0.3)

        # the sender is subscribed to cp too: it sees the same three, plus its error
        frames = [await recv(client) for _ in range(4)]
        errors = [json.loads(f) for f in frames if "error" in json.loads(f)]
        texts = [parse_default(f)["text"] for f in frames if "error" not in json.loads(f)]
        assert texts == ["asis-2", "REPLACED replace-3", "asis-5"]
        assert len(errors) == 1 and errors[0]["error"]
    bodies = [r["body"] for r in main_server.pub_requests]
    assert bodies == [b"drop-1", b"asis-2", b"replace-3", b"deny-4", b"asis-5"]
    h = main_server.pub_requests[0]["headers"]
    assert h.get("X-Gogin-User") == "42"
    assert h.get("Cookie") == CREDS["Cookie"]
