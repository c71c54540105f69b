"""Summarise gogin-bench JSON lines into the side-by-side tables of benchmarks/RESULTS.md.

    python -m gogin.bench.report build/bench/*.jsonl [--target-of-interest gogin]

Per scenario and target: the best passing step (zero loss, p99 under the run's limit), and
gogin's ratio to the best peer.  Fanout scenarios rank by delivered msgs/s, routing by
publishes/s; capacity reports connections, connect rate, server RSS per connection and the
time one broadcast took to reach every connection.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

ORDER = ["fanout", "fanout (EventSource)", "wide", "routing", "capacity"]


def scenario_of(r: dict) -> str:
    """The scenario's name, EventSource runs apart from the WebSocket ones."""
    return r["scenario"] + (" (EventSource)" if r.get("subscribe") == "sse" else "")


def load(paths: list[str]) -> list[dict]:
    rows = []
    for p in paths:
        with open(p) as fh:
            rows += [json.loads(line) for line in fh if line.strip()]
    return rows


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def best_step(rows: list[dict], key: str) -> dict | None:
    ok = [r for r in rows if r.get("pass") and r.get(key)]
    return max(ok, key=lambda r: r[key]) if ok else None


def ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "-"
    return f"{ours / theirs:,.1f}×"


def throughput_table(scenario: str, by_target: dict, key: str, label: str, me: str) -> str:
    out = [f"### {scenario}", "",
           f"| target | best passing {label} | at publishes/s | p50 / p99 ms | client CPU | "
           f"server CPU | highest delivered msgs/s with zero loss (any p99) | steps run |",
           "|---|---|---|---|---|---|---|---|"]
    best = {}
    for tgt, rows in by_target.items():
        b = best_step(rows, key)
        best[tgt] = b[key] if b else None
        lossless = [r for r in rows if r["loss"] == 0 and not r.get("publish_errors")]
        top = max((r["delivered_per_s"] or 0 for r in lossless), default=None)
        if b:
            out.append(f"| {tgt} | **{b[key]:,.0f}** | {_f(b['publishes_per_s'], ',.0f')} | "
                       f"{_f(b['p50_ms'], '.1f')} / {_f(b['p99_ms'], '.1f')} | "
                       f"{_f(b['client_cpu_pct'], '.0f')} % | {_f(b['server_cpu_pct'], '.0f')} % | "
                       f"{_f(top, ',.0f')} | {len(rows)} |")
        else:
            out.append(f"| {tgt} | no step passed | - | - | - | - | {_f(top, ',.0f')} | "
                       f"{len(rows)} |")
    peers = {t: v for t, v in best.items() if t != me and v}
    if me in best and peers:
        top_peer = max(peers, key=peers.get)
        out += ["", f"{me} / best peer ({top_peer}): **{ratio(best[me], peers[top_peer])}**"
                    f" ({_f(best[me], ',.0f')} vs {_f(peers[top_peer], ',.0f')} {label})."]
    return "\n".join(out)


def capacity_table(by_target: dict, me: str) -> str:
    out = ["### capacity", "",
           "| target | connections | connect rate /s | server RSS per connection | "
           "one broadcast reaches all (ms) | loss |",
           "|---|---|---|---|---|---|"]
    rss = {}
    for tgt, rows in by_target.items():
        r = rows[0]
        rss[tgt] = r.get("server_rss_per_connection")
        out.append(f"| {tgt} | {r.get('connected', 0):,} | {_f(r.get('connects_per_s'), ',.0f')} | "
                   f"{_f(rss[tgt], ',.0f')} B | {_f(r.get('broadcast_all_ms'), ',.1f')} | "
                   f"{r['loss']} |")
    peers = {t: v for t, v in rss.items() if t != me and v}
    if rss.get(me) and peers:
        lean = min(peers, key=peers.get)
        out += ["", f"Server memory per connection: {me} {rss[me]:,.0f} B, the leanest peer "
                    f"({lean}) {peers[lean]:,.0f} B: **{peers[lean] / rss[me]:,.1f}× less**."]
    return "\n".join(out)


def report(rows: list[dict], me: str = "gogin") -> str:
    by_scen: dict = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_scen[scenario_of(r)][r["target"]].append(r)
    parts = []
    for scen in sorted(by_scen, key=lambda s: ORDER.index(s) if s in ORDER else 99):
        by_target = by_scen[scen]
        any_row = next(iter(by_target.values()))[0]
        parts.append(f"<!-- {scen}: {any_row['subscribers']:,} subscribers × "
                     f"{any_row['channels']:,} channels, {any_row['size']} B payloads -->")
        if scen == "capacity":
            parts.append(capacity_table(by_target, me))
        elif scen == "routing":
            parts.append(throughput_table(scen, by_target, "publishes_per_s", "publishes/s", me))
        else:
            parts.append(throughput_table(scen, by_target, "delivered_per_s",
                                          "delivered msgs/s", me))
    versions = {r["target"]: r.get("version", "?") for r in rows}
    parts.append("Versions: " + "; ".join(f"{t}: {v}" for t, v in versions.items()) + ".")
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m gogin.bench.report", description=__doc__)
    p.add_argument("files", nargs="+", help="JSON lines written by gogin-bench --json")
    p.add_argument("--target-of-interest", default="gogin")
    p.add_argument("--plots", metavar="DIR", help="also write DIR/<scenario>.png")
    a = p.parse_args(argv)
    rows = load(a.files)
    sys.stdout.write(report(rows, a.target_of_interest))
    if a.plots:
        from pathlib import Path
        from gogin.bench.cli import plot
        for scen in dict.fromkeys(scenario_of(r) for r in rows):
            if scen == "capacity":
                continue                # one step per target: nothing to plot against rate
            rs = [r for r in rows if scenario_of(r) == scen]
            r0 = rs[0]
            name = scen.replace(" (EventSource)", "-sse")
            plot(rs, str(Path(a.plots) / f"{name}.png"),
                 f"{scen}: {r0['subscribers']:,} subscribers × {r0['channels']:,} channels, "
                 f"{r0['size']} B payloads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
