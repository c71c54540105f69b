"""gogin-bench: the C frame scanner on crafted byte streams, and small end-to-end runs.

The runs start a real gogin (python -m gogin) on loopback with a few dozen subscribers at a low
rate: seconds each.  The full benchmark (1,000+ subscribers, rate sweeps) is not run here.
"""

import json
import struct

import pytest

from gogin._core.frames import encode_frame

_lc = pytest.importorskip("gogin.bench._loadclient")
from gogin.bench.cli import bench_main  # noqa: E402

NOW = 10_000_000


def frame(op, payload, fin=True):
    return encode_frame(op, payload, fin=fin)


def stamped(size, stamp):
    return _lc.make_payload(size, stamp)


def scan(data, split=None, now=NOW, sse=False):
    if split is None:
        chunks = [data]
    elif split == "bytes":
        chunks = [data[i:i + 1] for i in range(len(data))]
    else:
        chunks = [data[i:i + split] for i in range(0, len(data), split)]
    return _lc.scan_chunks(chunks, now=now, sse=sse)


# -- frame scanner ------------------------------------------------------------------------------

def test_payload_marker():
    p = stamped(100, 0x1234)
    assert len(p) == 100 and p.startswith(b"@gb:0000000000001234")
    assert len(stamped(5, 1)) == 20          # never shorter than the marker


@pytest.mark.parametrize("split", [None, "bytes", 3, 7, 101])
def test_small_frames_any_split(split):
    data = b"".join(frame(1, stamped(100, NOW - 1000 * (i + 1))) for i in range(10))
    r = scan(data, split)
    assert r["frames"] == 10 and r["stamped"] == 10 and not r["closed"]
    lat = r["latency"]
    assert lat["count"] == 10 and lat["max"] == 10_000
    assert 4_800 <= lat["p50"] <= 6_200               # log buckets: <= ~3 % off


@pytest.mark.parametrize("size", [125, 126, 65535, 65536, 200_000])
@pytest.mark.parametrize("split", [None, "bytes", 1000])
def test_length_encodings(size, split):
    if split == "bytes" and size > 70_000:
        split = 4093
    data = frame(1, stamped(size, NOW - 5)) + frame(2, stamped(30, NOW - 7))
    hdr = data[1] & 0x7F
    assert hdr == (size if size < 126 else 126 if size < 65536 else 127)
    r = scan(data, split)
    assert r["frames"] == 2 and r["stamped"] == 2 and r["latency"]["max"] == 7


def test_marker_wrapped_by_template():
    # a JSON template puts text before the payload: the marker is found wherever it is
    body = b'{"id":1,"channel":"ch","text":"' + stamped(40, NOW - 42) + b'","tag":"0"}'
    r = scan(frame(1, body), "bytes")
    assert r["stamped"] == 1 and r["latency"]["max"] == 42


def test_unstamped_and_bad_digits():
    r = scan(frame(1, b"hello") + frame(1, b"@gb:12zz" + b"0" * 20))
    assert r["frames"] == 2 and r["stamped"] == 0 and r["unstamped"] == 2


def test_ping_pong_between_frames():
    f = frame(1, stamped(50, NOW - 1))
    data = f + frame(9, b"ping!") + frame(10, b"") + f + frame(9, b"")
    for split in (None, "bytes"):
        r = scan(data, split)
        assert r["frames"] == 2 and r["pings"] == 2 and not r["closed"]


def test_fragmented_message_counts_once():
    p = stamped(60, NOW - 3)
    data = frame(1, p[:10], fin=False) + frame(9, b"x") + frame(0, p[10:], fin=True)
    r = scan(data, "bytes")
    assert r["frames"] == 1 and r["pings"] == 1


def test_close_frame_stops():
    data = frame(1, stamped(30, NOW)) + encode_frame(8, struct.pack("!H", 1001)) \
        + frame(1, stamped(30, NOW))
    r = scan(data, 5)
    assert r["closed"] and r["close_frames"] == 1 and r["frames"] == 1


