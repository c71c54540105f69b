"""gogin-bench: load a WebSocket notification server and measure delivery.

A run = one target (gogin started here, a peer from gogin.bench.peers, or a URL), N
subscriber connections over K channels held by the C load client (gogin.bench._loadclient,
its receive loop in a thread with the GIL released), and a publisher (HTTP keep-alive POST or
a WebSocket) driven by a token schedule at each rate of the sweep.  After each step's publish
phase a drain period waits for the stragglers; then

  expected = sum over channels of (acknowledged publishes x open subscribers)
  loss     = expected - received          (any non-zero loss: exit code 1)

Output: a progress line on stderr, one JSON line per step (--json), a markdown table
(--markdown), a PNG plot (--plot): delivered msgs/s and p99 against the publish rate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import threading
from urllib.parse import urlsplit
import time

PRESETS = {
    # name: subscribers, channels, size, sweep (publishes/s), criterion
    "fanout": dict(subscribers=1000, channels=1, size=100,
                   sweep="25,50,100,200,400,1000,2000,4000,8000,12000,14000,16000,20000"),
    "wide": dict(subscribers=10000, channels=1, size=100,
                 sweep="5,10,20,40,100,200,400,800,1200,1600,2000"),
    "routing": dict(subscribers=10000, channels=10000, size=100,
                    sweep="5000,10000,20000,40000,60000,80000,100000,150000,200000"),
    "capacity": dict(subscribers=0, channels=1, size=100, sweep="1"),   # 0: up to the fd limit
}
P99_LIMIT_MS = 100.0         # a step "passes" with zero loss and p99 below this
RATE_REACHED = 0.95          # a step passes only if it published at 95 % of its rate or more
FD_RESERVE = 200             # fds kept for the interpreter, the publisher, the selector
SOURCE_SPAN = 5000          # connections per 127.0.0.x source address: connect() searches
                            # the ephemeral ports of its source address, and that search
                            # slows down as the range fills (19.8k from one address: 700/s)
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- process measurements -----------------------------------------------------------------------

def proc_cpu(pids) -> float | None:
    """utime + stime (seconds) of the processes, from /proc/PID/stat."""
    total, seen = 0.0, False
    for pid in pids or ():
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        seen = True
    return total if seen else None


def proc_rss(pids) -> int | None:
    """Resident set size (bytes) of the processes, from /proc/PID/status."""
    total, seen = 0, False
    for pid in pids or ():
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        seen = True
        except OSError:
            continue
    return total if seen else None


def self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


# -- targets ------------------------------------------------------------------------------------

def make_target(spec: str, pub_mode: str, pub_target: str | None = None):
    from gogin.bench.target_gogin import GoginTarget, UrlTarget
    if spec == "gogin":
        return GoginTarget(pub_mode=pub_mode)
    if spec.startswith(("http://", "ws://")):
        # a path in the URL is the subscribers' ('{channel}' replaced): /subscribe/{channel}
        parts = urlsplit(spec)
        if parts.path not in ("", "/"):
            sub = parts.path + (f"?{parts.query}" if parts.query else "")
            return UrlTarget(f"{parts.scheme}://{parts.netloc}", sub_path=sub,
                             pub_url=pub_target)
        return UrlTarget(spec, pub_url=pub_target)
    try:
        from gogin.bench.peers import PEERS
    except ImportError as e:
        raise SystemExit(f"gogin-bench: peers unavailable ({e})")
    if spec not in PEERS:
        raise SystemExit(f"gogin-bench: unknown target {spec!r}; "
                         f"choose gogin, a URL or one of {', '.join(sorted(PEERS))}")
    cls = PEERS[spec]
    ok, why = cls.available()
    if not ok:
        raise SystemExit(f"gogin-bench: target {spec} is not available: {why}")
    try:
        return cls(pub_mode=pub_mode)
    except TypeError:
        return cls()


def target_pids(t) -> list[int]:
    if hasattr(t, "pids"):
        return list(t.pids())
    return [t.pid] if getattr(t, "pid", None) else []


# -- the run ------------------------------------------------------------------------------------

def parse_rates(a) -> list[float]:
    if a.rate is not None:
        return [float(a.rate)]
    if "," in a.sweep:
        return [float(x) for x in a.sweep.split(",") if x.strip()]
    parts = a.sweep.split(":")
    if len(parts) == 1:
        return [float(parts[0])]
    lo, hi, steps = float(parts[0]), float(parts[1]), int(parts[2])
    if steps <= 1:
        return [lo]
    return [lo + (hi - lo) * i / (steps - 1) for i in range(steps)]


class Progress:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.text = ""

    def show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r" + text[:150].ljust(len(self.text[:150])))
            sys.stderr.flush()
            self.text = text

    def done(self) -> None:
        if self.enabled and self.text:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.text = ""


async def _progress_task(prog: Progress, client, label: str, t0: float, total: float,
                         res_ref: dict) -> None:
    last_f, last_t = client.frames, time.monotonic()
    while True:
        await asyncio.sleep(0.25)
        now = time.monotonic()
        f = client.frames
        rate = (f - last_f) / max(now - last_t, 1e-9)
        last_f, last_t = f, now
        frac = min(1.0, (now - t0) / total) if total > 0 else 1.0
        bar = "#" * int(frac * 20)
        pub = res_ref.get("pub")
        prog.show(f"{label} [{bar:<20}] {now - t0:5.1f}s  recv {f:,} ({rate:,.0f}/s)"
                  + f"  pub {pub.acked if pub else client.pub_progress():,}")


async def run_step(a, client, rate: float, pids, prog: Progress, step_no: int,
                   nsteps: int, count: int | None = None) -> dict:
    from gogin.bench.publisher import result as pub_result
    open_per_ch = client.open_per_channel()
    recv_ch0 = client.per_channel_frames()
    st0 = client.stats()
    client.reset_latency()
    cpu_c0, cpu_s0 = self_cpu(), proc_cpu(pids)
    t0 = time.monotonic()
    ref: dict = {}
    label = f"[{step_no}/{nsteps}] {rate:,.0f} pub/s"
    ptask = asyncio.ensure_future(
        _progress_task(prog, client, label, t0, a.duration + a.drain, ref))
    try:
        client.pub_start(rate, a.duration, count)
        # the C publisher runs in the receive loop's thread; the step ends when every due
        # message is acknowledged (or a publisher connection broke)
        limit = t0 + a.duration + a.drain + 60.0
        while (d := client.pub_result()) is None:
            if time.monotonic() > limit:
                raise SystemExit("gogin-bench: the publisher did not finish its step "
                                 f"(queued {client.pub_progress():,} messages)")
            await asyncio.sleep(0.01)
        res = pub_result(d)
        ref["pub"] = res
        t_pub = time.monotonic()
        expected = sum(n * o for n, o in zip(res.per_channel, open_per_ch))
        # drain: wait until everything expected arrived (plus a short grace for duplicates),
        # or the drain period is over
        received = client.frames - st0["frames"]
        t_all = None
        deadline = t_pub + a.drain
        while time.monotonic() < deadline:
            received = client.frames - st0["frames"]
            if received >= expected and t_all is None:
                t_all = time.monotonic()
                deadline = min(deadline, t_all + 0.2)
            await asyncio.sleep(0.01)
        received = client.frames - st0["frames"]
    finally:
        ptask.cancel()
    t_end = t_all if t_all is not None else time.monotonic()
    wall = t_end - t0
    cpu_c1, cpu_s1 = self_cpu(), proc_cpu(pids)
    st1 = client.stats()
    lat = client.latency()
    recv_ch1 = client.per_channel_frames()
    loss = expected - received
    ms = lambda v: None if v is None else v / 1e6   # noqa: E731
    row = {
        "rate_target": rate,
        "publishes": res.acked,
        "publish_errors": res.errors,
        "publish_error": res.last_error or None,
        "publisher": a.pub_kind,
        "publishes_per_s": res.acked / res.seconds if res.seconds > 0 else None,
        "publish_seconds": res.seconds,
        "expected": expected,
        "received": received,
        "loss": loss,
        "delivered_per_s": received / wall if wall > 0 else None,
        "delivery_seconds": wall,
        "drained": t_all is not None,
        "channels_short": sum(1 for c, (x, y) in enumerate(zip(recv_ch0, recv_ch1))
                              if (y - x) != res.per_channel[c] * open_per_ch[c]),
        "p50_ms": ms(lat["p50"]), "p90_ms": ms(lat["p90"]), "p99_ms": ms(lat["p99"]),
        "p999_ms": ms(lat["p999"]), "max_ms": ms(lat["max"]), "latency_samples": lat["count"],
        "unstamped": st1["unstamped"],
        "disconnects": st1["disconnects"] - st0["disconnects"],
        "close_frames": st1["close_frames"] - st0["close_frames"],
        "pings": st1["pings"] - st0["pings"],
        "client_cpu_pct": 100 * (cpu_c1 - cpu_c0) / wall if wall > 0 else None,
        "server_cpu_pct": (100 * (cpu_s1 - cpu_s0) / wall
                           if cpu_s0 is not None and cpu_s1 is not None and wall > 0 else None),
        "server_rss_bytes": proc_rss(pids),
    }
    # the rate must have been sustained too: a publisher that fell behind the schedule (the
    # server answered too slowly, or the HTTP window bounds it) did not publish at this rate
    row["rate_reached"] = (count is not None or row["publishes_per_s"] is None
                           or row["publishes_per_s"] >= RATE_REACHED * rate)
    row["pass"] = (loss == 0 and res.errors == 0 and row["p99_ms"] is not None
                   and row["p99_ms"] < a.p99_limit and row["rate_reached"])
    return row


def choose_publisher(a, target, names: list[str]) -> tuple[str, list[str]]:
    """The publisher kind and URLs for this target: --publish, or (auto) a WebSocket per
    channel for one channel, the multi-channel JSON publisher for many (HTTP where the target
    has none)."""
    want = a.publish
    multi = target.pub_multi() if hasattr(target, "pub_multi") else None
    if want == "auto":
        want = "ws" if len(names) == 1 else ("ws-json" if multi else "http")
    if want == "ws-json":
        if not multi:
            raise SystemExit(f"gogin-bench: {target.name} has no multi-channel JSON publisher")
        return "ws-json", [multi[1]]
    urls = [target.pub(n) for n in names]
    if want == "ws" and urls[0][0] != "ws":
        want = "http"               # a target without a WebSocket publisher (an URL target)
    if want == "http" and urls[0][0] != "http":
        raise SystemExit(f"gogin-bench: {target.name} has no HTTP publisher")
    return want, [u for _, u in urls]


def pin_self(cpu) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {int(cpu)})


async def bench_target(a, spec: str, rates: list[float], prog: Progress) -> tuple[dict, list]:
    from gogin.bench._loadclient import LoadClient
    from gogin.bench.publisher import attach_publisher, handshake

    nofile = raise_nofile()
    subs = a.subscribers
    if subs <= 0:                                  # capacity: as many as the fd limit allows
        subs = max(1, nofile - FD_RESERVE)
    if subs + FD_RESERVE > nofile:
        raise SystemExit(f"gogin-bench: {subs} subscribers need more than RLIMIT_NOFILE "
                         f"{nofile} - {FD_RESERVE} fds")
    channels = max(1, min(a.channels, subs))
    # a WebSocket per channel for one channel; for many, the target's own publisher connection
    # of the multi-channel kind (or HTTP, which addresses any channel)
    pub_mode = "ws" if a.publish == "ws" or (a.publish == "auto" and a.channels == 1) else "http"
    target = make_target(spec, pub_mode, a.pub_target)
    target.start(a.server_cpu)
    pids = target_pids(target)
    info = {"target": spec, "scenario": a.scenario, "subscribers": subs, "channels": channels,
            "size": a.size, "duration": a.duration, "publish": a.publish,
            "subscribe": a.subscribe,
            "server_cpu": a.server_cpu, "client_cpu": a.client_cpu,
            "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "version": target.version() if hasattr(target, "version") else "?"}
    client = thread = None
    rows: list = []
    try:
        names = [f"{a.channel_prefix}{c}" for c in range(channels)]
        chan_of = [i % channels for i in range(subs)]
        sse = a.subscribe == "sse"
        if sse and not hasattr(target, "sse_url"):
            raise SystemExit(f"gogin-bench: {spec} has no EventSource subscriber")
        url_of = target.sse_url if sse else target.sub_url
        host, port, _ = handshake(url_of(names[0]), sse)
        tokens = read_tokens(a.tokens) if a.tokens else None
        reqs = [handshake(url_of(names[c]) if tokens is None else
                          url_of(names[c]).replace("{token}", tokens[i % len(tokens)]), sse)[2]
                for i, c in enumerate(chan_of)]
        sources = a.sources or (1 + (subs - 1) // SOURCE_SPAN)
        rss0 = proc_rss(pids)
        client = LoadClient(host, port, reqs, chan_of, sources=sources,
                            max_inflight=a.max_inflight, sse=sse)
        prog.show(f"{spec}: connecting {subs:,} subscribers ...")
        opened, failed, secs = await asyncio.get_running_loop().run_in_executor(
            None, client.connect_all, a.connect_timeout)
        rss1 = proc_rss(pids)
        info.update(connected=opened, connect_failed=failed, connect_seconds=secs,
                    connects_per_s=opened / secs if secs > 0 else None,
                    connect_errno=client.first_error or None,
                    server_rss_idle_bytes=rss0, server_rss_connected_bytes=rss1,
                    server_rss_per_connection=((rss1 - rss0) / opened
                                               if rss0 and rss1 and opened else None))
        prog.show(f"{spec}: {opened:,} connected in {secs:.2f} s, {failed} failed")
        prog.done()
        if failed:
            print(f"gogin-bench: {failed} of {subs} subscriber connections failed "
                  f"(first errno {client.first_error})", file=sys.stderr)
        await asyncio.sleep(a.settle)
        kind, urls = choose_publisher(a, target, names)
        a.pub_kind = kind
        info["publish"] = kind
        attach_publisher(client, kind, urls, a.size, a.pub_connections, a.pub_window, names)
        thread = threading.Thread(target=client.run, args=(1e9, a.client_pass_ms),
                                  name="gogin-bench-recv", daemon=True)
        thread.start()
        failing = 0

        async def step(i, rate, total):
            count = 1 if a.scenario == "capacity" else None
            if a.kill_subscribers and i == 0:
                asyncio.get_running_loop().call_later(
                    a.duration / 2, client.kill, a.kill_subscribers)
            row = await run_step(a, client, rate, pids, prog, i + 1, total, count=count)
            row.update({k: info[k] for k in ("target", "scenario", "subscribers", "channels",
                                             "size", "version", "duration", "server_cpu",
                                             "client_cpu", "subscribe")})
            row["connected"] = opened
            if a.scenario == "capacity":
                row["broadcast_all_ms"] = row["max_ms"]
                for k in ("connects_per_s", "connect_seconds", "server_rss_per_connection"):
                    row[k] = info[k]
            prog.done()
            rows.append(row)
            print(summary_line(row), file=sys.stderr)
            if a.json:
                with open(a.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            return row

        for i, rate in enumerate(rates):
            row = await step(i, rate, len(rates))
            # a step that lost messages means the server (or the client) could not keep up:
            # higher rates only lose more
            failing = failing + 1 if (row["loss"] or row["publish_errors"]) else 0
            if a.stop_after and failing >= a.stop_after and i + 1 < len(rates):
                print(f"  {spec}: {failing} step(s) in a row lost messages: higher rates "
                      f"skipped", file=sys.stderr)
                break
        # the fine sweep: halve the interval between the best pass and the first failure
        # above it, --bisect times (the best sustained rate, not a step of the coarse list)
        for j in range(a.bisect if a.scenario != "capacity" else 0):
            b = bisect_step(rows)
            if b is None:
                break
            lo, mid, hi = b
            print(f"  {spec}: bisect {j + 1}/{a.bisect}: between {lo:,.0f} (pass) and "
                  f"{hi:,.0f} (fail)", file=sys.stderr)
            await step(len(rates) + j, mid, len(rates) + a.bisect)
    finally:
        prog.done()
        if client is not None:
            client.stop()
            if thread is not None:
                thread.join(5)
            client.close()
        target.stop()
    return info, rows


def bisect_step(rows: list):
    """(pass, next rate, fail): the middle of the best passing rate and the lowest failing
    rate above it, or None (nothing passed, nothing failed above, or no integer between)."""
    passed = [r["rate_target"] for r in rows if r["pass"]]
    if not passed:
        return None
    lo = max(passed)
    above = [r["rate_target"] for r in rows if not r["pass"] and r["rate_target"] > lo]
    if not above:
        return None
    hi = min(above)
    mid = round((lo + hi) / 2)
    return None if mid <= lo or mid >= hi else (lo, mid, hi)


def summary_line(r: dict) -> str:
    f = lambda v, fmt: "-" if v is None else format(v, fmt)   # noqa: E731
    return (f"  {r['target']} rate {r['rate_target']:,.0f}: pub {f(r['publishes_per_s'], ',.0f')}/s"
            f"  delivered {f(r['delivered_per_s'], ',.0f')}/s  loss {r['loss']}"
            f"  p50 {f(r['p50_ms'], '.2f')} p99 {f(r['p99_ms'], '.2f')} max {f(r['max_ms'], '.2f')} ms"
            f"  cpu client {f(r['client_cpu_pct'], '.0f')}% server {f(r['server_cpu_pct'], '.0f')}%"
            f"  {'PASS' if r['pass'] else 'FAIL'}")


def markdown(rows: list) -> str:
    f = lambda v, fmt: "-" if v is None else format(v, fmt)   # noqa: E731
    out = ["| target | subs × ch | rate | pub/s | delivered msgs/s | loss | p50 ms | p99 ms | "
           "max ms | client CPU | server CPU | server RSS MiB | ok |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rss = r.get("server_rss_bytes")
        out.append(
            f"| {r['target']} | {r['subscribers']:,} × {r['channels']:,} | {r['rate_target']:,.0f}"
            f" | {f(r['publishes_per_s'], ',.0f')} | {f(r['delivered_per_s'], ',.0f')}"
            f" | {r['loss']} | {f(r['p50_ms'], '.2f')} | {f(r['p99_ms'], '.2f')}"
            f" | {f(r['max_ms'], '.2f')} | {f(r['client_cpu_pct'], '.0f')} %"
            f" | {f(r['server_cpu_pct'], '.0f')} % | {f(rss and rss / 2**20, '.0f')}"
            f" | {'yes' if r['pass'] else 'no'} |")
    return "\n".join(out)


def plot(rows: list, path: str, title: str = "") -> None:
    """Delivered msgs/s and p99 against the publish rate, one line per target; log axes (the
    rates and the results span several orders of magnitude across servers)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for tgt in dict.fromkeys(r["target"] for r in rows):
        rs = sorted((r for r in rows if r["target"] == tgt), key=lambda r: r["rate_target"])
        x = [r["rate_target"] for r in rs]
        ax1.plot(x, [r["delivered_per_s"] or float("nan") for r in rs], marker="o", label=tgt)
        ax2.plot(x, [r["p99_ms"] if r["p99_ms"] is not None else float("nan") for r in rs],
                 marker="o", label=tgt)
    ax1.set(xlabel="publish rate (msgs/s)", ylabel="delivered msgs/s", title="throughput")
    ax2.set(xlabel="publish rate (msgs/s)", ylabel="p99 latency (ms)", title="p99 latency")
    limit = rows[0].get("p99_limit_ms") if rows else None
    ax2.axhline(limit or P99_LIMIT_MS, color="grey", linestyle="--", linewidth=1)
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


