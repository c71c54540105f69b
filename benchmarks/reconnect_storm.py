#!/usr/bin/env python
"""Reconnect storm: N WebSocket clients connecting at once, three ways, to one gogin.

- direct:   /ws/{channel}, channels in the path (no auth: the floor);
- callback: /subscribe/{channel}, each connect asks a trivial main server (aiohttp, in its
            own process) that allows every client;
- token:    /token/{channel}?token=<HS256 JWT>, gogin checks the signature itself.

The clients are gogin-bench's C load client (capacity scenario: connect N, then one publish
per second for --duration seconds, everything delivered).  gogin runs pinned to --server-cpu;
the load client and the main server share --client-cpu: the main server's work is part of
what a callback connect costs, and the load client's CPU is shown.

  python benchmarks/reconnect_storm.py --clients 10000 --json storm.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jwt

ROOT = Path(__file__).resolve().parent.parent
SECRET = "storm-benchmark-secret-of-32-bytes-or-more"
MAIN_SERVER = r'''
import sys
from aiohttp import web
async def allow(request):
    await request.read()
    return web.json_response({"channels": [request.headers["X-Gogin-Channels"]]})
app = web.Application()
app.router.add_post("/auth", allow)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
'''


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    import socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def config(port: int, auth_port: int, clients: int) -> str:
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
max_connections = {clients + 1000}
backlog = 4096
log_level = "warning"

[auth]
url = "http://127.0.0.1:{auth_port}/auth"
timeout = 30.0

[auth.token]
algorithms = ["HS256"]
key = "{SECRET}"

[[locations]]
path = "/pub"
role = "publisher"

[[locations]]
path = "/ws/"
role = "subscriber"
mode = "websocket"

[[locations]]
path = "/subscribe/"
role = "subscriber"
mode = "websocket"
channels = "main_server"
public = true

[[locations]]
path = "/token/"
role = "subscriber"
mode = "websocket"
channels = "token"
public = true
"""


def bench(url: str, clients: int, args) -> dict:
    out = Path(tempfile.mkdtemp(prefix="storm-")) / "row.json"
    cmd = [sys.executable, "-m", "gogin.bench.cli", "--target", url, "--scenario", "capacity",
           "--subscribers", str(clients), "--channels", "1", "--channel-prefix", "storm",
           "--duration", str(args.duration),
           "--client-cpu", str(args.client_cpu), "--max-inflight", str(args.max_inflight),
           "--progress", "off", "--json", str(out)]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if run.returncode != 0 or not out.exists():
        raise SystemExit(f"gogin-bench failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return rows[-1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--max-inflight", type=int, default=512)
    ap.add_argument("--json", help="write the three rows here")
    args = ap.parse_args(argv)

    port, auth_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    (tmp / "gogin.toml").write_text(config(port, auth_port, args.clients))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    main_server = subprocess.Popen(["taskset", "-c", str(args.client_cpu), sys.executable,
                                    "-c", MAIN_SERVER, str(auth_port)], env=env)
    gogin = subprocess.Popen(["taskset", "-c", str(args.server_cpu), sys.executable, "-m",
                              "gogin", "--config", str(tmp / "gogin.toml")], cwd=ROOT, env=env)
    try:
        wait_port(auth_port)
        wait_port(port)
        token = jwt.encode({"sub": "storm", "channels": ["storm0"],     # gogin-bench's channel
                            "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")
        base = f"http://127.0.0.1:{port}"
        urls = {"direct": f"{base}/ws/{{channel}}",
                "callback": f"{base}/subscribe/{{channel}}",
                "token": f"{base}/token/{{channel}}?token={token}"}
        rows = {}
        for name, url in urls.items():
            row = bench(url, args.clients, args)
            rows[name] = row
            print(f"{name:9s} {row.get('connected', 0):>6,} connected in "
                  f"{row.get('connect_seconds', float('nan')):.2f} s "
                  f"({row.get('connects_per_s', 0):,.0f}/s), failed "
                  f"{row.get('connect_failed', 0)}, load client CPU "
                  f"{row.get('client_cpu_pct') or 0:.0f} % of its core over the whole run "
                  f"(connects + {args.duration:g} s of publishes), delivered "
                  f"{'all' if row.get('pass') else 'NOT all'}", flush=True)
        d = rows["direct"]["connect_seconds"]
        for name in ("callback", "token"):
            print(f"{name}: {rows[name]['connect_seconds'] / d:.2f}x the direct location's time")
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        failed = sum(r.get("connect_failed", 0) for r in rows.values())
        short = [n for n, r in rows.items()
                 if r.get("connected", 0) != args.clients or not r.get("pass")]
        return 1 if failed or short else 0
    finally:
        for p in (gogin, main_server):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())
