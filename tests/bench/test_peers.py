"""gogin-bench peer servers: each one starts, fans messages out byte-exact and in order, and
stops.  websockets and picows are test dependencies and must be available; nginx+Nchan and
Node.js are skipped (with the reason) only when their binaries are missing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil

import aiohttp
import pytest
from websockets.asyncio.client import connect

from gogin.bench.peers import PEERS, NchanPeer, NodeWsPeer, _nchan_module, _nginx_bin

N_SUBS = 3
N_MSGS = 5
TIMEOUT = 5.0


def _payload(i: int) -> bytes:
    # ~100 B of text with a marker and non-ASCII UTF-8, as the load client sends.
    return (f"#T{i:04d}:{1700000000123456789 + i}# caf\u00e9 \u2603 " + "x" * 60).encode()


def _skip_reason(cls) -> str | None:
    """Only a missing nginx/nchan or node binary may skip; anything else must work."""
    if cls is NchanPeer and (_nginx_bin() is None or _nchan_module() is None):
        return "missing"
    if cls is NodeWsPeer and shutil.which("node") is None:
        return "missing"
    return None


async def _publish(peer, channel: str, payloads: list[bytes]) -> None:
    kind, url = peer.pub(channel)
    if kind == "http":
        async with aiohttp.ClientSession() as s:
            for p in payloads:
                async with s.post(url, data=p, headers={"Content-Type": "text/plain"}) as r:
                    assert 200 <= r.status < 300, (r.status, await r.text())
                    await r.read()
    else:
        assert kind == "ws", kind
        async with connect(url, compression=None) as ws:
            # Nchan answers each published message with a status frame: drain whatever comes.
            drain = asyncio.ensure_future(_discard(ws))
            for p in payloads:
                await ws.send(p, text=True)
            # let the server consume the messages before we close the publisher
            await asyncio.sleep(0.2)
            drain.cancel()


async def _discard(ws) -> None:
    async for _ in ws:
        pass


async def _drain(ws, n: int) -> list[bytes]:
    got = []
    while len(got) < n:
        m = await ws.recv()
        assert isinstance(m, str), f"expected a Text frame, got {m!r}"
        got.append(m.encode())
    return got


CASES = {**{n: (c, {}) for n, c in PEERS.items()}, "nchan-ws-pub": (NchanPeer, {"pub_mode": "ws"})}


@pytest.mark.parametrize("name", list(CASES))
async def test_peer_fanout(name):
    cls, kwargs = CASES[name]
    ok, reason = cls.available()
    if not ok:
        assert isinstance(reason, str) and reason.strip(), "available() must say why not"
        if _skip_reason(cls):
            pytest.skip(f"{name}: {reason}")
        pytest.fail(f"{name} must be available here: {reason}")
    assert cls.version()

    peer = cls(**kwargs)
    await asyncio.to_thread(peer.start, 0)
    try:
        assert peer.pid and peer.running
        assert peer.pid in peer.pids()
        url = peer.sub_url("c")
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/c")
        subs = [await connect(url, compression=None) for _ in range(N_SUBS)]
        try:
            await asyncio.sleep(0.1)  # let the server register the subscriptions
            payloads = [_payload(i) for i in range(N_MSGS)]
            await _publish(peer, "c", payloads)
            results = await asyncio.wait_for(
                asyncio.gather(*(_drain(ws, N_MSGS) for ws in subs)), TIMEOUT)
            for got in results:
                assert got == payloads
        finally:
            for ws in subs:
                await ws.close()
    finally:
        pid = peer.pid
        await asyncio.to_thread(peer.stop)
    assert peer.pid is None and not peer.running
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_not_started_and_context_manager():
    peer = PEERS["websockets"]()
    with pytest.raises(RuntimeError):
        peer.sub_url("c")
    with peer as p:
        assert p.running
        assert p.pub("c")[0] == "ws"
    assert not peer.running


def test_pinned_to_cpu():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity")
    cpu = max(os.sched_getaffinity(0))
    peer = PEERS["picows"]()
    peer.start(cpu=cpu)
    try:
        assert os.sched_getaffinity(peer.pid) == {cpu}
    finally:
        peer.stop()


# -- multi-channel JSON publisher (pub_multi): the "1:1 routing" workload --------------------
MULTI_PEERS = [n for n, c in PEERS.items() if c is not NchanPeer]
QUIET = 0.3   # how long a subscriber must stay silent


def _start_or_skip(name):
    cls = PEERS[name]
    ok, reason = cls.available()
    if not ok:
        if _skip_reason(cls):
            pytest.skip(f"{name}: {reason}")
        pytest.fail(f"{name} must be available here: {reason}")
    return cls()


async def _silent(ws) -> None:
    """Nothing arrives on ws within QUIET seconds."""
    with pytest.raises(TimeoutError):
        m = await asyncio.wait_for(ws.recv(), QUIET)
        pytest.fail(f"unexpected message {m!r}")


def test_nchan_has_no_multi_publisher():
    assert NchanPeer().pub_multi() is None
    assert NchanPeer(pub_mode="ws").pub_multi() is None


@pytest.mark.parametrize("name", MULTI_PEERS)
async def test_peer_multi_channel_json_publisher(name):
    peer = _start_or_skip(name)
    with pytest.raises(RuntimeError):
        peer.pub_multi()   # not started
    await asyncio.to_thread(peer.start)
    try:
        kind, url = peer.pub_multi()
        assert (kind, url) == ("ws-json", f"ws://127.0.0.1:{peer.port}/pub")
        chans = ["r0", "r1", "r2", "idle"]
        subs = {c: await connect(peer.sub_url(c), compression=None) for c in chans}
        try:
            await asyncio.sleep(0.1)  # let the server register the subscriptions
            # texts with JSON escapes, non-ASCII and an astral character (surrogate pair)
            t = {c: [_payload(i).decode() + f' {c}#{i} "q" \\ \n\t \U0001F600'
                     for i in range(2)] for c in chans}
            both = "to r0 and r2: \u00e9\u2603\U0001F600 \\u0041"
            batch = [
                {"id": "r0", "text": t["r0"][0]},
                {"id": "r1", "text": t["r1"][0]},
                {"id": "r1"},                           # no text: skipped, error index 2
                {"id": "r2", "text": t["r2"][0]},
                {"id": ["r0", "r2"], "text": both},     # a list of channels
            ]
            expected = {"r0": [t["r0"][0], both], "r1": [t["r1"][0], t["r1"][1]],
                        "r2": [t["r2"][0], both]}
            async with connect(url, compression=None) as pub:
                await pub.send(json.dumps(batch))                    # one array
                await pub.send(json.dumps({"id": "r1", "text": t["r1"][1]}, ensure_ascii=False))
                err = json.loads(await asyncio.wait_for(pub.recv(), TIMEOUT))
                assert err.get("index") == 2 and isinstance(err.get("error"), str), err
                results = await asyncio.wait_for(asyncio.gather(
                    *(_drain(subs[c], len(expected[c])) for c in expected)), TIMEOUT)
                for c, got in zip(expected, results):
                    assert got == [x.encode() for x in expected[c]], c
            # "/pub/" is the same endpoint
            async with connect(url + "/", compression=None) as pub:
                await pub.send(json.dumps({"id": "r2", "text": t["r2"][1]}))
                got = await asyncio.wait_for(_drain(subs["r2"], 1), TIMEOUT)
                assert got == [t["r2"][1].encode()]
                # nothing more on any channel, nothing at all on the unaddressed one, and no
                # further answer on the publisher connection
                await asyncio.gather(*(_silent(ws) for ws in subs.values()), _silent(pub))
        finally:
            for ws in subs.values():
                await ws.close()
        # the raw per-channel publisher is unchanged
        sub = await connect(peer.sub_url("raw"), compression=None)
        try:
            await asyncio.sleep(0.1)
            await _publish(peer, "raw", [b'{"id": "r0", "text": "x"}'])
            got = await asyncio.wait_for(_drain(sub, 1), TIMEOUT)
            assert got == [b'{"id": "r0", "text": "x"}']
        finally:
            await sub.close()
    finally:
        await asyncio.to_thread(peer.stop)


def test_nchan_eventsource_subscribers_through_gogin_bench(tmp_path):
    """gogin-bench's EventSource subscribers against Nchan (its /sub location also speaks
    EventSource): zero loss and every event's stamp found."""
    from gogin.bench.cli import bench_main
    reason = _skip_reason(NchanPeer)
    if reason:
        pytest.skip(f"nchan: {reason}")
    out = tmp_path / "r.jsonl"
    rc = bench_main(["--target", "nchan", "--subscribe", "sse", "--subscribers", "12",
                     "--channels", "3", "--rate", "60", "--duration", "1.5", "--drain", "2",
                     "--progress", "off", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text().splitlines()[0])
    assert r["loss"] == 0 and r["expected"] == r["received"] == 4 * r["publishes"] > 0
    assert r["latency_samples"] == r["received"] and r["unstamped"] == 0