EPILOG = """examples:
  a small fanout against a gogin started here, one core each, 3 steps of 2 s:
    gogin-bench --scenario fanout --subscribers 200 --sweep 100,500,1000 --duration 2 \\
        --server-cpu 0 --client-cpu 1 --markdown

  gogin side by side with a peer, one JSON line per step and a plot:
    gogin-bench --target gogin,websockets --scenario fanout --json r.jsonl --plot r.png
"""


def build_parser() -> argparse.ArgumentParser:
    # RawDescriptionHelpFormatter: the examples keep their lines
    p = argparse.ArgumentParser(prog="gogin-bench", description=__doc__.split("\n\n")[0],
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="gogin",
                   help="gogin (started here), a peer name, or http://host:port of a running "
                        "server (with a path: the subscribers', e.g. "
                        "http://127.0.0.1:9080/subscribe/{channel}); comma-separated for "
                        "several (one plot line each)")
    p.add_argument("--pub-target", metavar="URL",
                   help="with a URL target: publish (HTTP POST /pub?id=) to this server "
                        "instead, e.g. another node of the same broker (cross-node fanout)")
    p.add_argument("--scenario", choices=sorted(PRESETS), default="fanout")
    p.add_argument("--subscribers", type=int, help="subscriber connections (preset default)")
    p.add_argument("--channels", type=int, help="channels the subscribers spread over")
    p.add_argument("--rate", type=float, help="publishes/s (one step)")
    p.add_argument("--sweep", help="publish rates: A:B:STEPS (linear) or a list R1,R2,...")
    p.add_argument("--bisect", type=int, default=0, metavar="N",
                   help="after the sweep, N more steps halving the interval between the best "
                        "passing rate and the first failing rate above it (a fine sweep)")
    p.add_argument("--stop-after", type=int, default=0, metavar="N",
                   help="end a target's sweep after N steps in a row that lost messages "
                        "(0: never)")
    p.add_argument("--duration", type=float, default=5.0, help="publish seconds per step")
    p.add_argument("--drain", type=float, default=3.0,
                   help="seconds to wait for stragglers after the publish phase")
    p.add_argument("--size", type=int, help="payload bytes (>= 20)")
    p.add_argument("--publish", choices=["auto", "http", "ws", "ws-json"], default="auto",
                   help="publisher: HTTP keep-alive POSTs (pipelined), a WebSocket per channel, "
                        "or one multi-channel JSON WebSocket; auto: ws for one channel, ws-json "
                        "(else http) for several")
    p.add_argument("--subscribe", choices=["ws", "sse"], default="ws",
                   help="subscribers: WebSocket connections or EventSource streams (targets "
                        "with an EventSource location: gogin, nchan)")
    p.add_argument("--pub-connections", type=int, default=4, help="HTTP publisher connections")
    p.add_argument("--pub-window", type=int, default=32,
                   help="pipelined HTTP publishes in flight per connection")
    p.add_argument("--client-pass-ms", type=float, default=2.0,
                   help="the load client's shortest loop pass (ms): bytes pile up between "
                        "passes so one recv() takes many frames")
    p.add_argument("--server-cpu", type=int, help="pin the started server to this CPU")
    p.add_argument("--client-cpu", type=int, help="pin this process to this CPU")
    p.add_argument("--sources", type=int, default=0,
                   help="127.0.0.x source addresses (0: one per 25,000 connections)")
    p.add_argument("--max-inflight", type=int, default=512, help="concurrent handshakes")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=0.2, help="seconds after connecting")
    p.add_argument("--channel-prefix", default="ch")
    p.add_argument("--tokens", metavar="FILE",
                   help="one token per line: subscriber i's URL has {token} replaced by line i "
                        "(a signed-token location, one token per client as real clients hold "
                        "them), e.g. --target 'http://127.0.0.1:9080/token/{channel}"
                        "?token={token}'")
    p.add_argument("--p99-limit", type=float, default=P99_LIMIT_MS, help="ms, pass criterion")
    p.add_argument("--json", metavar="FILE", help="append one JSON line per step")
    p.add_argument("--markdown", nargs="?", const="-", metavar="FILE",
                   help="markdown table (stdout, or FILE)")
    p.add_argument("--plot", metavar="FILE.png", help="delivered msgs/s and p99 vs rate")
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto")
    p.add_argument("--kill-subscribers", type=int, default=0, help=argparse.SUPPRESS)
    return p


