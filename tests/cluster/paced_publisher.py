"""A paced HTTP publisher, run as its own process by the restart tests: `rate` POSTs per second
over `conns` keep-alive connections (pipelined), round-robin over `channels`, for `duration`
seconds.  Prints one JSON line: per channel, the sequence numbers that were answered 200 and
those that were not ({"ok": {ch: [...]}, "failed": {ch: [...]}, "statuses": {...}})."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque


async def connection(host, port, queue: deque, results, statuses, stop):
    reader, writer = await asyncio.open_connection(host, port)
    inflight: deque = deque()

    async def read_answers():
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            n = 0
            for line in lines[1:]:
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if n:
                await reader.readexactly(n)
            ch, seq = inflight.popleft()
            statuses[status] = statuses.get(status, 0) + 1
            results["ok" if status == 200 else "failed"].setdefault(ch, []).append(seq)

    reading = asyncio.ensure_future(read_answers())
    while not (stop.is_set() and not queue):
        batch = []
        while queue:
            ch, seq = queue.popleft()
            body = f"{ch}:{seq}".encode()
            batch.append(b"POST /pub?id=%s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (ch.encode(), len(body), body))
            inflight.append((ch, seq))
        if batch:
            writer.write(b"".join(batch))
            await writer.drain()
        await asyncio.sleep(0.002)
    deadline = time.monotonic() + 30
    while inflight and time.monotonic() < deadline and not reading.done():
        await asyncio.sleep(0.01)
    if inflight:
        why = reading.exception() if reading.done() else "no answer"
        raise RuntimeError(f"{len(inflight)} publishes never answered: {why!r}")
    reading.cancel()
    writer.close()


async def main(host, port, rate, duration, channels, conns):
    results = {"ok": {}, "failed": {}}
    statuses: dict = {}
    stop = asyncio.Event()
    queues = [deque() for _ in range(conns)]
    tasks = [asyncio.ensure_future(connection(host, port, q, results, statuses, stop))
             for q in queues]
    t0 = time.monotonic()
    sent = 0
    seqs = {ch: 0 for ch in channels}
    while time.monotonic() - t0 < duration:
        due = int((time.monotonic() - t0) * rate)
        while sent < due:
            ch = channels[sent % len(channels)]
            seqs[ch] += 1
            queues[sent % conns].append((ch, seqs[ch]))
            sent += 1
        await asyncio.sleep(0.005)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    print(json.dumps({**results, "statuses": statuses, "sent": sent}))


if __name__ == "__main__":
    host, port, rate, duration, nch, conns = sys.argv[1:7]
    asyncio.run(main(host, int(port), int(rate), float(duration),
                     [f"rs{i}" for i in range(int(nch))], int(conns)))
