"""Micro-benchmarks of the Cython core (pytest-benchmark).

Not part of the normal test run (pyproject's testpaths is ``tests`` and addopts disables
benchmarks).  Run explicitly:

    python -m pytest benchmarks/ --benchmark-enable
    python -m pytest benchmarks/ --benchmark-disable     # each test once, as a correctness check

Throughputs (frames/s, ns/op) are in each benchmark's ``extra_info`` (in --benchmark-json).
"""

import gc
import os
import sys
import time

import pytest

from gogin._core import frames, http
from gogin._core.frames import FrameParser, Opcode, encode_frame
from gogin._core.hub import Hub
from gogin._core.registry import RegistryProbe

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fanout_socketpairs import Bench, fd_budget  # noqa: E402

TEXT = int(Opcode.TEXT)
MASK = b"\x37\xfa\x21\x3d"
UPGRADE_HEAD = (b"GET /ws/chat?token=abc123&room=lobby HTTP/1.1\r\n"
                b"Host: notify.example.com\r\n"
                b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:126.0) Gecko/20100101 Firefox/126.0\r\n"
                b"Accept: */*\r\n"
                b"Accept-Language: en-US,en;q=0.5\r\n"
                b"Accept-Encoding: gzip, deflate, br\r\n"
                b"Sec-WebSocket-Version: 13\r\n"
                b"Origin: https://app.example.com\r\n"
                b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Connection: keep-alive, Upgrade\r\n"
                b"Cookie: session=0123456789abcdef0123456789abcdef\r\n"
                b"Pragma: no-cache\r\n"
                b"Cache-Control: no-cache\r\n"
                b"Upgrade: websocket\r\n\r\n")
JSON_TEMPLATE = '{"channel":"~channel-json~","id":~id~,"tag":~tag~,"text":"~text-json~"}'


def _median(benchmark):
    """Median seconds per call, or None when benchmarks are disabled."""
    st = getattr(benchmark, "stats", None)
    try:
        return st.stats.median
    except AttributeError:
        return None


def _rate(benchmark, key, per_call):
    med = _median(benchmark)
    if med:
        benchmark.extra_info[key] = per_call / med


# -- frames ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [100, 65536], ids=["100B", "64KiB"])
def test_encode_frame(benchmark, size):
    payload = b"a" * size
    out = benchmark(encode_frame, TEXT, payload)
    assert len(out) == frames.header_size(size) + size
    _rate(benchmark, "frames_per_s", 1)
    _rate(benchmark, "bytes_per_s", len(out))


def _masked_frames(count=1000, size=100):
    one = encode_frame(TEXT, b"m" * size, mask=MASK)
    return one * count


def test_parse_feed(benchmark):
    data = _masked_frames()
    events = benchmark(lambda: FrameParser().feed(data))
    assert len(events) == 1000
    assert events[0] == ("message", TEXT, b"m" * 100)
    _rate(benchmark, "frames_per_s", 1000)


@pytest.mark.parametrize("repeat", [100])
def test_parse_bench_feed_c(benchmark, repeat):
    data = _masked_frames()
    n = benchmark(frames._bench_feed, data, repeat)
    assert n == 1000 * repeat
    _rate(benchmark, "frames_per_s", 1000 * repeat)
    _rate(benchmark, "bytes_per_s", len(data) * repeat)


# -- HTTP head ------------------------------------------------------------------------------

def test_http_parse_upgrade(benchmark):
    status, req, consumed, explain = benchmark(http.parse, UPGRADE_HEAD)
    assert status == 0 and explain is None
    assert consumed == len(UPGRADE_HEAD)
    assert req.method == "GET" and req.path == "/ws/chat"
    _rate(benchmark, "heads_per_s", 1)


# -- template -------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b'hello "world"\n' * 7, b"a" * 4096], ids=["100B-escapes", "4KiB-plain"])
def test_render_json_template(benchmark, payload):
    fmt = Hub().format("websocket", JSON_TEMPLATE)
    out = benchmark(fmt.render_bytes, payload, id=42, tag=3, channel="news")
    assert out[0] == 0x81
    assert b'"channel":"news","id":42,"tag":3,"text":"' in out
    _rate(benchmark, "renders_per_s", 1)


# -- registry -------------------------------------------------------------------------------

