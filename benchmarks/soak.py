"""Soak: a real gogin-server under mixed traffic for a while, its RSS and fd count sampled.

    python benchmarks/soak.py --duration 600 --json soak.json

One gogin-server process (``python -m gogin --config <toml>`` in a temporary directory, the
default locations, loopback only) and, in this process, asyncio clients:

- WebSocket subscribers that connect, read for a few seconds and leave, at a steady rate
  (some ask for stored messages with ``.b5``);
- EventSource subscribers that disconnect and resume with ``Last-Event-ID``;
- long-poll clients that follow ``Last-Modified`` / ``Etag`` and now and then drop their
  connection and resume from the same position on a new one;
- an HTTP publisher at a steady rate over a set of channels (each message with an
  ``Event-Id``), and a second one sending larger messages to the channel of
- slow readers: WebSocket subscribers with a tiny receive buffer that never read, which gogin
  must close as slow consumers (close 1008 ``slow consumer``), next to one reader that keeps up
  on the same channel and must not be closed.

Resumed clients check that they get the message right after the one they saw last (the
channel's message id, ``"id"`` of the default template, is the previous one + 1): no gap, no
repeat.  Every ``--sample`` seconds gogin's VmRSS (/proc/PID/status) and open fds (/proc/PID/fd)
are recorded.  At the end the clients stop, gogin's connections drain, and the fd count is
compared with the one before any client connected.

Exit status 1 if: RSS grew more than --max-growth-mib between the end of the warm-up and the
end, gogin holds more fds than at the start, a slow reader was not closed, the reader that keeps
up was closed, a resume skipped or repeated a message, or a client saw an unexpected error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
SLOW_CHANNEL = "soak-slow"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2)
MSG_ID = re.compile(rb'\{"id":(-?\d+),')       # the default template starts with the id


@dataclass
class Load:
    duration: float
    warmup: float
    sample: float
    channels: int
    ws: int                  # WebSocket subscribers alive at any time
    sse: int
    longpoll: int
    slow: int                # slow readers alive at any time
    rate: float              # publishes/s over the channels
    slow_rate: float         # publishes/s of slow_size bytes to SLOW_CHANNEL
    slow_size: int
    max_backpressure: int
    max_growth_mib: float


@dataclass
class Counts:
    ws_sessions: int = 0
    ws_messages: int = 0
    sse_sessions: int = 0
    sse_messages: int = 0
    lp_answers: int = 0
    lp_timeouts: int = 0
    resumes_checked: int = 0
    resume_errors: list = field(default_factory=list)
    published: int = 0
    publish_errors: int = 0
    slow_started: int = 0
    slow_closed: int = 0         # slow readers gogin closed (EOF after they stopped reading)
    slow_close_frames: int = 0   # ... of which got the close frame 1008 "slow consumer"
    slow_not_closed: int = 0
    keeper_messages: int = 0
    keeper_closed: bool = False
    errors: list = field(default_factory=list)

    def error(self, what: str, e: BaseException):
        if len(self.errors) < 50:                 # keep the report readable
            self.errors.append(f"{what}: {type(e).__name__}: {e}")


# -- the gogin-server process --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gogin(workdir: Path, load: Load) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    cfg = workdir / "soak.toml"
    cfg.write_text(f"""
[server]
listen = ["127.0.0.1:{port}"]
max_connections = 2000
shutdown_timeout = 2.0
log_level = "warning"

