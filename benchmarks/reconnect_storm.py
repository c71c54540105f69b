#!/usr/bin/env python
"""Reconnect storm: N WebSocket clients connecting at once, several ways, to one gogin.

- direct:     /ws/{channel}, channels in the path (no auth: the floor);
- callback:   /subscribe/{channel}, each connect asks a trivial main server (aiohttp, in its
              own process) that allows every client;
- token-cold: /token/{channel}?token=<HS256 JWT>, one token per client (N different tokens,
              as N users hold), none seen by this gogin before: every connect is a full PyJWT
              check - a storm after a gogin restart, or onto a node the clients never used;
- token-warm: the same N clients reconnect with the same tokens to the same gogin (the storm
              after a network cut or a load balancer's restart): answered from gogin's cache
              of verified tokens ([auth.token] cache_bytes), no signature check.

The 1.5x target of issue 14 (token within 1.5x of direct) is about the reconnect storm, i.e.
token-warm; token-cold is printed beside it.  Each row is one gogin-bench run, one after the
other against the same gogin, so token-warm must come after token-cold.

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
import statistics
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


ROWS = ("direct", "callback", "token-cold", "token-warm")


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
path = "/metrics"
role = "metrics"

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


def bench(url: str, clients: int, args, tokens: str | None = None) -> dict:
    out = Path(tempfile.mkdtemp(prefix="storm-")) / "row.json"
    nice = ["nice", "-n", str(args.nice)] if args.nice else []
    cmd = nice + [sys.executable, "-m", "gogin.bench.cli", "--target", url,
                  "--scenario", "capacity", "--subscribers", str(clients), "--channels", "1",
                  "--channel-prefix", "storm", "--duration", str(args.duration),
                  "--client-cpu", str(args.client_cpu), "--max-inflight", str(args.max_inflight),
                  "--progress", "off", "--json", str(out)]
    if tokens:
        cmd += ["--tokens", tokens]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if run.returncode != 0 or not out.exists():
        raise SystemExit(f"gogin-bench failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return rows[-1]


def write_tokens(path: Path, clients: int, run: int) -> Path:
    """One HS256 token per client (each its own user), all for gogin-bench's channel."""
    exp = int(time.time()) + 3600
    path.write_text("".join(
        jwt.encode({"sub": f"storm{run}-{i}", "channels": ["storm0"], "exp": exp}, SECRET,
                   algorithm="HS256") + "\n" for i in range(clients)))
    return path


def token_cache(port: int) -> dict:
    """gogin's token-cache counters (/metrics): which connects the cache answered."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("gogin_token_cache_"):
            name, _, value = line.partition(" ")
            out[name.removeprefix("gogin_token_cache_")] = float(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=10000)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--client-cpu", type=int, default=1)
    ap.add_argument("--max-inflight", type=int, default=512)
    ap.add_argument("--rows", default=",".join(ROWS),
                    help=f"which runs, in this order (default: {','.join(ROWS)}); "
                         "token-warm needs token-cold before it")
    ap.add_argument("--nice", type=int, default=0,
                    help="run gogin and the load client at this niceness (a shared machine)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the rows this many times, interleaved (each token-cold with new "
                         "tokens), and print the medians: a busy machine's noise")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    rows_wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in rows_wanted if r not in ROWS]
    if bad or "direct" not in rows_wanted:
        ap.error(f"--rows: choose among {', '.join(ROWS)}, direct included (the ratios' base)")
    if "token-warm" in rows_wanted and ("token-cold" not in rows_wanted or
                                        rows_wanted.index("token-warm") <
                                        rows_wanted.index("token-cold")):
        ap.error("--rows: token-warm reconnects with token-cold's tokens: put it after")
    nice = ["nice", "-n", str(args.nice)] if args.nice else []

    port, auth_port = free_port(), free_port()
    tmp = Path(tempfile.mkdtemp(prefix="storm-"))
    (tmp / "gogin.toml").write_text(config(port, auth_port, args.clients))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    main_server = subprocess.Popen(nice + ["taskset", "-c", str(args.client_cpu),
                                           sys.executable, "-c", MAIN_SERVER, str(auth_port)],
                                   env=env)
    gogin = subprocess.Popen(nice + ["taskset", "-c", str(args.server_cpu), sys.executable,
                                     "-m", "gogin", "--config", str(tmp / "gogin.toml")],
                             cwd=ROOT, env=env)
    try:
        wait_port(auth_port)
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        urls = {"direct": f"{base}/ws/{{channel}}",
                "callback": f"{base}/subscribe/{{channel}}",
                "token-cold": f"{base}/token/{{channel}}?token={{token}}",
                "token-warm": f"{base}/token/{{channel}}?token={{token}}"}
        runs: dict[str, list] = {name: [] for name in rows_wanted}
        tokens = None
        for r in range(args.repeat):
            for name in rows_wanted:
                if name == "token-cold":           # new users: tokens this gogin never saw
                    tokens = write_tokens(tmp / f"tokens{r}.txt", args.clients, r)
                before = token_cache(port) if name.startswith("token") else None
                row = bench(urls[name], args.clients, args,
                            str(tokens) if name.startswith("token") else None)
                runs[name].append(row)
                print(f"{name:10s} {row.get('connected', 0):>6,} connected in "
                      f"{row.get('connect_seconds', float('nan')):.2f} s "
                      f"({row.get('connects_per_s', 0):,.0f}/s), failed "
                      f"{row.get('connect_failed', 0)}, load client CPU "
                      f"{row.get('client_cpu_pct') or 0:.0f} % of its core over the whole run "
                      f"(connects + {args.duration:g} s of publishes), delivered "
                      f"{'all' if row.get('pass') else 'NOT all'}", flush=True)
                if before is not None:
                    after = token_cache(port)
                    row["token_cache"] = {k: after.get(k, 0) - before.get(k, 0)
                                          for k in ("hits_total", "misses_total")}
                    row["token_cache"].update(entries=after.get("entries", 0),
                                              bytes=after.get("bytes", 0))
                    c = row["token_cache"]
                    print(f"{'':10s} token cache during it: {c['hits_total']:,.0f} hits, "
                          f"{c['misses_total']:,.0f} misses (PyJWT checks); "
                          f"{c['entries']:,.0f} entries, {c['bytes'] / 2**20:.1f} MiB after",
                          flush=True)
            d = runs["direct"][-1]["connect_seconds"]
            print("  ".join(f"{name}: {runs[name][-1]['connect_seconds'] / d:.2f}x direct"
                            for name in rows_wanted if name != "direct"), flush=True)
        if args.repeat > 1:
            med = {name: statistics.median(x["connect_seconds"] for x in rs)
                   for name, rs in runs.items()}
            print(f"medians of {args.repeat} runs: " + ", ".join(
                f"{name} {med[name]:.2f} s" + ("" if name == "direct" else
                                               f" ({med[name] / med['direct']:.2f}x direct)")
                for name in rows_wanted))
        if args.json:
            Path(args.json).write_text(json.dumps(runs if args.repeat > 1 else
                                                  {k: v[0] for k, v in runs.items()}, indent=2))
        rows = {f"{name}#{i}": row for name, rs in runs.items() for i, row in enumerate(rs)}
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
