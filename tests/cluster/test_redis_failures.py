"""Bad brokers: an unreachable Redis at startup, a Redis that answers errors to the publish
script, a Redis that goes away while subscribers are connected."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys

import aiohttp
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from gogin_e2e import ROOT, free_port, render_toml


def test_unreachable_redis_at_startup_is_a_clear_error(tmp_path):
    port = free_port()
    cfg = tmp_path / "g.toml"
    cfg.write_text(render_toml({
        "server": {"listen": [f"127.0.0.1:{free_port()}"]},
        "broker": {"type": "redis", "url": f"redis://:sekret@127.0.0.1:{port}/0",
                   "connect_timeout": 1.0}}))
    p = subprocess.run([sys.executable, "-m", "gogin", "--config", str(cfg)], cwd=ROOT,
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 1
    assert f"cannot connect to Redis at redis://***@127.0.0.1:{port}/0" in p.stderr, p.stderr
    assert "sekret" not in p.stderr


def redis_command(port: int, *args: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        cmd = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        s.sendall(cmd.encode())
        return s.recv(4096)


async def metrics(http, node) -> dict:
    r = await http.get(f"{node.base}/metrics")
    out = {}
    for fam in text_string_to_metric_families(await r.text()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.asyncio
async def test_script_errors_are_503_logged_once_and_counted(nodes, own_redis, prefix):
    redis = own_redis()
    (a,) = nodes(1, url=redis.url, prefix=prefix)
    # the channel's numbering key holds a string: the script fails with WRONGTYPE
    assert redis_command(redis.port, "SET", f"{prefix}:m:bad", "x").startswith(b"+OK")
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            r = await http.post(f"{a.base}/pub?id=bad", data="x")
            assert r.status == 503
            assert r.headers["X-Gogin-Explain"] == "Broker unavailable."
        r = await http.post(f"{a.base}/pub?id=good", data="x")
        assert r.status == 200
        m = await metrics(http, a)
    assert m[("gogin_broker_errors_total", (("kind", "publish"),))] == 3
    assert m[("gogin_broker_publish_errors_total", ())] == 3
    assert a.log().count("Redis publish failed") == 1, a.log()
    assert "WRONGTYPE" in a.log()


@pytest.mark.asyncio
async def test_redis_down_publishes_503_subscribers_stay(nodes, own_redis, prefix):
    redis = own_redis()
    (a,) = nodes(1, url=redis.url, prefix=prefix)
    async with aiohttp.ClientSession() as http:
        ws = await websockets.connect(f"{a.ws}/ws/stay", open_timeout=10)
        r = await http.post(f"{a.base}/pub?id=stay", data="one")
        assert r.status == 200
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["text"] == "one"
        assert (await http.get(f"{a.base}/healthz")).status == 200
        redis.stop()
        await asyncio.sleep(0.5)
        r = await http.post(f"{a.base}/pub?id=stay", data="lost")
        assert r.status == 503
        h = await http.get(f"{a.base}/healthz")
        assert h.status == 503 and "degraded" in await h.text()
        redis.start()
        for _ in range(100):                     # back within the reconnect backoff
            if (await http.get(f"{a.base}/healthz")).status == 200:
                break
            await asyncio.sleep(0.05)
        r = await http.post(f"{a.base}/pub?id=stay", data="two")
        assert r.status == 200
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        # the Redis without persistence lost the channel's numbering: the gap signal, then
        # the new message
        assert m["id"] == -4
        m = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert m["text"] == "two"
        await ws.close()


def test_broker_flag_sets_redis(tmp_path):
    p = subprocess.run([sys.executable, "-m", "gogin", "--broker", "redis://:pw@127.0.0.1:1/0",
                        "--workers", "2", "--check-config"], cwd=ROOT, capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0, p.stderr          # workers accepted: the broker is shared
    p = subprocess.run([sys.executable, "-m", "gogin", "--broker", "http://x/",
                        "--check-config"], cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert p.returncode == 2 and "broker.url: must be a redis://" in p.stderr
