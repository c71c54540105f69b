#!/usr/bin/env python
"""Fanout throughput over socketpairs: one Hub, N WebSocket subscribers on one channel.

Each subscriber is the server side of a ``socket.socketpair()`` given to the hub with
``adopt_pending(fd)`` + ``upgrade(["ch"], fmt)`` (no key: no handshake is written).  The client
sides stay in this process and are drained (recv with MSG_DONTWAIT until EAGAIN) after every
round, so the socket buffers never fill.

A round = ``--messages`` publishes of ``--size``-byte payloads to "ch", then one ``hub.flush()``.
No event loop is attached: flush() is called by hand, as a loop turn would.

Reported per round (median over ``--rounds``; warm-up rounds are not counted):
  publish_s   time of the K publish() calls (render once, enqueue a frame reference per sub)
  flush_s     time of hub.flush() (one sendmsg per subscriber, corked)
  server_s    publish_s + flush_s: the server side only
  drain_s     time to read everything on the client sides (the reader, not the server)
  frames/s    subscribers x K / server_s, and / (server_s + drain_s)
  writes      sendmsg calls in the round (corking: == subscribers, not subscribers x K)
  cpu         process CPU time (user + sys, resource.getrusage) over the measured rounds;
              it includes the drain, which runs in this same process and thread.

Every round checks hub.stats(): delivered_frames grows by exactly subscribers x K, dropped and
closed_slow stay 0, and the clients read exactly the bytes the hub reports as delivered.

--deflate BITS gives every subscriber the permessage-deflate format of that window (what a
location with compression = true uses for clients that negotiated it); each round then checks
that the compression counter grew by K (once per message, not once per subscriber).
--json-payload sends a JSON document of --size bytes (notification-like, compressible)
instead of --size bytes of "x".
"""

import argparse
import gc
import json
import os
import platform
import resource
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from gogin.bench.cli import raise_nofile  # noqa: E402  (after the checkout is on sys.path)

from gogin._core.deflate import stats as deflate_stats  # noqa: E402
from gogin._core.hub import Hub  # noqa: E402

FD_RESERVE = 100          # fds kept free for the interpreter, the selector, pytest, ...
SOCKBUF = 1 << 20         # SO_SNDBUF / SO_RCVBUF asked for on each socketpair end


def fd_budget(wanted):
    """How many socketpairs fit under RLIMIT_NOFILE (2 fds each).  Raises the soft limit to
    the hard one first.  Returns (count, message or None)."""
    soft = raise_nofile()          # the hard limit, or a large number when unlimited
    fit = max(0, (soft - FD_RESERVE) // 2)
    if wanted <= fit:
        return wanted, None
    return fit, (f"RLIMIT_NOFILE is {soft}: {wanted} socketpairs need {2 * wanted} fds; "
                 f"scaled down to {fit} subscribers ({FD_RESERVE} fds kept in reserve)")


class Bench:
    """A hub with `subscribers` socketpair WebSocket connections on channel "ch"."""

    def __init__(self, subscribers, size=100, template=None, sockbuf=SOCKBUF, deflate=0,
                 json_payload=False):
        self.hub = Hub(max_connections=max(subscribers + 16, 16))
        self.fmt = self.hub.format("websocket", template or "~text~", deflate=deflate)
        self.clients = []
        for _ in range(subscribers):
            server, client = socket.socketpair()
            if sockbuf:
                for s in (server, client):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sockbuf)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sockbuf)
            conn = self.hub.adopt_pending(server.detach())
            conn.upgrade(["ch"], self.fmt)
            self.clients.append(client)
        self.payload = json_document(size) if json_payload else b"x" * size
        self.buf = bytearray(1 << 20)
        self.subscribers = subscribers

    def round(self, k):
        """K publishes + one flush; returns (publish_s, flush_s)."""
        hub, payload = self.hub, self.payload
        t0 = time.perf_counter()
        for _ in range(k):
            hub.publish("ch", payload)
        t1 = time.perf_counter()
        hub.flush()
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1

    def drain(self):
        """Read everything queued on the client sides; returns the bytes read."""
        buf = self.buf
        total = 0
        flags = socket.MSG_DONTWAIT
        for c in self.clients:
            recv_into = c.recv_into
            while True:
                try:
                    n = recv_into(buf, 0, flags)
                except BlockingIOError:
                    break
                if n == 0:
                    break
                total += n
        return total

    def close(self):
        self.hub.close()
        for c in self.clients:
            c.close()
        self.clients = []


def json_document(size):
    """A notification-like JSON object of exactly `size` bytes (ids, names, text)."""
    items, k = [], 0
    while True:
        items.append({"id": 1000 + k, "user": f"user{k % 37}", "kind": "comment",
                      "text": f"new reply number {k} in thread {k % 11}"})
        doc = json.dumps({"items": items, "pad": ""}, separators=(",", ":"))
        if len(doc) >= size:
            break
        k += 1
    items.pop()
    doc = json.dumps({"items": items, "pad": ""}, separators=(",", ":"))
    doc = doc[:-2] + "x" * (size - len(doc)) + '"}'
    return doc.encode()