def test_masked_server_frame_is_an_error():
    r = scan(encode_frame(1, b"abc", mask=b"\x01\x02\x03\x04"))
    assert r["closed"] and r["bad_frames"] == 1 and r["frames"] == 0


# -- EventSource scanner -----------------------------------------------------------------------

@pytest.mark.parametrize("split", [None, "bytes", 2, 5, 33])
def test_eventsource_events_any_split(split):
    """An event is counted when its blank line arrives and it had a data line; comments
    (gogin's ": " opening, ": -1" pings) and data-less events are not messages."""
    body = (b": \n\n"
            + b"data: " + stamped(40, NOW - 42) + b"\n\n"
            + b": -1\n\n"
            + b"id: 3\r\nevent: note\r\ndata: " + stamped(30, NOW - 7) + b"\r\n\r\n"
            + b"event: nothing\n\n"
            + b"data: plain\ndata: two lines\n\n"
            + b"data: unfinished " + stamped(30, NOW - 1))          # no blank line yet
    r = scan(body, split, sse=True)
    assert r["frames"] == 3 and r["conn_frames"] == 3
    assert r["stamped"] == 2 and r["unstamped"] == 1
    assert r["latency"]["max"] == 42 and not r["closed"]


# -- end to end against gogin -----------------------------------------------------------------

COMMON = ["--target", "gogin", "--duration", "1.5", "--drain", "2", "--progress", "off",
          "--size", "100"]


