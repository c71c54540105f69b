"""Memory stays bounded with storage on: 1 GiB published (16,000 × 64 KiB over 10 channels)
with max_stored_bytes = 32 MiB keeps the process RSS under baseline + cap + a fixed overhead,
and the stored counts/bytes (/channels-stats, /metrics) under the cap."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import aiohttp

from gogin_e2e import metric_values, rss_bytes

MiB = 1 << 20
CAP = 32 * MiB
OVERHEAD = 64 * MiB
SIZE = 64 * 1024
COUNT = 16_000
CHANNELS = 10
RECORD_OVERHEAD = 96          # charged per stored message (gogin/_core/history.pyx)


class RssSampler(threading.Thread):
    def __init__(self, pid, interval=0.01):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(self.interval)


async def test_one_gib_through_storage_keeps_rss_bounded(gogin_factory):
    g = gogin_factory({"limits": {"max_stored_bytes": CAP,
                                  "max_messages_stored_per_channel": 1_000_000,
                                  "message_ttl": 0.0}})
    pid = g.proc.pid
    conn = aiohttp.TCPConnector(limit=4, force_close=False)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=20)) as http:
        # warm up every code path once (first publish, stats, metrics), then take the baseline
        async with http.post(f"{g.base}/pub", params={"id": "warm"}, data=b"w" * SIZE) as r:
            assert r.status == 200
        async with http.get(f"{g.base}/channels-stats", params={"id": "ALL"}) as r:
            await r.read()
        async with http.get(f"{g.base}/metrics") as r:
            await r.read()
        await asyncio.sleep(0.2)
        baseline = rss_bytes(pid)
        sampler = RssSampler(pid)
        sampler.start()
        t0 = time.monotonic()
        payloads = [bytes([65 + c]) * SIZE for c in range(CHANNELS)]
        statuses = []

        async def worker(k):
            for i in range(k, COUNT, 4):
                c = i % CHANNELS
                async with http.post(f"{g.base}/pub", params={"id": f"mem{c}"},
                                     data=payloads[c]) as r:
                    statuses.append(r.status)
                    await r.read()

        try:
            await asyncio.wait_for(asyncio.gather(*(worker(k) for k in range(4))), 75)
        finally:
            elapsed = time.monotonic() - t0
            await asyncio.sleep(0.3)
            sampler.stop.set()
            sampler.join(2)
        assert statuses.count(200) == COUNT
        assert elapsed < 75

        async with http.get(f"{g.base}/channels-stats", params={"id": "ALL"}) as r:
            infos = json.loads(await r.read())["infos"]
        async with http.get(f"{g.base}/channels-stats") as r:
            summary = json.loads(await r.read())
        async with http.get(f"{g.base}/metrics") as r:
            metrics = (await r.read()).decode()

    per_msg = SIZE + RECORD_OVERHEAD
    stored = {i["channel"]: int(i["stored_messages"]) for i in infos}
    published = {i["channel"]: int(i["published_messages"]) for i in infos}
    assert all(published[f"mem{c}"] == COUNT // CHANNELS for c in range(CHANNELS))
    total_stored = sum(stored.values())
    assert total_stored * per_msg <= CAP
    assert total_stored >= CAP // per_msg - CHANNELS - 1, "storage should be near its cap"
    assert int(summary["stored_messages"]) == total_stored
    stored_bytes = int(metric_values(metrics)["gogin_stored_bytes"])
    assert 0 < stored_bytes <= CAP
    peak = max(sampler.peak, rss_bytes(pid))
    assert peak < baseline + CAP + OVERHEAD, (
        f"peak RSS {peak / MiB:.1f} MiB, baseline {baseline / MiB:.1f} MiB, "
        f"bound {(baseline + CAP + OVERHEAD) / MiB:.1f} MiB")
    print(f"published {COUNT * SIZE / MiB:.0f} MiB in {elapsed:.1f}s; RSS baseline "
          f"{baseline / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB; stored {total_stored} msgs, "
          f"{stored_bytes / MiB:.1f} MiB")