[limits]
max_backpressure = {load.max_backpressure}
""")
    log = workdir / "gogin.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOGIN_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "gogin", "--config", str(cfg)],
                                cwd=str(ROOT), env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gogin exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port, log
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"gogin did not listen within 15 s:\n{log.read_text()}")
        time.sleep(0.05)


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def metrics(http, base) -> dict:
    async with http.get(f"{base}/metrics") as r:
        text = await r.text()
    out = {}
    for line in text.splitlines():
        if line.startswith("gogin_"):
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


# -- clients ------------------------------------------------------------------------------------

def msg_ids(data: bytes) -> list:
    """Every message id of a long-poll answer (one or several messages, in order)."""
    return [int(m.group(1)) for m in MSG_ID.finditer(data)]


def msg_id(data: bytes) -> int:
    m = MSG_ID.match(data)
    return int(m.group(1)) if m else 0


class Soak:
    def __init__(self, load: Load, port: int):
        self.load = load
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.counts = Counts()
        self.stopping = asyncio.Event()
        self.rng = random.Random(13)            # the same choices (channels, lifetimes) each run

    def channel(self) -> str:
        return f"soak-{self.rng.randrange(self.load.channels)}"

    async def pause(self, seconds: float) -> bool:
        """Sleep unless the soak ends first; False once it is ending."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        return not self.stopping.is_set()

    def check_resume(self, kind: str, last: int, got: int):
        self.counts.resumes_checked += 1
        if got != last + 1 and len(self.counts.resume_errors) < 50:    # a readable report
            self.counts.resume_errors.append(f"{kind}: after id {last} got {got}")

    # WebSocket subscribers: steady connect/disconnect; lifetime 2-8 s
    async def ws_client(self, http):
        while not self.stopping.is_set():
            ch = self.channel()
            if self.rng.random() < 0.2:
                ch += ".b5"                     # stored messages first, then live ones
            try:
                async with http.ws_connect(f"{self.base.replace('http', 'ws')}/ws/{ch}",
                                           timeout=WS_TIMEOUT) as ws:
                    self.counts.ws_sessions += 1
                    end = time.monotonic() + self.rng.uniform(2, 8)
                    while (left := end - time.monotonic()) > 0 and not self.stopping.is_set():
                        with contextlib.suppress(asyncio.TimeoutError):
                            msg = await ws.receive(timeout=min(left, 1.0))
                            if msg.type == aiohttp.WSMsgType.TEXT:
                                self.counts.ws_messages += 1
                            elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                              aiohttp.WSMsgType.ERROR):
                                raise ConnectionError(f"closed by gogin: {ws.close_code}")
            except Exception as e:
                if not self.stopping.is_set():
                    self.counts.error("websocket", e)
                    await self.pause(1)

    # EventSource: read 2-8 s, disconnect, resume with Last-Event-ID
    async def sse_client(self, http):
        ch = self.channel()
        last_event, last_id = None, 0
        while not self.stopping.is_set():
            headers = {"Last-Event-ID": last_event} if last_event else {}
            resumed = last_event is not None
            try:
                async with http.get(f"{self.base}/ev/{ch}", headers=headers) as r:
                    if r.status != 200:
                        raise ConnectionError(f"status {r.status}")
                    self.counts.sse_sessions += 1
                    end = time.monotonic() + self.rng.uniform(2, 8)
                    event_id = None
                    while (left := end - time.monotonic()) > 0 and not self.stopping.is_set():
                        try:
                            line = await asyncio.wait_for(r.content.readline(), min(left, 1.0))
                        except asyncio.TimeoutError:
                            continue
                        if not line:
                            raise ConnectionError("stream ended")
                        if line.startswith(b"id: "):
                            event_id = line[4:].strip().decode()
                        elif line.startswith(b"data: "):
                            got = msg_id(line[6:])
                            if resumed:
                                self.check_resume("eventsource", last_id, got)
                                resumed = False
                            last_event, last_id = event_id, got
                            self.counts.sse_messages += 1
            except Exception as e:
                if not self.stopping.is_set():
                    self.counts.error("eventsource", e)
                    await self.pause(1)

    # long-polling: follow Last-Modified/Etag; every 3-10 answers a new connection (session)
    # that resumes from the same position
    async def longpoll_client(self):
        ch = self.channel()
        since, tag, last_id = None, None, 0
        timeout = aiohttp.ClientTimeout(total=40)        # > the 30 s long-poll wait
        while not self.stopping.is_set():
            try:
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    for _ in range(self.rng.randint(3, 10)):
                        headers = {"If-Modified-Since": since, "If-None-Match": tag} \
                            if since else {}
                        async with http.get(f"{self.base}/lp/{ch}", headers=headers) as r:
                            body = await r.read()
                            if r.status == 304:
                                self.counts.lp_timeouts += 1
                                continue
                            if r.status != 200:
                                raise ConnectionError(f"status {r.status}")
                            # an answer holds every message stored after the position
                            ids = msg_ids(body)
                            if since is not None:
                                for got in ids:
                                    self.check_resume("long-poll", last_id, got)
                                    last_id = got
                            since, tag = r.headers["Last-Modified"], r.headers["Etag"]
                            last_id = ids[-1] if ids else last_id
                            self.counts.lp_answers += 1
                        if self.stopping.is_set():
                            break
            except Exception as e:
                if not self.stopping.is_set():
                    self.counts.error("long-poll", e)
                    await self.pause(1)

    async def publisher(self, http, rate: float, pick, size: int, tag: str):
        """rate publishes/s, each due at start + k / rate (a late one is sent at once)."""
        start = time.monotonic()
        k = 0
        body = b"x" * size
        pending: set = set()

        async def one(ch, n):
            try:
                async with http.post(f"{self.base}/pub", params={"id": ch}, data=body,
                                     headers={"Event-Id": f"{tag}{n}",
                                              # aiohttp's default for bytes is
                                              # octet-stream: gogin would send binary frames
                                              "Content-Type": "text/plain"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise ConnectionError(f"status {r.status}")
                    self.counts.published += 1
            except Exception as e:
                if not self.stopping.is_set():
                    self.counts.publish_errors += 1
                    self.counts.error("publish", e)

        while not self.stopping.is_set():
            due = start + k / rate
            now = time.monotonic()
            if due > now and not await self.pause(due - now):
                break
            if len(pending) < 64:               # never an unbounded pile of requests
                t = asyncio.ensure_future(one(pick(), k))
                pending.add(t)
                t.add_done_callback(pending.discard)
            k += 1
        await asyncio.gather(*pending)

    # slow readers: a 4 KiB receive buffer, never read while subscribed
    async def slow_reader(self):
        while not self.stopping.is_set():
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            writer = None
            try:
                await asyncio.wait_for(asyncio.get_running_loop().sock_connect(
                    sock, ("127.0.0.1", self.port)), 5)
                reader, writer = await asyncio.open_connection(sock=sock)
                writer.write(f"GET /ws/{SLOW_CHANNEL} HTTP/1.1\r\nHost: soak\r\n"
                             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                             f"Sec-WebSocket-Key: {WS_KEY}\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                if not head.startswith(b"HTTP/1.1 101"):
                    raise ConnectionError(head[:40])
                self.counts.slow_started += 1
                # read nothing for a while: gogin's queue for it passes max_backpressure
                stopped = not await self.pause(self.slow_life)
                if stopped:
                    break
                # then read what is left: the close frame and EOF if gogin closed it
                data = b""
                with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
                    async with asyncio.timeout(10):
                        while chunk := await reader.read(1 << 20):
                            data += chunk[-4096:]       # the end is what matters
                            data = data[-8192:]
                # gogin drops the queue of a slow consumer and queues the close frame; it
                # reaches the client only if the socket buffer takes it before the linger
                # time ends, so EOF is the proof, the frame a bonus
                if reader.at_eof():
                    self.counts.slow_closed += 1
                    self.counts.slow_close_frames += b"\x88\x0f\x03\xf0slow consumer" in data
                else:
                    self.counts.slow_not_closed += 1
            except Exception as e:
                if not self.stopping.is_set():
                    self.counts.error("slow reader", e)
                    await self.pause(1)
            finally:
                if writer is not None:
                    writer.close()
                else:
                    sock.close()

    # the reader that keeps up on the slow readers' channel: it must never be closed
    async def keeper(self, http):
        try:
            async with http.ws_connect(f"{self.base.replace('http', 'ws')}/ws/{SLOW_CHANNEL}",
                                       max_msg_size=0, timeout=WS_TIMEOUT) as ws:
                while not self.stopping.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        msg = await ws.receive(timeout=1.0)
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self.counts.keeper_messages += 1
                        elif msg.type != aiohttp.WSMsgType.BINARY:
                            self.counts.keeper_closed = True
                            self.counts.errors.append(f"keeper: {msg.type.name} {ws.close_code}")
                            return
        except Exception as e:
            self.counts.keeper_closed = True
            self.counts.error("keeper", e)

    @property
    def slow_life(self) -> float:
        # long enough to fill the budget and the socket buffers several times over
        return min(20.0, max(10.0, self.load.duration / 4))


# -- the run ------------------------------------------------------------------------------------

def slope_kib_per_min(samples) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 2:
        return 0.0
    ts = [s["t"] for s in samples]
    rs = [s["rss_kib"] for s in samples]
    mt, mr = sum(ts) / len(ts), sum(rs) / len(rs)
    var = sum((t - mt) ** 2 for t in ts)
    return 60 * sum((t - mt) * (r - mr) for t, r in zip(ts, rs)) / var if var else 0.0


def median(values):
    v = sorted(values)
    return v[len(v) // 2]


async def run(load: Load, proc, port: int) -> dict:
    soak = Soak(load, port)
    pid = proc.pid
    # subscribers' reads have their own bounds; connects and the heads of answers have these
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=40)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=timeout) as http, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10),
                                  connector=aiohttp.TCPConnector(limit=8)) as pub:
        start_fds, start_rss = fd_count(pid), rss_kib(pid)
        cpu0, own0 = cpu_seconds(pid), time.process_time()
        t0 = time.monotonic()
        chans = [f"soak-{i}" for i in range(load.channels)]
        rr = itertools.cycle(chans)
        tasks = [asyncio.ensure_future(t) for t in (
            soak.keeper(http),
            soak.publisher(pub, load.rate, lambda: next(rr), 100, "e"),
            soak.publisher(pub, load.slow_rate, lambda: SLOW_CHANNEL, load.slow_size, "s"))]
        # ramp the clients up over the first seconds instead of one connect burst
        starters = [soak.ws_client(http) for _ in range(load.ws)] \
            + [soak.sse_client(http) for _ in range(load.sse)] \
            + [soak.longpoll_client() for _ in range(load.longpoll)] \
            + [soak.slow_reader() for _ in range(load.slow)]
        random.Random(1).shuffle(starters)
        ramp = min(5.0, load.warmup / 2)
        total = len(starters)
        samples = []
        next_sample = 0.0
        while (elapsed := time.monotonic() - t0) < load.duration:
            while starters and elapsed >= ramp * (total - len(starters)) / total:
                tasks.append(asyncio.ensure_future(starters.pop()))
            if elapsed >= next_sample:
                m = await metrics(pub, soak.base)
                samples.append({"t": round(elapsed, 1), "rss_kib": rss_kib(pid),
                                "fds": fd_count(pid),
                                "connections": int(m.get("gogin_connections", 0)),
                                "published": int(m.get("gogin_published_total", 0)),
                                "closed_slow": int(m.get("gogin_closed_slow_total", 0))})
                print_sample(samples[-1], header=len(samples) == 1)
                next_sample += load.sample
            await asyncio.sleep(min(0.2, max(0.0, next_sample - elapsed)))
        samples.append({"t": round(time.monotonic() - t0, 1), "rss_kib": rss_kib(pid),
                        "fds": fd_count(pid)})
        cpu = cpu_seconds(pid) - cpu0
        own = time.process_time() - own0
        closed_slow = int((await metrics(pub, soak.base)).get("gogin_closed_slow_total", 0))
        soak.stopping.set()
        # clients end their session at the next bounded wait (1 s); a long-poll waiting for a
        # message that will not come, or a slow reader reading its backlog, is cut short
        _, late = await asyncio.wait(tasks, timeout=3)
        for t in late:
            t.cancel()
        await asyncio.gather(*late, return_exceptions=True)
    # every client is gone: gogin's connections (and fds) must come back to the start
    deadline = time.monotonic() + 15
    while fd_count(pid) > start_fds and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    end_fds = fd_count(pid)
    elapsed = samples[-1]["t"]
    after = [s for s in samples if s["t"] >= load.warmup]
    warm = [s["rss_kib"] for s in samples if abs(s["t"] - load.warmup) <= load.sample * 1.5]
    rss_warm = median(warm) if warm else after[0]["rss_kib"]
    rss_end = median([s["rss_kib"] for s in samples[-3:]])
    c = soak.counts
    return {
        "conditions": {**load.__dict__, "nproc": os.cpu_count(),
                       "cpu": cpu_model(), "kernel": os.uname().release,
                       "python": sys.version.split()[0],
                       "nice": os.nice(0)},
        "elapsed_s": elapsed,
        "gogin_cpu_percent": round(100 * cpu / elapsed, 1),
        "client_cpu_percent": round(100 * own / elapsed, 1),
        "rss_kib": {"start": start_rss, "after_warmup": rss_warm, "end": rss_end,
                    "max": max(s["rss_kib"] for s in samples)},
        "rss_growth_after_warmup_kib": rss_end - rss_warm,
        "rss_slope_after_warmup_kib_per_min": round(slope_kib_per_min(after), 1),
        "fds": {"start": start_fds, "end_under_load": samples[-1]["fds"],
                "end_after_drain": end_fds, "max": max(s["fds"] for s in samples)},
        "counts": c.__dict__,
        "gogin_closed_slow_total": closed_slow,
        "samples": samples,
    }


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return "?"


