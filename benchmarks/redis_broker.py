"""The Redis broker's two paths, measured against Redis itself.

  python benchmarks/redis_broker.py drain   [--messages 200000] [--subscribers 0|1]
  python benchmarks/redis_broker.py publish [--messages 200000]
  python benchmarks/redis_broker.py fanout  [--sweep 2000,5000,10000] [--subscribers 1000]

drain: a gogin node (pinned to --node-cpu) holds one channel; a Lua loop in Redis publishes
  --messages envelopes to it (numbered like the publish script does, in EVAL calls of
  --batch); the node's CPU time (utime + stime of /proc/PID/stat) from the first to the last
  message received, per message.  With --subscribers 1 an EventSource subscriber (a socket
  drained by this process) receives every message: the cost of the fanout to one is in.
publish: a publisher WebSocket (JSON arrays of --batch items, built beforehand) sends
  --messages publishes to a gogin node, each one a call of the publish script; the rate at
  which Redis's count for the channel grows.  Then redis-benchmark runs the same script with
  the same arguments (EVALSHA, pipelined -P 64), on the same Redis, in the same run.
fanout: gogin-bench's fanout scenario with the subscribers on node B (pinned to --node-cpu)
  and the publishes on node A (pinned to --redis-cpu, with Redis): every message crosses Redis;
  then the same sweep on one gogin node with the memory broker, in the same run.

Redis: one started here (no persistence) pinned to --redis-cpu; the node and this client on
--node-cpu.  Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")

INJECT_LUA = """
local meta, chan, n, payload = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local epoch = tonumber(redis.call('HGET', meta, 'e'))
local now = tonumber(redis.call('TIME')[1])
for i = 1, n do
  local id = redis.call('HINCRBY', meta, 's', 1)
  redis.call('PUBLISH', chan, struct.pack('>BBHHHI8I8I8I4', 1, 0, 0, 0, 0, epoch, id, now, i)
                              .. payload)
end
return n
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def redis_cmd(port: int, *args) -> bytes:
    import hiredis
    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(hiredis.pack_command(args))
        while True:
            reader.feed(s.recv(1 << 20))
            r = reader.gets()
            if r is not False:
                return r


