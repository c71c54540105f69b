#!/usr/bin/env python
"""NATS ingest throughput: messages/s one gogin process takes from NATS and publishes into its
channels (issue 11 target: >= 100k/s with 100-byte messages on one core).

A private nats-server (JetStream on, its own port and store directory) and the publisher run
pinned to --client-cpu; gogin runs pinned to --server-cpu (taskset), so "one core" is what
gogin had.  Two modes:

- jetstream: the stream is filled with --messages messages first, a durable pull consumer is
  created on it (deliver all), then gogin starts and drains it (fetch in batches, publish,
  ack each): the rate is messages / time from the first to the last one ingested.
- core: gogin subscribes (core NATS, channel from the subject); a publisher process sends
  --messages messages as fast as it can; the rate is what gogin ingested per second of the
  run, with the messages it never got (NATS drops a slow consumer's excess) shown as lost.

Rates come from gogin's own counter (gogin_nats_ingested_total on /metrics, polled); the CPU
of gogin and of nats-server from /proc (which of the two was the limit).  --subscribers: that
many WebSocket clients on the channels (0 by default: this measures ingest; the fanout has its
own benchmark).

  nice -n 19 python benchmarks/nats_ingest.py --messages 20000          # a quick check
  python benchmarks/nats_ingest.py --messages 500000 --json ingest.json  # on quiet cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from reconnect_storm import free_port, wait_port  # noqa: E402

CHANNELS = 8                  # messages spread over this many channels
PUBLISHER = r'''
import asyncio, sys, nats
async def main(url, n, size, channels):
    nc = await nats.connect(url, pending_size=64 << 20)
    body = b"x" * size
    subjects = [f"bench.c{k}" for k in range(channels)]
    for i in range(n):
        await nc.publish(subjects[i % channels], body)
        if i % 5000 == 0:
            await nc.flush()
    await nc.flush()
    await nc.close()
asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
'''


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pinned(cpu: int, argv: list[str]) -> list[str]:
    return (["taskset", "-c", str(cpu)] if shutil.which("taskset") else []) + argv


async def ingested(port: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    for line in data.decode().splitlines():
        if line.startswith("gogin_nats_ingested_total "):
            return float(line.split()[1])
    raise SystemExit("gogin serves no gogin_nats_ingested_total (is [nats] url set?)")


async def subscribers(port: int, k: int):
    import websockets
    conns, tasks = [], []
    for i in range(k):
        path = "/".join(f"c{c}" for c in range(CHANNELS))
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/{path}", max_size=None)
        conns.append(ws)

        async def drain(ws=ws):
            try:
                async for _ in ws:
                    pass
            except Exception:
                pass
        tasks.append(asyncio.ensure_future(drain()))
    return conns, tasks


def gogin_toml(port: int, nats_url: str, mode: str, batch: int, redis_url=None) -> str:
    nats = [f'url = "{nats_url}"', 'ingest_subject = "bench.>"',
            'ingest_subject_prefix = "bench."']
    if mode == "jetstream":
        nats += ['ingest_durable = "bench"', 'ingest_stream = "BENCH"', "ingest_replay = 0",
                 f"ingest_batch = {batch}"]
    broker = (f'[broker]\ntype = "redis"\nurl = "{redis_url}"\n'
              f'key_prefix = "bench{os.getpid()}{mode}"\n' if redis_url else "")
    return (f'[server]\nlisten = ["127.0.0.1:{port}"]\nlog_level = "warning"\n'
            f"[limits]\nmax_messages_stored_per_channel = 100\n" + broker +
            "[nats]\n" + "\n".join(nats) + "\n")


async def prepare_stream(nats_url: str, n: int, size: int):
    import nats
    from nats.js import api
    nc = await nats.connect(nats_url, pending_size=64 << 20)
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench.>"])
    body = b"x" * size
    for i in range(n):
        await nc.publish(f"bench.c{i % CHANNELS}", body)
        if i % 5000 == 0:
            await nc.flush()
    await nc.flush()
    for _ in range(200):
        if (await js.stream_info("BENCH")).state.messages >= n:
            break
        await asyncio.sleep(0.05)
    await js.add_consumer("BENCH", api.ConsumerConfig(
        durable_name="bench", ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL, filter_subject="bench.>",
        max_ack_pending=max(4096, 4 * 256)))
    await nc.close()


async def run_mode(args, mode: str, workdir: Path) -> dict:
    nats_port, port = free_port(), free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"
    store = workdir / f"js-{mode}"
    natsd = subprocess.Popen(pinned(args.client_cpu, [
        args.nats_server, "-js", "-a", "127.0.0.1", "-p", str(nats_port), "-sd", str(store)]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gogin = pub = None
    try:
        wait_port(nats_port)
        if mode == "jetstream":
            await prepare_stream(nats_url, args.messages, args.size)
        cfg = workdir / f"gogin-{mode}.toml"
        cfg.write_text(gogin_toml(port, nats_url, mode, args.batch, args.redis))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cpu0 = None
        gogin = subprocess.Popen(pinned(args.server_cpu, [
            sys.executable, "-m", "gogin", "--config", str(cfg)]), cwd=str(ROOT), env=env)
        wait_port(port)
        conns, tasks = await subscribers(port, args.subscribers)
        if mode == "core":
            await asyncio.sleep(0.5)          # subscribed before the first message
            pub = subprocess.Popen(pinned(args.client_cpu, [
                sys.executable, "-c", PUBLISHER, nats_url, str(args.messages), str(args.size),
                str(CHANNELS)]))
        t_first = t_last = None
        last, still = -1.0, 0
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            n = await ingested(port)
            now = time.monotonic()
            if n > 0 and t_first is None:
                t_first, n_first, cpu0 = now, n, cpu_seconds(gogin.pid)
                ncpu0 = cpu_seconds(natsd.pid)
            if n > last:
                t_last, last, still = now, n, 0
            elif n > 0:
                still += 1
            if n >= args.messages or (mode == "core" and pub.poll() is not None
                                      and still >= 10):
                break
            await asyncio.sleep(0.05)
        cpu = cpu_seconds(gogin.pid) - (cpu0 or 0)
        ncpu = cpu_seconds(natsd.pid) - (ncpu0 if cpu0 is not None else 0)
        for t in tasks:
            t.cancel()
        for ws in conns:
            await ws.close()
        dt = (t_last - t_first) if t_first is not None and t_last > t_first else float("nan")
        counted = last - (n_first if t_first is not None else 0)
        return {"mode": mode, "messages": args.messages, "size": args.size,
                "ingested": int(last), "lost": int(args.messages - last),
                "seconds": round(dt, 3), "messages_per_s": round(counted / dt),
                "server_cpu_pct": round(100 * cpu / dt) if dt == dt else None,
                "nats_server_cpu_pct": round(100 * ncpu / dt) if dt == dt else None,
                "subscribers": args.subscribers, "server_cpu": args.server_cpu,
                "client_cpu": args.client_cpu, "batch": args.batch,
                "broker": "redis" if args.redis else "memory"}
    finally:
        for p in (pub, gogin, natsd):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=["jetstream", "core", "both"], default="both")
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--batch", type=int, default=1024,
                    help="nats.ingest_batch (JetStream; gogin's default)")
    ap.add_argument("--subscribers", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--nats-server", default=shutil.which("nats-server") or "nats-server")
    ap.add_argument("--redis", metavar="URL",
                    help="[broker] type = redis at this URL (default: the memory broker)")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    modes = ["jetstream", "core"] if args.mode == "both" else [args.mode]
    rows = []
    with tempfile.TemporaryDirectory(prefix="nats-ingest-") as tmp:
        for mode in modes:
            row = asyncio.run(run_mode(args, mode, Path(tmp)))
            rows.append(row)
            print(f"{row['mode']:9s} {row['messages_per_s']:>9,} msg/s  "
                  f"({row['ingested']:,} of {row['messages']:,} in {row['seconds']} s, "
                  f"lost {row['lost']:,}, CPU gogin {row['server_cpu_pct']}% "
                  f"nats-server {row['nats_server_cpu_pct']}%, "
                  f"{row['size']} B, {row['broker']} broker, "
                  f"cpu {row['server_cpu']} vs {row['client_cpu']})",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