REG_SIZES = [10**3, 10**4, 10**5, 10**6]
REG_ROUNDS = {10**3: 50, 10**4: 10, 10**5: 3, 10**6: 1}


def _registry_round(n, channels, timings):
    probe = RegistryProbe()
    sub, unsub_all = probe.subscribe, probe.unsubscribe_all
    t0 = time.perf_counter()
    for key, ch in zip(range(n), channels):
        sub(key, ch)
    t1 = time.perf_counter()
    subs = probe.registry.subscriptions
    for key in range(n):
        unsub_all(key)
    t2 = time.perf_counter()
    timings.append((t1 - t0, t2 - t1, subs, probe.registry.subscriptions, len(probe.registry)))


def _registry_bench(benchmark, n, channels):
    timings = []
    gc.collect()
    gc.disable()     # the probe makes one GC-tracked _Member per key: keep collector passes out
    try:
        benchmark.pedantic(_registry_round, args=(n, channels, timings),
                           rounds=REG_ROUNDS[n], iterations=1, warmup_rounds=0)
    finally:
        gc.enable()
    for t_sub, t_unsub, subs, left, nchan in timings:
        assert subs == n and left == 0 and nchan == 0
    t_sub = min(t[0] for t in timings)
    t_unsub = min(t[1] for t in timings)
    benchmark.extra_info["subscribe_ns_per_op"] = t_sub / n * 1e9
    benchmark.extra_info["unsubscribe_all_ns_per_op"] = t_unsub / n * 1e9
    benchmark.extra_info["note"] = ("RegistryProbe from Python: includes the Python call, the "
                                    "probe's member dict and one _Member object per key; "
                                    "min over rounds; GC disabled")


@pytest.mark.parametrize("n", REG_SIZES, ids=lambda n: f"1e{len(str(n)) - 1}")
def test_registry_one_channel(benchmark, n):
    """N distinct keys subscribed to one channel, then unsubscribe_all for each key."""
    _registry_bench(benchmark, n, ["ch"] * n)


@pytest.mark.parametrize("n", REG_SIZES, ids=lambda n: f"1e{len(str(n)) - 1}")
def test_registry_channel_each(benchmark, n):
    """N keys, each on its own channel (N channels created, then dropped)."""
    _registry_bench(benchmark, n, [f"c{i}" for i in range(n)])


# -- publish to socketpair subscribers ------------------------------------------------------

K = 100          # publishes per round
SIZE = 100       # payload bytes


@pytest.fixture(scope="module", params=[1000, 10000], ids=["1k", "10k"])
def fanout(request):
    n, note = fd_budget(request.param)
    if n < request.param:
        print(f"\nNOTE: {note}", file=sys.stderr)
    if n == 0:
        pytest.skip(note)
    b = Bench(n, SIZE)
    b.note = note
    yield b
    b.close()


def test_publish_socketpairs(benchmark, fanout):
    b = fanout
    hub, payload, n = b.hub, b.payload, b.subscribers
    rounds = 20 if n <= 1000 else 10
    done = []
    drained = []

    def drain():
        drained.append(b.drain())       # setup must return None (else: taken as arguments)

    def one_round():
        for _ in range(K):
            hub.publish("ch", payload)
        hub.flush()
        done.append(1)

    b.drain()
    s0 = hub.stats()
    gc.collect()
    gc.disable()
    try:
        # setup (not timed) drains the client sides: the server side alone is measured
        benchmark.pedantic(one_round, setup=drain, rounds=rounds, iterations=1,
                           warmup_rounds=1)
    finally:
        gc.enable()
    s1 = hub.stats()
    drained.append(b.drain())
    calls = len(done)
    assert calls >= 1
    assert s1["delivered_frames"] - s0["delivered_frames"] == calls * n * K
    assert s1["dropped"] == s0["dropped"] == 0
    assert s1["closed_slow"] == s0["closed_slow"] == 0
    assert s1["queued_bytes"] == 0
    assert s1["writes"] - s0["writes"] == calls * n       # corked: one sendmsg per subscriber
    assert sum(drained) == s1["delivered_bytes"] - s0["delivered_bytes"]
    assert hub.connections == n
    benchmark.extra_info.update(subscribers=n, messages_per_round=K, payload_bytes=SIZE,
                                frames_per_round=n * K, note=b.note)
    _rate(benchmark, "delivered_frames_per_s", n * K)
