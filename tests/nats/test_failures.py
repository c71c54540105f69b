"""NATS ingest when things fail: gogin SIGKILLed mid-stream and restarted (JetStream durable,
storage on), NATS down at start (refused, or a degraded start that recovers), NATS restarted
under a running gogin.  Real nats-server and gogin processes; every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import aiohttp

from gogin_e2e import Gogin, free_port
from nats_helpers import (WsCollector, add_stream, gogin_config, http_get, metrics,
                          nats_connect, wait_healthy)
from natsd import NatsServer

N = 10_000


def parse(frame: str):
    mid, eid, ch, text = frame.split("|", 3)
    return int(mid), eid, ch, text


async def test_sigkill_mid_stream_then_restart_resume_gets_every_message_once(
        natsd, gogin_factory):
    chans = ["k1", "k2", "k3"]
    nc = await nats_connect(natsd.url)
    js = await add_stream(nc, "KILL", ["kill.>"])
    cfg = gogin_config(natsd.url, limits={"max_messages_stored_per_channel": 20000},
                       ingest_subject="kill.>", ingest_subject_prefix="kill.",
                       ingest_durable="gk", ingest_stream="KILL", ingest_ack_wait=2.0,
                       ingest_batch=64, ingest_replay=20000)
    g = gogin_factory(cfg)
    await wait_healthy(g.base)
    path = f"{g.ws}/tws/{'/'.join(chans)}"
    client = await WsCollector(path).start()
    await asyncio.sleep(0.3)

    limit = [3000]                             # the main server publishes up to here
    sent = [0]

    async def main_server():
        i = 0
        while i < N:
            if i >= limit[0]:
                await asyncio.sleep(0.01)
                continue
            i += 1
            await nc.publish(f"kill.{chans[i % 3]}", b"m%d" % i)
            if i % 50 == 0 or i == limit[0]:
                await nc.flush()
                sent[0] = i
                await asyncio.sleep(0.01)
        await nc.flush()
        sent[0] = N

    pub = asyncio.ensure_future(main_server())
    await client.wait_count(3000, 30)
    # freeze gogin with a pull request outstanding: NATS delivers the next messages to its
    # socket, where nobody publishes or acks them - then SIGKILL, so that the consumer has
    # delivered, unacknowledged messages (they come back after AckWait)
    os.kill(g.proc.pid, signal.SIGSTOP)
    limit[0] = 3200
    while sent[0] < 3200:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)
    ci = await js.consumer_info("KILL", "gk")
    in_flight = ci.num_ack_pending
    assert in_flight > 0, ci
    g.kill()                                   # SIGKILL: no ack, no flush, no goodbye
    g.returncode = -9                          # (the factory's SIGTERM check skips it)
    killed_at = len(client.frames)
    await asyncio.wait_for(client.task, 5)     # its connection ends
    frames = list(client.frames)
    limit[0] = N
    g2 = gogin_factory(cfg, port=g.port)
    health = await wait_healthy(g2.base, 30)
    assert "nats: ok" in health
    last = parse(frames[-1])[1]
    resumed = await WsCollector(f"{path}?last_event_id={last}").start()
    await pub
    seqs = [int(parse(f)[1]) for f in frames]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if resumed.frames and parse(resumed.frames[-1])[1] == str(N):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    after = [parse(f) for f in resumed.frames]
    assert not [f for f in after if f[0] < 0], "gap signal or other special message"
    seqs += [int(f[1]) for f in after]
    # every message once; in stream order per channel (a WebSocket catch-up sends the stored
    # messages one channel after the other, docs/protocol.md)
    assert len(seqs) == N and sorted(seqs) == list(range(1, N + 1)), \
        (len(seqs), len(set(seqs)), killed_at)
    for k, ch in enumerate(chans):
        mine = [s for s in seqs if s % 3 == k]
        assert mine == sorted(mine), ch
    for mid, eid, ch, text in after:           # channel and payload as published
        assert ch == chans[int(eid) % 3] and text == f"m{eid}"
    # the messages the killed node had fetched come back after AckWait (2 s): recognised
    await asyncio.sleep(3.5)
    m = await metrics(g2.base)
    assert m["gogin_nats_redelivered_total"] == m["gogin_nats_duplicates_total"] == in_flight
    assert m["gogin_nats_replayed_total"] >= killed_at - 64
    assert len(resumed.frames) == len(after)   # nothing published twice meanwhile
    ci = await js.consumer_info("KILL", "gk")
    assert ci.num_ack_pending == 0 and ci.num_pending == 0
    await resumed.close()
    await nc.close()


async def test_nats_down_at_start_refuses_to_start_with_a_clear_error(tmp_path):
    port = free_port()
    cfg = gogin_config(f"nats://gogin:s3cretpw@127.0.0.1:{port}", ingest_subject="x.>",
                       ingest_subject_prefix="x.", connect_timeout=1.0, token="t0ken-secret")
    g = Gogin(tmp_path, cfg)
    try:
        g.start()                              # it listens first, then connects to NATS
    except RuntimeError:
        pass                                   # ... or was already gone
    assert g.proc.wait(timeout=15) == 1
    text = g.log()
    assert f"cannot connect to NATS at nats://***@127.0.0.1:{port}" in text
    assert "s3cretpw" not in text and "t0ken-secret" not in text


async def test_nats_down_at_start_degraded_then_ingest_starts_when_it_comes(
        tmp_path, gogin_factory):
    late = NatsServer(tmp_path)                # its port is chosen, not listening yet
    cfg = gogin_config(late.url, ingest_subject="late.>", ingest_subject_prefix="late.",
                       ingest_required=False, connect_timeout=1.0, reconnect_time_wait=0.2)
    g = gogin_factory(cfg)
    text = await wait_healthy(g.base, 10, state="nats: error (cannot connect to NATS at")
    assert text.startswith("ok\n")            # clients are served meanwhile
    assert (await metrics(g.base))["gogin_nats_connected"] == 0
    assert "starting without NATS ingest" in g.log()
    late.start()
    try:
        await wait_healthy(g.base, 20)
        client = await WsCollector(f"{g.ws}/tws/room").start()
        await asyncio.sleep(0.2)
        nc = await nats_connect(late.url)
        await nc.publish("late.room", b"hello")
        await nc.flush()
        await client.wait_count(1, 10)
        assert client.frames[0] == "1||room|hello"
        await client.close()
        await nc.close()
    finally:
        late.stop()


async def test_nats_restart_under_running_gogin_ingest_resumes(tmp_path, gogin_factory):
    srv = NatsServer(tmp_path).start()
    try:
        nc = await nats_connect(srv.url)
        await add_stream(nc, "RS", ["rs.>"])
        await nc.close()
        cfg = gogin_config(srv.url, ingest_subject="rs.>", ingest_subject_prefix="rs.",
                           ingest_durable="grs", ingest_stream="RS", reconnect_time_wait=0.2)
        g = gogin_factory(cfg)
        await wait_healthy(g.base)
        client = await WsCollector(f"{g.ws}/tws/r").start()
        await asyncio.sleep(0.2)
        nc = await nats_connect(srv.url)
        await nc.publish("rs.r", b"before")
        await nc.flush()
        await client.wait_count(1, 10)
        await nc.close()
        srv.stop()                             # SIGKILL of nats-server
        await wait_healthy(g.base, 10, state="nats: disconnected")
        srv.start()                            # same port, same store: stream and consumer
        await wait_healthy(g.base, 20)
        nc = await nats_connect(srv.url)
        await nc.publish("rs.r", b"after")
        await nc.flush()
        await client.wait_count(2, 20)
        assert [f.split("|")[3] for f in client.frames] == ["before", "after"]
        m = await metrics(g.base)
        assert m["gogin_nats_reconnects_total"] >= 1 and m["gogin_nats_connected"] == 1
        await client.close()
        await nc.close()
    finally:
        srv.stop()



async def test_nats_back_with_an_empty_store_consumer_created_again(tmp_path, gogin_factory):
    """NATS restarted without its store: no stream, no consumer.  gogin says why it cannot
    read, and reads again once the stream exists (it creates its consumer again)."""
    srv = NatsServer(tmp_path).start()
    try:
        nc = await nats_connect(srv.url)
        await add_stream(nc, "EMPTY", ["empty.>"])
        await nc.close()
        cfg = gogin_config(srv.url, ingest_subject="empty.>", ingest_subject_prefix="empty.",
                           ingest_durable="ge", ingest_stream="EMPTY", reconnect_time_wait=0.2)
        g = gogin_factory(cfg)
        await wait_healthy(g.base)
        client = await WsCollector(f"{g.ws}/tws/r").start()
        await asyncio.sleep(0.2)
        srv.stop()
        import shutil
        shutil.rmtree(srv.store)
        srv.start()
        nc = await nats_connect(srv.url)
        js = await add_stream(nc, "EMPTY", ["empty.>"])
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:     # gogin creates its consumer again
            try:
                await js.consumer_info("EMPTY", "ge")
                break
            except Exception:
                await asyncio.sleep(0.2)
        else:
            raise AssertionError(f"no consumer created again:\n{g.log()[-2000:]}")
        await asyncio.sleep(0.5)
        await nc.publish("empty.r", b"again")
        await nc.flush()
        await client.wait_count(1, 20)
        assert client.frames[0].endswith("|r|again")
        assert "consumer 'ge' unavailable" in g.log()
        await client.close()
        await nc.close()
    finally:
        srv.stop()


async def test_graceful_restart_replays_history_healthz_503_meanwhile_nothing_lost(
        natsd, gogin_factory):
    """SIGTERM, messages published while gogin is down, start again: /healthz answers 503
    while the stream's last messages go back into history, then a client resuming by its last
    event id gets exactly what followed it (stored before the stop, or sent while down)."""
    n, down = 20000, 100
    nc = await nats_connect(natsd.url)
    await add_stream(nc, "GRACE", ["grace.>"])
    cfg = gogin_config(natsd.url, limits={"max_messages_stored_per_channel": 30000},
                       ingest_subject="grace.>", ingest_subject_prefix="grace.",
                       ingest_durable="gg", ingest_stream="GRACE", ingest_replay=30000)
    g = gogin_factory(cfg)
    await wait_healthy(g.base)
    for i in range(1, n + 1):
        await nc.publish("grace.ch", b"g%d" % i)
        if i % 1000 == 0:
            await nc.flush()
    await nc.flush()
    deadline = time.monotonic() + 60
    while (await metrics(g.base))["gogin_nats_ingested_total"] < n:
        assert time.monotonic() < deadline, "first gogin did not ingest everything"
        await asyncio.sleep(0.1)
    assert g.terminate() == 0
    for i in range(n + 1, n + down + 1):       # while gogin is down: kept by JetStream
        await nc.publish("grace.ch", b"g%d" % i)
    await nc.flush()
    g2 = gogin_factory(cfg, port=g.port)
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, text = await http_get(g2.base + "/healthz", 2.0)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            await asyncio.sleep(0.01)
            continue
        seen.add((status, text))
        if status == 200 and "nats: ok" in text:
            break
        await asyncio.sleep(0.01)
    assert (503, "starting\nnats: replaying\n") in seen, seen
    last = n - 10
    client = await WsCollector(f"{g2.ws}/tws/ch?last_event_id={last}").start()
    await client.wait_count(10 + down, 20)
    await asyncio.sleep(0.3)
    assert [int(f.split("|")[1]) for f in client.frames] == list(range(last + 1, n + down + 1))
    assert all(f.split("|")[3] == "g" + f.split("|")[1] for f in client.frames)
    m = await metrics(g2.base)
    assert m["gogin_nats_replayed_total"] == n and m["gogin_nats_ingested_total"] == down
    await client.close()
    await nc.close()
