"""NATS ingest end to end: a private nats-server (JetStream), real gogin processes, real
WebSocket (websockets) and EventSource (aiohttp) clients.  The main server is this test
publishing to NATS."""

from __future__ import annotations

import asyncio
import json
import re

from nats_helpers import (SseCollector, WsCollector, add_stream, binary_payload, envelope,
                          gogin_config, metrics, nats_connect, text_payload, wait_healthy)

N = 10_000


def expected_frames(messages):
    """(ws frames, sse events) for one subscriber of every channel, from
    [(seq, [channels], payload, binary)] in publish order."""
    ids: dict = {}
    ws, sse = [], []
    for seq, chans, payload, binary in messages:
        for ch in chans:
            ids[ch] = ids.get(ch, 0) + 1
            head = f"{ids[ch]}|{seq}|{ch}|".encode()
            ws.append(payload if binary else (head + payload).decode())
            sse.append(b"id: %d\ndata: " % seq + head + payload)
    return ws, sse


async def test_10000_jetstream_notifications_reach_websocket_and_eventsource(
        natsd, gogin_factory):
    chans = ["ja", "jb", "jc", "jd"]
    nc = await nats_connect(natsd.url)
    js = await add_stream(nc, "ING1", ["ing1.>"])
    g = gogin_factory(gogin_config(natsd.url, ingest_subject="ing1.>", ingest_channel="message",
                                   ingest_durable="gogin1", ingest_stream="ING1"))
    await wait_healthy(g.base)
    ws = await WsCollector(f"{g.ws}/tws/{'/'.join(chans)}").start()
    sse = await SseCollector(f"{g.base}/tev/{'/'.join(chans)}").start()
    await asyncio.sleep(0.3)               # both subscribed before the first publish
    messages = []
    for i in range(1, N + 1):
        binary = i % 3 == 0
        payload = binary_payload(i) if binary else text_payload(i)
        if i % 10 == 0:                    # one message, two channels
            targets = [chans[i % 4], chans[(i + 1) % 4]]
            body = envelope(targets, payload, binary, key="channels")
        else:
            targets = [chans[i % 4]]
            body = envelope(targets[0], payload, binary)
        messages.append((i, targets, payload, binary))
        await nc.publish("ing1.n", body)
        if i % 1000 == 0:
            await nc.flush()
    await nc.flush()
    info = await js.stream_info("ING1")
    assert info.state.last_seq == N and info.state.messages == N      # seq i = message i
    want_ws, want_sse = expected_frames(messages)
    await ws.wait_count(len(want_ws), 60)
    await sse.wait_count(len(want_sse), 60)
    await asyncio.sleep(0.3)                           # nothing more arrives
    assert len(ws.frames) == len(want_ws)
    assert ws.frames == want_ws
    assert sse.events == want_sse
    assert sum(isinstance(f, bytes) for f in ws.frames) == sum(
        len(t) for _, t, _, b in messages if b)
    m = await metrics(g.base)
    assert m["gogin_nats_ingested_total"] == N
    assert m["gogin_nats_duplicates_total"] == 0
    assert m["gogin_nats_connected"] == 1
    assert sum(v for k, v in m.items() if k.startswith("gogin_nats_rejected_total")) == 0
    await asyncio.sleep(0.5)
    ci = await js.consumer_info("ING1", "gogin1")
    assert ci.num_ack_pending == 0 and ci.num_pending == 0 and ci.num_redelivered == 0
    assert ci.ack_floor.stream_seq == N                # every message acknowledged
    await ws.close()
    await sse.close()
    await nc.close()


