"""The soak (benchmarks/soak.py, issue 13) in small: 30 s of mixed traffic against a real
gogin-server; RSS flat after the warm-up, no fd left behind, slow readers closed, resumes
exact.  The 10-minute run and its numbers are in docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest
import sys

from gogin_e2e import ROOT

SOAK = ROOT / "benchmarks" / "soak.py"


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = mod           # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.rss      # its pass bound includes RSS growth: a release-build fact
def test_soak_30s(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--duration", "30", "--warmup", "10", "--sample", "2",
         "--channels", "10", "--ws", "60", "--sse", "10", "--longpoll", "10", "--slow", "2",
         "--rate", "100", "--json", str(out)],
        cwd=str(ROOT), capture_output=True, text=True, timeout=75)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    r = json.loads(out.read_text())
    assert r["failures"] == [] and r["gogin_exit"] == 0
    c = r["counts"]
    # the traffic really was mixed: every kind of client did its part
    assert c["ws_sessions"] > 100 and c["ws_messages"] > 0
    assert c["sse_sessions"] > 10 and c["lp_answers"] > 100
    assert c["resumes_checked"] > 100 and c["resume_errors"] == []
    assert c["published"] > 2500 and c["publish_errors"] == 0
    assert c["slow_closed"] >= 2 and c["slow_not_closed"] == 0
    assert r["gogin_closed_slow_total"] >= c["slow_closed"]
    assert not c["keeper_closed"] and c["keeper_messages"] > 0
    assert r["fds"]["end_after_drain"] <= r["fds"]["start"] < r["fds"]["max"]
    assert r["rss_growth_after_warmup_kib"] <= 8 * 1024


def test_verdict_catches_a_leak():
    """The checks of the soak fail when they should (what the run above relies on)."""
    soak = load_soak()
    load = soak.Load(duration=30, warmup=10, sample=2, channels=10, ws=1, sse=1, longpoll=1,
                     slow=1, rate=1, slow_rate=1, slow_size=1, max_backpressure=1,
                     max_growth_mib=8)
    good = {"counts": soak.Counts(ws_messages=1, sse_messages=1, lp_answers=1, published=1,
                                  resumes_checked=1, slow_closed=1, keeper_messages=1).__dict__,
            "gogin_closed_slow_total": 1, "rss_growth_after_warmup_kib": 100,
            "fds": {"start": 14, "end_after_drain": 14}}
    assert soak.verdict(good, load) == []
    leak = dict(good, fds={"start": 14, "end_after_drain": 15})
    assert any("fds leak" in f for f in soak.verdict(leak, load))
    grown = dict(good, rss_growth_after_warmup_kib=9 * 1024)
    assert any("RSS grew" in f for f in soak.verdict(grown, load))
    counts = dict(good["counts"], slow_not_closed=1, resume_errors=["long-poll: 3 then 5"])
    bad = soak.verdict(dict(good, counts=counts), load)
    assert any("slow readers" in f for f in bad) and any("resumes" in f for f in bad)