def test_fanout_small_zero_loss(tmp_path):
    out = tmp_path / "r.jsonl"
    md = tmp_path / "r.md"
    png = tmp_path / "r.png"
    rc = bench_main(COMMON + ["--scenario", "fanout", "--subscribers", "50", "--rate", "100",
                              "--json", str(out), "--markdown", str(md), "--plot", str(png)])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 1
    r = rows[0]
    assert r["loss"] == 0 and r["expected"] == r["received"] == 50 * r["publishes"] > 0
    assert r["latency_samples"] == r["received"] and r["unstamped"] == 0
    assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] < 1000
    assert r["server_cpu_pct"] is not None and r["client_cpu_pct"] is not None
    assert r["server_rss_bytes"] > 0 and r["pass"]
    assert "| gogin | 50 × 1 |" in md.read_text()
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("publish", ["ws", "ws-json", "http"])
def test_routing_sweep_each_publisher(tmp_path, publish):
    """Every kind of the C publisher: per-channel WebSockets, one multi-channel JSON
    WebSocket, pipelined HTTP; every channel gets exactly its round-robin share."""
    out = tmp_path / "r.jsonl"
    rc = bench_main(COMMON + ["--scenario", "routing", "--subscribers", "20", "--channels", "5",
                              "--sweep", "50,400", "--publish", publish, "--json", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["rate_target"] for r in rows] == [50, 400]
    for r in rows:
        assert r["publisher"] == publish
        assert r["loss"] == 0 and r["channels_short"] == 0 and r["publish_errors"] == 0
        # 1.5 s at the rate (the schedule is exact up to one message)
        assert abs(r["publishes"] - 1.5 * r["rate_target"]) <= 1
        assert r["expected"] == r["received"] == 4 * r["publishes"]


def test_publish_errors_are_counted(tmp_path):
    """Channel ids over the server's max_channel_id_length: the subscribers are refused and
    every JSON publish is answered {"error": ...}; the publisher counts those answers."""
    out = tmp_path / "r.jsonl"
    rc = bench_main(COMMON + ["--scenario", "routing", "--subscribers", "2", "--channels", "2",
                              "--rate", "50", "--publish", "ws-json", "--json", str(out),
                              "--channel-prefix", "x" * 2000])
    r = json.loads(out.read_text().splitlines()[0])
    assert rc == 1 and r["publish_errors"] > 0 and "error" in r["publish_error"]


def test_stop_after_steps_that_lost_messages(tmp_path):
    out = tmp_path / "r.jsonl"
    # subscribers killed during the first step: it loses messages, and the sweep ends there
    rc = bench_main(COMMON + ["--subscribers", "10", "--sweep", "50,100,150",
                              "--kill-subscribers", "2", "--stop-after", "1", "--json", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rc == 1 and [r["rate_target"] for r in rows] == [50] and rows[0]["loss"] > 0


def test_eventsource_subscribers_zero_loss(tmp_path):
    out = tmp_path / "r.jsonl"
    rc = bench_main(COMMON + ["--subscribe", "sse", "--subscribers", "30", "--channels", "3",
                              "--sweep", "50,200", "--json", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    for r in rows:
        assert r["subscribe"] == "sse" and r["loss"] == 0 and r["channels_short"] == 0
        assert r["expected"] == r["received"] == 10 * r["publishes"] > 0
        assert r["latency_samples"] == r["received"] and r["unstamped"] == 0


def test_eventsource_needs_a_target_that_has_it():
    with pytest.raises(SystemExit, match="no EventSource subscriber"):
        bench_main(COMMON + ["--target", "websockets", "--subscribe", "sse",
                             "--subscribers", "2", "--rate", "10"])


def test_killed_subscribers_fail_the_run(tmp_path):
    out = tmp_path / "r.jsonl"
    rc = bench_main(COMMON + ["--subscribers", "30", "--rate", "100", "--json", str(out),
                              "--kill-subscribers", "3"])
    assert rc == 1
    r = json.loads(out.read_text().splitlines()[0])
    assert r["loss"] > 0 and r["disconnects"] == 3 and not r["pass"]


def test_report_ranks_best_passing_steps(tmp_path):
    """gogin.bench.report over real rows: the best passing step per target, the capacity
    table, and no ratio line when there is no peer to compare with."""
    from gogin.bench.report import load, report
    out = tmp_path / "r.jsonl"
    assert bench_main(COMMON + ["--subscribers", "20", "--sweep", "50,100",
                                "--json", str(out)]) == 0
    assert bench_main(COMMON + ["--scenario", "capacity", "--subscribers", "30",
                                "--json", str(out)]) == 0
    rows = load([str(out)])
    best = max(r["delivered_per_s"] for r in rows if r["scenario"] == "fanout")
    text = report(rows)
    assert "### fanout" in text and "### capacity" in text
    assert f"| gogin | **{best:,.0f}** |" in text
    cap = next(r for r in rows if r["scenario"] == "capacity")
    assert cap["connected"] == 30 and cap["loss"] == 0
    assert f"| gogin | 30 | {cap['connects_per_s']:,.0f} |" in text
    assert "best peer" not in text


def test_reconnect_storm_script_small():
    """benchmarks/reconnect_storm.py end to end at a small size: every way connects every
    client and delivers, the cold token storm checks every token (misses), the warm one
    reconnects from the cache (hits) (the 10,000-client numbers are in
    benchmarks/RESULTS.md)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent.parent
    run = subprocess.run([sys.executable, str(root / "benchmarks" / "reconnect_storm.py"),
                          "--clients", "200", "--duration", "1"],
                         cwd=root, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    for name in ("direct", "callback", "token-cold", "token-warm"):
        assert any(line.startswith(f"{name} ") and "200 connected" in line and "all" in line
                   for line in lines), run.stdout
    caches = [line for line in lines if "token cache during it" in line]
    assert "0 hits, 200 misses" in caches[0], run.stdout        # cold: every token checked
    assert "200 hits, 0 misses" in caches[1], run.stdout        # warm: none checked again


def test_bisect_step_halves_between_best_pass_and_first_fail_above():
    from gogin.bench.cli import bisect_step

    def rows(*steps):
        return [{"rate_target": r, "pass": ok} for r, ok in steps]

    assert bisect_step(rows((100, True), (200, True), (400, False), (800, False))) == \
        (200, 300, 400)
    # a pass above a failure (a noisy step): the best pass counts, the failure below it not
    assert bisect_step(rows((100, False), (200, True), (300, False))) == (200, 250, 300)
    assert bisect_step(rows((100, True), (200, True))) is None            # nothing failed
    assert bisect_step(rows((100, False), (200, False))) is None          # nothing passed
    assert bisect_step(rows((100, True), (101, False))) is None           # no rate between
