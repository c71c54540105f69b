#!/usr/bin/env python
"""One broadcast to every WebSocket connection of a ``gogin-server --workers N`` port.

gogin runs as a supervisor and N workers on one port (SO_REUSEPORT).  K client processes (the
open-file limit is per process: each holds at most --per-client connections) open
--connections WebSocket subscribers of one channel in total, with gogin-bench's C load client;
then one ``POST /pub?id=<channel>`` goes to the port, and every client process counts what its
connections received.  The JSON line printed says how many connections each worker holds, how
many received the broadcast once, not at all, or more than once.

It passes only if the workers share channels (``--broker redis``, a Redis on --redis-url): the
POST lands on one worker, and with the memory broker (``--broker memory``, which needs the
GOGIN_WORKERS_ALLOW_MEMORY escape hatch) only that worker's subscribers get it.

  nice -n 19 python benchmarks/workers_broadcast.py --workers 2 --connections 39000 --clients 3
  nice -n 19 python benchmarks/workers_broadcast.py --broker memory --connections 2000  # smoke

Exit status: 0 if every connection that opened received the broadcast exactly once, else 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_SPAN = 5000          # connections per 127.0.0.x source address (as gogin-bench)
FD_RESERVE = 200            # fds a client process keeps for itself
WORKER_FD_RESERVE = 100     # fds a worker keeps past server.max_connections


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# -- a client process --------------------------------------------------------------------------

def client_child(a) -> int:
    """Open a.count subscribers, say how many opened, then count the broadcast on request."""
    from gogin.bench._loadclient import LoadClient
    from gogin.bench.publisher import handshake

    nofile = raise_nofile()
    if a.count + FD_RESERVE > nofile:
        print(json.dumps({"error": f"{a.count} connections need more than RLIMIT_NOFILE "
                                   f"{nofile} - {FD_RESERVE}"}), flush=True)
        return 1
    url = f"http://127.0.0.1:{a.port}/ws/{a.channel}"
    host, port, req = handshake(url)
    client = LoadClient(host, port, [req] * a.count, None,
                        sources=1 + (a.count - 1) // SOURCE_SPAN, max_inflight=a.max_inflight)
    opened, failed, secs = client.connect_all(a.connect_timeout)
    print(json.dumps({"opened": opened, "failed": failed, "seconds": round(secs, 3),
                      "errno": client.first_error or None}), flush=True)
    thread = threading.Thread(target=client.run, args=(1e9, 1.0), daemon=True)
    thread.start()
    for line in sys.stdin:              # "count <seconds>", then "quit"
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        deadline = time.monotonic() + float(cmd[1])
        while client.frames < opened and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)                 # a duplicate would come right behind
        per = client.per_connection_frames()
        print(json.dumps({"frames": client.frames, "open": client.open_connections,
                          "once": sum(1 for n in per if n == 1),
                          "none": sum(1 for n in per if n == 0),
                          "more": sum(1 for n in per if n > 1)}), flush=True)
    client.stop()
    thread.join(5)
    client.close()
    return 0


# -- the run ------------------------------------------------------------------------------------

def gogin_config(a, port: int, per_worker: int) -> str:
    broker = ""
    if a.broker == "redis":
        # a prefix of this run's own: the Redis may be shared
        broker = (f'\n[broker]\ntype = "redis"\nurl = "{a.redis_url}"\n'
                  f'key_prefix = "wb{uuid.uuid4().hex[:12]}"\n')
    return f"""