def read_tokens(path: str) -> list[str]:
    with open(path) as fh:
        tokens = [line.strip() for line in fh if line.strip()]
    if not tokens:
        raise SystemExit(f"gogin-bench: --tokens {path}: no token in the file")
    return tokens


def bench_main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    preset = PRESETS[a.scenario]
    for key in ("subscribers", "channels", "size", "sweep"):
        if getattr(a, key) is None:
            setattr(a, key, preset[key])
    if a.scenario == "capacity" and a.rate is None:
        a.rate = 1.0
    if a.size < 20:
        a.size = 20
    rates = parse_rates(a)
    pin_self(a.client_cpu)
    prog = Progress(a.progress == "on" or (a.progress == "auto" and sys.stderr.isatty()))
    all_rows = []
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    for spec in a.target.split(","):
        info, rows = runner(bench_target(a, spec.strip(), rates, prog))
        all_rows += rows
        ok = [r for r in rows if r["pass"]]
        best = max(ok, key=lambda r: r["delivered_per_s"] or 0) if ok else None
        msg = (f"{spec}: best passing step: {best['delivered_per_s']:,.0f} delivered msgs/s at "
               f"{best['publishes_per_s']:,.0f} pub/s, p99 {best['p99_ms']:.2f} ms"
               if best else f"{spec}: no step passed (zero loss and p99 < {a.p99_limit} ms)")
        if info.get("connects_per_s"):
            msg += (f"; connect {info['connected']:,} in {info['connect_seconds']:.2f} s "
                    f"({info['connects_per_s']:,.0f}/s)")
            if info.get("server_rss_per_connection"):
                msg += f", server RSS {info['server_rss_per_connection']:,.0f} B/connection"
        print(msg, file=sys.stderr)
    if a.markdown:
        table = markdown(all_rows)
        if a.markdown == "-":
            print(table)
        else:
            with open(a.markdown, "w") as fh:
                fh.write(table + "\n")
    if a.plot and all_rows:
        plot(all_rows, a.plot)
    failed = any(r["loss"] != 0 or r["publish_errors"] for r in all_rows)
    if failed:
        print("gogin-bench: FAIL: messages were lost (or publishes failed)", file=sys.stderr)
    return 1 if failed or not all_rows else 0


if __name__ == "__main__":
    sys.exit(bench_main())
