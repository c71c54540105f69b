"""/metrics parsed with prometheus_client's own text parser: every gogin_* name of the docs is
there with its type, the process metrics too, and the counters move with the traffic."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gogin.metrics import (AUTH_CALLS, BROKER_METRICS, HUB_METRICS, NATS_CONNECTED,
                           NATS_METRICS, NATS_REJECTED, TOKEN_CACHE)
from gogin_e2e import ROOT, metric_values, parse_default, publish, recv, ws_connect


async def scrape(http, g) -> dict:
    """{sample name: value} of one scrape (samples without labels), checked for the types."""
    async with http.get(f"{g.base}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = (await r.read()).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind, _, _ in HUB_METRICS:
        base = name.removesuffix("_total") if kind == "counter" else name
        assert families[base].type == kind, name
    values = metric_values(text)       # the helper the other tests read /metrics with
    assert values == {s.name: s.value for f in families.values() for s in f.samples
                      if not s.labels}
    return values


async def test_metrics_parse_and_move(gogin, http, chan):
    g = gogin
    before = await scrape(http, g)
    names = [m[0] for m in HUB_METRICS] + [AUTH_CALLS[0]]
    assert all(n in before for n in names), sorted(set(names) - set(before))
    # the standard collectors of prometheus_client, on gogin's private registry
    assert before["process_resident_memory_bytes"] > 0
    assert before["process_open_fds"] > 0

    async with ws_connect(f"{g.ws}/ws/{chan}") as ws:
        for i in range(3):
            assert (await publish(http, g.base, chan, f"m{i}"))[0] == 200
            assert parse_default(await recv(ws))["text"] == f"m{i}"
        during = await scrape(http, g)
    assert during["gogin_published_total"] == before["gogin_published_total"] + 3
    assert during["gogin_subscribers"] == before["gogin_subscribers"] + 1
    assert during["gogin_connections"] >= 2        # the WebSocket and the scrape itself
    assert during["gogin_delivered_frames_total"] >= before["gogin_delivered_frames_total"] + 3
    assert during["gogin_stored_messages"] == before["gogin_stored_messages"] + 3
    assert during["gogin_requests_total"] > before["gogin_requests_total"]


def test_every_metric_is_documented():
    doc = (Path(ROOT) / "docs" / "protocol.md").read_text()
    table = set(re.findall(r"^\| `(gogin_\w+)` \|", doc, re.M))
    assert table == {m[0] for m in HUB_METRICS + TOKEN_CACHE + BROKER_METRICS} | \
        {AUTH_CALLS[0], "gogin_cluster_nodes", "gogin_cluster_subscribers"} | \
        {m[0] for m in NATS_METRICS} | {NATS_REJECTED[0], NATS_CONNECTED[0]}