class Procs:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="gogin-redis-bench-"))
        self.redis_port = free_port()
        self.node_port = free_port()
        self.prefix = f"b{int(time.time())}"
        self.procs = []

    def start(self):
        a = self.args
        self.procs.append(subprocess.Popen(
            ["taskset", "-c", str(a.redis_cpu), "redis-server", "--port", str(self.redis_port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL))
        self._wait(self.redis_port)
        self.node = self._node(self.node_port, a.node_cpu, a.what == "fanout")
        os.sched_setaffinity(0, {a.node_cpu})
        return self

    def start_node(self, cpu: int, bench: bool = False) -> int:
        """Another node of the same Redis and prefix; returns its port."""
        port = free_port()
        self._node(port, cpu, bench)
        return port

    def _node(self, port: int, cpu: int, bench: bool = False):
        a = self.args
        cfg = self.tmp / f"node{port}.toml"
        if bench:
            # gogin-bench's locations (raw ~text~ subscribers the load client reads), /pub
            import msgspec
            from gogin.bench.target_gogin import bench_config
            doc = msgspec.toml.decode(bench_config(port).encode())
            doc["locations"].append({"path": "/pub", "role": "publisher", "channels": "query",
                                     "channel_info_on_publish": False})
            doc["broker"] = {"type": "redis", "url": f"redis://127.0.0.1:{self.redis_port}/0",
                             "key_prefix": self.prefix}
            cfg.write_text(msgspec.toml.encode(doc).decode())
        else:
            cfg.write_text(
                f'[server]\nlisten = ["127.0.0.1:{port}"]\nlog_level = "warning"\n'
                f'[broker]\ntype = "redis"\nurl = "redis://127.0.0.1:{self.redis_port}/0"\n'
                f'key_prefix = "{self.prefix}"\n'
                f'[limits]\nmax_messages_stored_per_channel = {a.stored}\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("GOGIN_")}
        node = subprocess.Popen(
            ["taskset", "-c", str(cpu), sys.executable, "-m", "gogin", "--config",
             str(cfg)], cwd=ROOT, env=env)
        self.procs.append(node)
        self._wait(port)
        return node

    def _wait(self, port):
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nothing listens on {port}")

    def stop(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def delivered(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    m = re.search(r"^gogin_broker_delivered_total ([0-9.e+]+)$", body, re.M)
    return int(float(m.group(1))) if m else 0


async def drain(p: Procs) -> dict:
    a = p.args
    chan = "drain"
    # a subscriber makes the node subscribe the channel and load its numbering
    reader, writer = await asyncio.open_connection("127.0.0.1", p.node_port)
    writer.write(f"GET /ev/{chan} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    publish = ROOT / "gogin" / "brokers" / "redis_publish.lua"
    sha = redis_cmd(p.redis_port, "SCRIPT", "LOAD", publish.read_text()).decode()
    redis_cmd(p.redis_port, "EVALSHA", sha, "3", f"{p.prefix}:clock", f"{p.prefix}:m:{chan}",
              f"{p.prefix}:h:{chan}", "0", "0", "0", "0", "", "", "first",
              f"{p.prefix}:c:", chan)
    got = 0

    async def sink():
        nonlocal got
        while True:
            data = await reader.read(1 << 20)
            if not data:
                return
            got += data.count(b"\n\n")

    task = None
    if a.subscribers:
        task = asyncio.ensure_future(sink())
    else:
        writer.close()                 # the channel stays held (and subscribed) until swept
    await asyncio.sleep(0.5)
    base = await delivered(p.node_port)
    payload = "x" * a.size
    inject = redis_cmd(p.redis_port, "SCRIPT", "LOAD", INJECT_LUA).decode()
    cpu0 = cpu_seconds(p.node.pid)
    t0 = time.monotonic()
    loop = asyncio.get_running_loop()
    for _ in range(a.messages // a.batch):
        await loop.run_in_executor(None, redis_cmd, p.redis_port, "EVALSHA", inject, "1",
                                   f"{p.prefix}:m:{chan}", f"{p.prefix}:c:{chan}",
                                   str(a.batch), payload)
    target = base + (a.messages // a.batch) * a.batch
    while await delivered(p.node_port) < target and time.monotonic() - t0 < 120:
        await asyncio.sleep(0.05)
    cpu = cpu_seconds(p.node.pid) - cpu0
    n = await delivered(p.node_port) - base
    if task is not None:
        task.cancel()
    return {"benchmark": "drain", "messages": n, "node_cpu_s": round(cpu, 3),
            "msgs_per_cpu_s": round(n / cpu) if cpu else None,
            "us_per_msg": round(cpu / n * 1e6, 2) if n else None,
            "subscribers": a.subscribers, "payload_bytes": a.size,
            "wall_s": round(time.monotonic() - t0, 2)}


async def publish(p: Procs) -> dict:
    import websockets
    a = p.args
    chan = "pubrate"
    item = json.dumps({"id": chan, "text": "x" * a.size})
    frame = "[" + ",".join([item] * a.batch) + "]"
    frames = a.messages // a.batch
    meta = f"{p.prefix}:m:{chan}"
    ws = await websockets.connect(f"ws://127.0.0.1:{p.node_port}/pub", max_queue=None)
    cpu0 = cpu_seconds(p.node.pid)
    t0 = time.monotonic()
    for _ in range(frames):
        await ws.send(frame)
    total = frames * a.batch
    while time.monotonic() - t0 < 120:
        s = redis_cmd(p.redis_port, "HGET", meta, "s")
        if s is not None and int(s) >= total:
            break
        await asyncio.sleep(0.01)
    took = time.monotonic() - t0
    node_cpu = cpu_seconds(p.node.pid) - cpu0
    await ws.close()
    gogin_rate = total / took
    # the same script, the same arguments, straight from redis-benchmark
    sha = redis_cmd(p.redis_port, "SCRIPT", "LOAD",
                    (ROOT / "gogin" / "brokers" / "redis_publish.lua").read_text()).decode()
    out = subprocess.run(
        ["taskset", "-c", str(a.node_cpu), "redis-benchmark", "-p", str(p.redis_port), "-n",
         str(a.messages), "-P", "64", "-c", "4", "-q", "EVALSHA", sha, "3", f"{p.prefix}:clock",
         f"{p.prefix}:m:rb", f"{p.prefix}:h:rb", str(a.stored), "0", "0", "0", "", "",
         "x" * a.size, f"{p.prefix}:c:", "rb"],
        capture_output=True, text=True).stdout
    m = re.findall(r"([0-9.]+) requests per second", out)
    rb = float(m[-1]) if m else None
    return {"benchmark": "publish", "messages": total, "gogin_publishes_per_s": round(gogin_rate),
            "gogin_node_cpu_s": round(node_cpu, 2),
            "redis_benchmark_evalsha_per_s": rb,
            "ratio": round(gogin_rate / rb, 2) if rb else None,
            "payload_bytes": a.size, "stored_per_channel": a.stored}


def fanout(p: Procs) -> dict:
    a = p.args
    node_a = p.start_node(a.redis_cpu, bench=True)
    common = ["--scenario", "fanout", "--subscribers", str(a.subscribers), "--channels", "1",
              "--sweep", a.sweep, "--duration", "5", "--size", str(a.size),
              "--client-cpu", str(a.redis_cpu), "--progress", "off",
              "--pub-connections", "4", "--pub-window", "64"]
    out = {}
    for name, extra in (
            ("cross_node", ["--target", f"http://127.0.0.1:{p.node_port}/bws/{{channel}}",
                            "--pub-target", f"http://127.0.0.1:{node_a}", "--publish", "http"]),
            ("one_node_memory", ["--target", "gogin", "--server-cpu", str(a.node_cpu),
                                 "--publish", "http"])):
        js = p.tmp / f"{name}.json"
        subprocess.run([sys.executable, "-m", "gogin.bench.cli", *common, *extra, "--json",
                        str(js)], cwd=ROOT, check=False, stdout=subprocess.DEVNULL)
        steps = [json.loads(line) for line in js.read_text().splitlines() if line.strip()] \
            if js.exists() else []
        passed = [st for st in steps if st.get("pass")]
        best = max(passed, key=lambda st: st["delivered_per_s"]) if passed else None
        out[name] = {"best": {k: best.get(k) for k in (
            "rate_target", "publishes_per_s", "delivered_per_s", "loss", "p99_ms",
            "client_cpu_pct", "server_cpu_pct")} if best else None,
            "steps": [(st["rate_target"], round(st["delivered_per_s"]), st["pass"])
                      for st in steps]}
    return {"benchmark": "fanout", **out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["drain", "publish", "fanout"])
    ap.add_argument("--sweep", default="2000,5000,10000")
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--subscribers", type=int, default=None,
                    help="drain: 0 or 1 (default 1); fanout: subscribers on node B (1000)")
    ap.add_argument("--stored", type=int, default=100,
                    help="limits.max_messages_stored_per_channel (history in Redis too)")
    ap.add_argument("--node-cpu", type=int, default=0)
    ap.add_argument("--redis-cpu", type=int, default=1)
    a = ap.parse_args()
    if a.subscribers is None:
        a.subscribers = 1000 if a.what == "fanout" else 1
    if a.what == "drain" and a.subscribers not in (0, 1):
        ap.error("drain: --subscribers is 0 or 1")
    p = Procs(a).start()
    try:
        if a.what == "fanout":
            res = fanout(p)
        else:
            res = asyncio.run(drain(p) if a.what == "drain" else publish(p))
    finally:
        p.stop()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