def cpu_time():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run(subscribers, messages, rounds, size, warmup=3, sockbuf=SOCKBUF, deflate=0,
        json_payload=False):
    n, note = fd_budget(subscribers)
    if note:
        print(f"NOTE: {note}", file=sys.stderr)
    if n == 0:
        raise SystemExit("no file descriptors left for socketpairs")
    t_setup = time.perf_counter()
    b = Bench(n, size, sockbuf=sockbuf, deflate=deflate, json_payload=json_payload)
    setup_s = time.perf_counter() - t_setup
    per_round = n * messages
    gc.collect()
    gc.disable()          # no collector pauses inside the timed sections
    try:
        pub, fl, dr, writes = [], [], [], []
        cpu0 = None
        for r in range(warmup + rounds):
            if r == warmup:
                cpu0 = cpu_time()
            s0 = b.hub.stats()
            c0 = deflate_stats()["compressed"]
            p, f = b.round(messages)
            s1 = b.hub.stats()
            compressed = deflate_stats()["compressed"] - c0
            assert compressed == (messages if deflate else 0), (compressed, messages)
            t0 = time.perf_counter()
            got = b.drain()
            d = time.perf_counter() - t0
            delivered = s1["delivered_frames"] - s0["delivered_frames"]
            assert delivered == per_round, (delivered, per_round)
            assert s1["dropped"] == 0 and s1["closed_slow"] == 0, s1
            assert s1["queued_bytes"] == 0, s1
            assert got == s1["delivered_bytes"] - s0["delivered_bytes"], (got, s0, s1)
            assert b.hub.connections == n
            if r >= warmup:
                pub.append(p)
                fl.append(f)
                dr.append(d)
                writes.append(s1["writes"] - s0["writes"])
        cpu = cpu_time() - cpu0
        frame_len = len(b.fmt.render_bytes(b.payload))
    finally:
        gc.enable()
        b.close()

    med = statistics.median
    server = [p + f for p, f in zip(pub, fl)]
    total = [s + d for s, d in zip(server, dr)]
    return {
        "subscribers": n,
        "subscribers_requested": subscribers,
        "messages_per_round": messages,
        "payload_bytes": size,
        "json_payload": json_payload,
        "deflate_bits": deflate,
        "compressions_per_round": messages if deflate else 0,
        "frame_bytes": frame_len,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "frames_per_round": per_round,
        "setup_s": setup_s,
        "publish_s_median": med(pub),
        "flush_s_median": med(fl),
        "server_s_median": med(server),
        "server_s_min": min(server),
        "server_s_max": max(server),
        "drain_s_median": med(dr),
        "delivered_frames_per_s_server": per_round / med(server),
        "delivered_frames_per_s_with_drain": per_round / med(total),
        "publish_ns_per_frame": med(pub) / per_round * 1e9,
        "flush_ns_per_frame": med(fl) / per_round * 1e9,
        "writes_per_round": med(writes),
        "writes_per_round_max": max(writes),
        "cpu_s_total": cpu,
        "wall_s_total": sum(total),
        "cpu_s_per_round": cpu / rounds,
        "python": platform.python_version(),
        "note": note,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=100, help="publishes per round (K)")
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--size", type=int, default=100, help="payload bytes")
    ap.add_argument("--sockbuf", type=int, default=SOCKBUF,
                    help="SO_SNDBUF/SO_RCVBUF per socketpair end (0: kernel default)")
    ap.add_argument("--deflate", type=int, default=0, metavar="BITS",
                    help="permessage-deflate window bits of every subscriber (9-15; 0: off)")
    ap.add_argument("--json-payload", action="store_true",
                    help="a JSON document of --size bytes instead of 'x' * size")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    res = run(a.subscribers, a.messages, a.rounds, a.size, a.warmup, a.sockbuf, a.deflate,
              a.json_payload)
    if a.json:
        print(json.dumps(res, indent=2))
        return
    r = res
    print(f"subscribers={r['subscribers']} K={r['messages_per_round']} size={r['payload_bytes']}B "
          f"(frame {r['frame_bytes']}B) rounds={r['rounds']} (+{r['warmup_rounds']} warm-up)"
          + (f" deflate={r['deflate_bits']} ({r['compressions_per_round']} compressions "
             f"per round)" if r['deflate_bits'] else ""))
    print(f"  delivered frames/s, server side (publish+flush): "
          f"{r['delivered_frames_per_s_server']:,.0f}")
    print(f"  delivered frames/s, including the drain:          "
          f"{r['delivered_frames_per_s_with_drain']:,.0f}")
    print(f"  per round (median): publish {r['publish_s_median'] * 1e3:.2f} ms "
          f"({r['publish_ns_per_frame']:.1f} ns/frame), flush {r['flush_s_median'] * 1e3:.2f} ms "
          f"({r['flush_ns_per_frame']:.1f} ns/frame), drain {r['drain_s_median'] * 1e3:.2f} ms")
    print(f"  writes (sendmsg) per round: {r['writes_per_round']:.0f} "
          f"(subscribers {r['subscribers']}, frames {r['frames_per_round']})")
    print(f"  process CPU {r['cpu_s_total']:.2f} s over {r['wall_s_total']:.2f} s wall "
          f"(measured rounds, drain included)")


if __name__ == "__main__":
    main()