def print_sample(s: dict, header: bool):
    if header:
        print(f"{'t (s)':>7} {'RSS (MiB)':>10} {'fds':>6} {'conns':>6} {'published':>10} "
              f"{'closed slow':>12}", flush=True)
    print(f"{s['t']:7.1f} {s['rss_kib'] / 1024:10.1f} {s['fds']:6d} {s['connections']:6d} "
          f"{s['published']:10d} {s['closed_slow']:12d}", flush=True)


def verdict(result: dict, load: Load) -> list[str]:
    """Why the soak failed (empty: it passed)."""
    bad = []
    c = result["counts"]
    growth = result["rss_growth_after_warmup_kib"] / 1024
    if growth > load.max_growth_mib:
        bad.append(f"RSS grew {growth:.1f} MiB after the warm-up (bound {load.max_growth_mib})")
    fds = result["fds"]
    if fds["end_after_drain"] > fds["start"]:
        bad.append(f"fds leak: {fds['start']} at the start, {fds['end_after_drain']} at the end")
    if c["slow_not_closed"] or not c["slow_closed"]:
        bad.append(f"slow readers: {c['slow_closed']} closed as slow consumers, "
                   f"{c['slow_not_closed']} not")
    if result["gogin_closed_slow_total"] < c["slow_closed"]:
        bad.append(f"gogin counted {result['gogin_closed_slow_total']} slow consumers, "
                   f"the clients saw {c['slow_closed']} closed")
    if c["keeper_closed"] or not c["keeper_messages"]:
        bad.append(f"the reader that keeps up was closed or got nothing "
                   f"({c['keeper_messages']} messages)")
    if c["resume_errors"]:
        bad.append(f"resumes that skipped or repeated: {c['resume_errors'][:5]}")
    if not c["resumes_checked"]:
        bad.append("no resume was checked")
    if c["errors"]:
        bad.append(f"client errors: {c['errors'][:5]}")
    for key in ("ws_messages", "sse_messages", "lp_answers", "published"):
        if not c[key]:
            bad.append(f"no {key}")
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS must be flat")
    p.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--channels", type=int, default=50)
    p.add_argument("--ws", type=int, default=300, help="WebSocket subscribers at any time")
    p.add_argument("--sse", type=int, default=40, help="EventSource subscribers")
    p.add_argument("--longpoll", type=int, default=40, help="long-poll clients")
    p.add_argument("--slow", type=int, default=4, help="slow readers at any time")
    p.add_argument("--rate", type=float, default=200.0, help="publishes/s (100-byte bodies)")
    p.add_argument("--slow-rate", type=float, default=40.0,
                   help="publishes/s to the slow readers' channel")
    p.add_argument("--slow-size", type=int, default=32768, help="bytes of those publishes")
    p.add_argument("--max-backpressure", type=int, default=1 << 20,
                   help="gogin's limits.max_backpressure (its default: 1 MiB)")
    p.add_argument("--max-growth-mib", type=float, default=8.0,
                   help="RSS growth allowed between the end of the warm-up and the end")
    p.add_argument("--json", help="write the result (and every sample) here")
    args = p.parse_args(argv)
    load = Load(duration=args.duration, warmup=args.warmup, sample=args.sample,
                channels=args.channels, ws=args.ws, sse=args.sse, longpoll=args.longpoll,
                slow=args.slow, rate=args.rate, slow_rate=args.slow_rate,
                slow_size=args.slow_size, max_backpressure=args.max_backpressure,
                max_growth_mib=args.max_growth_mib)
    if load.warmup >= load.duration:
        p.error("--warmup must be shorter than --duration")
    with tempfile.TemporaryDirectory(prefix="gogin-soak-") as tmp:
        proc, port, log = start_gogin(Path(tmp), load)
        try:
            result = asyncio.run(run(load, proc, port))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    rc = proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    rc = proc.wait(5)
            else:
                rc = proc.returncode
            gogin_log = log.read_text(errors="replace")
    result["gogin_exit"] = rc
    result["failures"] = verdict(result, load)
    if rc != 0:
        result["failures"].append(f"gogin exited {rc}: {gogin_log[-2000:]}")
    print_summary(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 1 if result["failures"] else 0


def print_summary(r: dict):
    rss, fds, c = r["rss_kib"], r["fds"], r["counts"]
    print(f"\n{r['elapsed_s']:.0f} s; gogin CPU {r['gogin_cpu_percent']} % of a core, "
          f"clients {r['client_cpu_percent']} %")
    print(f"RSS MiB: start {rss['start'] / 1024:.1f}, after warm-up "
          f"{rss['after_warmup'] / 1024:.1f}, end {rss['end'] / 1024:.1f}, max "
          f"{rss['max'] / 1024:.1f}; growth after warm-up "
          f"{r['rss_growth_after_warmup_kib']} KiB, slope "
          f"{r['rss_slope_after_warmup_kib_per_min']} KiB/min")
    print(f"fds: start {fds['start']}, max {fds['max']}, end under load {fds['end_under_load']}, "
          f"after the clients left {fds['end_after_drain']}")
    print(f"WebSocket sessions {c['ws_sessions']} ({c['ws_messages']} messages), EventSource "
          f"sessions {c['sse_sessions']} ({c['sse_messages']}), long-poll answers "
          f"{c['lp_answers']} ({c['lp_timeouts']} timeouts), resumes checked "
          f"{c['resumes_checked']} ({len(c['resume_errors'])} wrong), published "
          f"{c['published']} ({c['publish_errors']} errors)")
    print(f"slow readers: {c['slow_started']} started, {c['slow_closed']} closed as slow "
          f"consumers, {c['slow_not_closed']} not; keeper got {c['keeper_messages']} messages, "
          f"closed: {c['keeper_closed']}")
    for f in r["failures"]:
        print(f"FAIL: {f}")
    if not r["failures"]:
        print("PASS")


if __name__ == "__main__":
    sys.exit(main())