[server]
listen = ["127.0.0.1:{port}"]
max_connections = {per_worker}
backlog = 4096
log_level = "info"
shutdown_timeout = 2.0
{broker}"""


def wait_log(path: Path, proc, pattern: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            raise SystemExit(f"gogin-server exited {proc.returncode}:\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"no {pattern!r} in gogin's log after {timeout} s:\n{text[-3000:]}")
        time.sleep(0.1)


def per_worker_subscribers(port: int, workers: int, tries: int = 200) -> dict:
    """/channels-stats on new connections until every worker answered: pid -> subscribers."""
    out: dict = {}
    for _ in range(tries):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/channels-stats", timeout=10) as r:
            doc = json.loads(r.read())
        for w in doc["by_worker"]:
            out[str(w["pid"])] = w["subscribers"]
        if len(out) >= workers:
            break
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--connections", type=int, default=39000, help="in total")
    ap.add_argument("--clients", type=int, default=0,
                    help="client processes (0: as few as --per-client allows)")
    ap.add_argument("--per-client", type=int, default=19000,
                    help="most connections of one client process (the fd limit is 20,000)")
    ap.add_argument("--broker", choices=["redis", "memory"], default="redis")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--channel", default="broadcast")
    ap.add_argument("--connect-timeout", type=float, default=120.0)
    ap.add_argument("--deliver-timeout", type=float, default=20.0)
    ap.add_argument("--max-inflight", type=int, default=256)
    ap.add_argument("--json", help="also append the JSON line to this file")
    # a client process (started by the run itself)
    ap.add_argument("--client-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.client_child:
        return client_child(a)

    clients = a.clients or -(-a.connections // a.per_client)
    if -(-a.connections // clients) > a.per_client:
        raise SystemExit(f"{a.connections} connections over {clients} client processes is more "
                         f"than --per-client {a.per_client} each")
    shares = [a.connections // clients + (1 if i < a.connections % clients else 0)
              for i in range(clients)]
    nofile = raise_nofile()             # the workers inherit it
    per_worker = max(1, nofile - WORKER_FD_RESERVE)
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="workers-broadcast-"))
    (tmp / "gogin.toml").write_text(gogin_config(a, port, per_worker))
    log_path = tmp / "gogin.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOGIN_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if a.broker == "memory":
        env["GOGIN_WORKERS_ALLOW_MEMORY"] = "1"      # for the smoke run: no shared channels
    nice = ["nice", "-n", "19"]
    log_fh = open(log_path, "wb")
    gogin = subprocess.Popen(nice + [sys.executable, "-m", "gogin", "--config",
                                     str(tmp / "gogin.toml"), "--workers", str(a.workers)],
                             cwd=ROOT, env=env, stdout=log_fh, stderr=subprocess.STDOUT)
    children: list[subprocess.Popen] = []
    result: dict = {"workers": a.workers, "broker": a.broker, "connections": a.connections,
                    "client_processes": clients, "per_worker_max_connections": per_worker}
    try:
        wait_log(log_path, gogin, rf"{a.workers} workers ready", 60)
        t0 = time.monotonic()
        for n in shares:
            children.append(subprocess.Popen(
                nice + [sys.executable, __file__, "--client-child", "--port", str(port),
                        "--count", str(n), "--channel", a.channel,
                        "--connect-timeout", str(a.connect_timeout),
                        "--max-inflight", str(a.max_inflight)],
                cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        opened = []
        for c in children:
            line = c.stdout.readline()
            if not line:
                raise SystemExit(f"a client process exited {c.wait(10)} before connecting")
            doc = json.loads(line)
            if "error" in doc:
                raise SystemExit(doc["error"])
            opened.append(doc)
        connected = sum(d["opened"] for d in opened)
        result.update(connected=connected, connect_failed=sum(d["failed"] for d in opened),
                      connect_seconds=round(time.monotonic() - t0, 2),
                      connect_errno=next((d["errno"] for d in opened if d["errno"]), None))
        result["per_worker_subscribers"] = per_worker_subscribers(port, a.workers)
        body = f"broadcast {time.time():.6f}".encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/pub?id={a.channel}", data=body,
                                     method="POST")
        t1 = time.monotonic()
        with urllib.request.urlopen(req, timeout=30) as r:
            result["publish_status"] = r.status
        for c in children:
            c.stdin.write(f"count {a.deliver_timeout}\n")
            c.stdin.flush()
        counts = [json.loads(c.stdout.readline()) for c in children]
        result.update(delivery_seconds=round(time.monotonic() - t1, 2),
                      received_once=sum(d["once"] for d in counts),
                      received_none=sum(d["none"] for d in counts),
                      received_more=sum(d["more"] for d in counts),
                      open_after=sum(d["open"] for d in counts))
        # only connections that opened can receive; a failed one counts as missing too
        result["ok"] = (result["received_once"] == a.connections
                        and result["received_more"] == 0)
    finally:
        for c in children:
            try:
                c.stdin.write("quit\n")
                c.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
        for c in children:
            try:
                c.wait(30)
            except subprocess.TimeoutExpired:
                c.kill()
        if gogin.poll() is None:
            gogin.send_signal(signal.SIGTERM)
        try:
            result["gogin_exit"] = gogin.wait(30)
        except subprocess.TimeoutExpired:
            gogin.kill()
            result["gogin_exit"] = gogin.wait(5)
        log_fh.close()
    line = json.dumps(result)
    print(line)
    if a.json:
        with open(a.json, "a") as fh:
            fh.write(line + "\n")
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
