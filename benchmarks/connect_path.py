#!/usr/bin/env python
"""The Python a WebSocket connect costs in gogin, per location kind: direct, token (cold: a
token gogin never saw, PyJWT checks it) and token (warm: the same token again, the cache).

gogin runs in this process (gogin.serve on uvloop, pinned to --server-cpu); every call of the
server's request callback (routing, auth, subscribe, upgrade: all the Python of a connect) is
timed with perf_counter, while gogin-bench's C load client (another process, --client-cpu)
makes N WebSocket connects per row.  The median per connect is what one connect costs; on a
busy machine it is much steadier than a storm's wall-clock time (a preempted call is an
outlier, not a shift), which is why this exists beside reconnect_storm.py.

  python benchmarks/connect_path.py --clients 5000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reconnect_storm import SECRET, free_port, write_tokens  # noqa: E402


async def run(args) -> dict:
    from gogin import serve
    from gogin.config import load
    from gogin.locations import Router

    samples: list = []
    original = Router.on_request

    def timed(self, conn, req):
        t0 = time.perf_counter()
        try:
            return original(self, conn, req)
        finally:
            samples.append(time.perf_counter() - t0)

    Router.on_request = timed                   # before the Hub takes the bound method
    port = free_port()
    cfg = load(env={}, overrides={
        "server": {"listen": [f"127.0.0.1:{port}"], "max_connections": args.clients + 1000,
                   "backlog": 4096, "log_level": "warning"},
        "auth": {"token": {"algorithms": ["HS256"], "key": SECRET}},
        "locations": [
            {"path": "/pub", "role": "publisher"},
            {"path": "/ws/", "role": "subscriber", "mode": "websocket"},
            {"path": "/token/", "role": "subscriber", "mode": "websocket", "channels": "token",
             "public": True}]})
    server = await serve(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="connect-path-"))
    base = f"http://127.0.0.1:{port}"
    urls = {"direct": f"{base}/ws/{{channel}}",
            "token-cold": f"{base}/token/{{channel}}?token={{token}}",
            "token-warm": f"{base}/token/{{channel}}?token={{token}}"}
    out: dict = {name: [] for name in urls}
    try:
        for r in range(args.repeat):
            tokens = write_tokens(tmp / f"tokens{r}.txt", args.clients, r)   # new users
            # direct twice a round: before and after, so warm-up favours neither
            for name in ("direct", "token-cold", "token-warm", "direct"):
                out[name].append(await one(args, samples, urls[name],
                                           tokens if name.startswith("token") else None))
    finally:
        await server.stop()
        Router.on_request = original
    return {name: statistics.median(rs) for name, rs in out.items()}


async def one(args, samples: list, url: str, tokens) -> float:
    """The median Python time (s) of one row's connects (one more request: the publisher's)."""
    samples.clear()
    cmd = [sys.executable, "-m", "gogin.bench.cli", "--target", url, "--scenario", "capacity",
           "--subscribers", str(args.clients), "--channels", "1", "--channel-prefix", "storm",
           "--duration", "0.5", "--client-cpu", str(args.client_cpu), "--progress", "off"]
    if tokens is not None:
        cmd += ["--tokens", str(tokens)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 600)
    if proc.returncode != 0:
        raise SystemExit(f"gogin-bench failed: {err.decode()[-2000:]}")
    return statistics.median(samples)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds of direct, token-cold, token-warm, direct (new tokens each)")
    args = ap.parse_args(argv)
    os.sched_setaffinity(0, {args.server_cpu})
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    jwt.encode({"warm": "up"}, SECRET, algorithm="HS256")      # imports, outside the timing
    out = asyncio.run(run(args))
    d = out["direct"] * 1e6
    print(f"Python per connect ({args.clients:,} connects a row, medians over "
          f"{args.repeat} rounds):")
    for name, sec in out.items():
        us = sec * 1e6
        extra = "" if name == "direct" else f"  ({us - d:+.1f} us vs direct)"
        print(f"  {name:10s} {us:6.1f} us{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
