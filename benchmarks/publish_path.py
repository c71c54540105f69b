"""The cost of one HTTP publish in the server: CPU seconds of the gogin process per POST, with
the core's publisher fast path and with the Python publisher location (fast path off), and a
cProfile of each.  An in-process server on one core; a load client process on another sends
pipelined keep-alive POSTs (--connections x --window in flight) round robin over --channels
channels (no subscribers: the publish and its answer, not the sends to subscribers).

    python benchmarks/publish_path.py --requests 200000 --server-cpu 0 --client-cpu 1
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import socket
import sys
import time

CLIENT = r"""
import socket, sys, selectors
port, n, conns, window, channels = map(int, sys.argv[1:6])
reqs = [(f"POST /pub?id=c{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").encode()
        + b"x" * 100 for i in range(channels)]
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
for s in socks:                       # the first request decides the peer's network (Python)
    s.sendall(b"OPTIONS /pub HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
sel = selectors.DefaultSelector()
state = {}
sent = done = 0
for s in socks:
    s.setblocking(False)
    state[s] = [0, b""]               # in flight, unparsed bytes
    sel.register(s, selectors.EVENT_READ)
def top_up(s):
    global sent
    k = min(window - state[s][0], n - sent)
    if k > 0:
        s.sendall(b"".join(reqs[(sent + i) % channels] for i in range(k)))
        state[s][0] += k
        sent += k
for s in socks:
    top_up(s)
while done < n:
    for key, _ in sel.select():
        s = key.fileobj
        st = state[s]
        st[1] += s.recv(1 << 20)
        while True:
            i = st[1].find(b"\r\n\r\n")
            if i < 0:
                break
            head = st[1][:i]
            cl = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            if len(st[1]) < i + 4 + cl:
                break
            assert head.startswith(b"HTTP/1.1 200"), head
            st[1] = st[1][i + 4 + cl:]
            st[0] -= 1
            done += 1
        top_up(s)
"""


async def run(a, fast: bool, profile: bool):
    from gogin.config import Config
    from gogin.server import serve
    cfg = Config()
    cfg.server.listen = ["127.0.0.1:0"]
    srv = await serve(cfg)
    if not fast:
        srv.hub.clear_publish_routes()
    port = srv.addresses[0][1]
    cmd = [sys.executable, "-c", CLIENT, str(port), str(a.requests), str(a.connections),
           str(a.window), str(a.channels)]
    if a.client_cpu is not None:
        cmd = ["taskset", "-c", str(a.client_cpu)] + cmd
    prof = cProfile.Profile() if profile else None
    t0, c0 = time.monotonic(), time.process_time()
    if prof:
        prof.enable()
    proc = await asyncio.create_subprocess_exec(*cmd)
    await proc.wait()
    if prof:
        prof.disable()
    wall, cpu = time.monotonic() - t0, time.process_time() - c0
    answered = srv.hub.publish_routes.get("/pub", 0)
    await srv.stop(0.5)
    label = "core fast path" if fast else "Python location"
    print(f"{label}: {a.requests} POSTs in {wall:.2f} s ({a.requests / wall:,.0f}/s), server "
          f"CPU {cpu / a.requests * 1e6:.1f} us per POST, answered by the core: {answered}"
          + (" (cProfile on)" if prof else ""))
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(12)
        print(out.getvalue())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--channels", type=int, default=10_000)
    p.add_argument("--server-cpu", type=int)
    p.add_argument("--client-cpu", type=int)
    p.add_argument("--profile", action="store_true", help="cProfile each run (slower)")
    p.add_argument("--only", choices=["fast", "python"], help="one of the two runs")
    a = p.parse_args()
    if a.server_cpu is not None:
        os.sched_setaffinity(0, {a.server_cpu})
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    modes = [m == "fast" for m in ([a.only] if a.only else ["fast", "python"])]
    for fast in modes:
        asyncio.run(run(a, fast, False))
    if a.profile:
        for fast in modes:
            asyncio.run(run(a, fast, True))


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    main()