async def test_core_nats_subject_mapping_queue_group_publishes_each_message_once(
        natsd, gogin_factory):
    """Two nodes in one queue group (core NATS, channel from the subject): each message is
    published by exactly one of them, and every message reaches a subscriber."""
    n = 2000
    cfg = gogin_config(natsd.url, ingest_subject="core.>", ingest_subject_prefix="core.",
                       queue_group="gogin")
    nodes = [gogin_factory(cfg), gogin_factory(cfg)]
    for g in nodes:
        await wait_healthy(g.base)
    clients = [await WsCollector(f"{g.ws}/tws/c1/c2").start() for g in nodes]
    await asyncio.sleep(0.3)
    nc = await nats_connect(natsd.url)
    for i in range(1, n + 1):
        ch = "c1" if i % 2 else "c2"
        if i % 5 == 0:      # binary, with an event id and the content type in headers
            await nc.publish(f"core.{ch}", binary_payload(i),
                             headers={"Event-Id": f"e{i}", "Content-Type":
                                      "application/octet-stream"})
        else:
            await nc.publish(f"core.{ch}", b"t%d" % i)
    await nc.flush()
    await asyncio.sleep(0.5)
    for _ in range(100):
        got = [len(c.frames) for c in clients]
        if sum(got) >= n:
            break
        await asyncio.sleep(0.1)
    texts = sorted(int(f.split("|")[3][1:]) for c in clients for f in c.frames
                   if isinstance(f, str))
    binaries = [f for c in clients for f in c.frames if isinstance(f, bytes)]
    assert texts == [i for i in range(1, n + 1) if i % 5]
    assert sorted(binaries) == sorted(binary_payload(i) for i in range(5, n + 1, 5))
    # the channel came from the subject, the event id from the header
    sample = next(f for f in clients[0].frames + clients[1].frames if isinstance(f, str))
    assert re.fullmatch(r"\d+\|\|c[12]\|t\d+", sample)
    counts = [(await metrics(g.base))["gogin_nats_ingested_total"] for g in nodes]
    assert sum(counts) == n and all(c > 0 for c in counts), counts
    for c in clients:
        await c.close()
    await nc.close()


async def test_bad_messages_are_rejected_counted_logged_once_and_never_block(
        natsd, gogin_factory):
    nc = await nats_connect(natsd.url)
    js = await add_stream(nc, "ING3", ["ing3.>"])
    g = gogin_factory(gogin_config(natsd.url, limits={"events_channel_id": "events"},
                                   ingest_subject="ing3.>", ingest_channel="message",
                                   ingest_durable="gogin3", ingest_stream="ING3"))
    await wait_healthy(g.base)
    ws = await WsCollector(f"{g.ws}/tws/good").start()
    ev = await WsCollector(f"{g.ws}/tws/events").start()
    await asyncio.sleep(0.3)
    big = b"x" * (10 * 1000 * 1000)
    bad = [
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (json.dumps({"text": "no channel"}).encode(), "no_channel"),
        (envelope("events", b"forged event", False), "forbidden_channel"),
        (envelope("ALL", b"to all", False), "forbidden_channel"),
        (envelope("good", big, False), "too_large"),
        (json.dumps({"channel": "good", "text": "x", "event_id": "a\r\nid: forged"}).encode(),
         "bad_event_field"),
        (json.dumps({"channel": "a/b", "text": "x"}).encode(), "bad_channel"),
    ]
    sent = 0
    for k, (body, _) in enumerate(bad):
        await nc.publish("ing3.m", envelope("good", b"good %d" % k, False))
        await nc.publish("ing3.m", body)
        sent += 2
    await nc.publish("ing3.m", envelope("good", b"good end", False))
    sent += 1
    await nc.flush()
    await ws.wait_count(len(bad) + 1, 20)
    await asyncio.sleep(0.5)
    texts = [f.split("|", 3)[3] for f in ws.frames]
    assert texts == [f"good {k}" for k in range(len(bad))] + ["good end"]
    assert ev.frames == []                  # nothing reached the events channel
    m = await metrics(g.base)
    kinds: dict = {}
    for _, kind in bad:
        kinds[kind] = kinds.get(kind, 0) + 1
    for kind, n in kinds.items():
        assert m[f'gogin_nats_rejected_total{{kind="{kind}"}}'] == n, kind
    assert m['gogin_nats_rejected_total{kind="empty"}'] == 0
    assert m["gogin_nats_ingested_total"] == len(bad) + 1
    log = g.log()
    for kind in kinds:                      # one line per kind, with its reason
        lines = [ln for ln in log.splitlines() if f"message rejected ({kind})" in ln]
        assert len(lines) == 1, (kind, lines)
    assert "events channel" in log and "over limits.max_message_size" in log
    assert "not a JSON envelope" in log
    # rejected messages were terminated: nothing pending, nothing to redeliver
    ci = await js.consumer_info("ING3", "gogin3")
    assert ci.num_ack_pending == 0 and ci.num_pending == 0
    assert ci.ack_floor.stream_seq == sent
    await ws.close()
    await ev.close()
    await nc.close()
