"""/metrics for Prometheus, through prometheus_client.

The core counts everything itself (Hub.stats(): C integers bumped on its hot paths); this
module only reads them when Prometheus scrapes, so a published or delivered message costs no
Python.  Each Server has a private CollectorRegistry (never the global one: an application
embedding several servers, or using prometheus_client for itself, must not see metrics
registered twice) with the standard process and platform collectors beside gogin's.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4     # the text format generate_latest writes

# (metric name, kind, help, key of Hub.stats()).  The names are those /metrics has always
# served: dashboards and alerts depend on them, so a name here never changes.
HUB_METRICS = [
    ("gogin_connections", "gauge", "Open client connections.", "connections"),
    ("gogin_subscribers", "gauge", "Channel subscriptions.", "subscribers"),
    ("gogin_channels", "gauge", "Channels known to this node.", "channels"),
    ("gogin_accepted_total", "counter", "Connections accepted.", "accepted"),
    ("gogin_rejected_total", "counter", "Connections refused past max_connections.",
     "rejected"),
    ("gogin_requests_total", "counter", "HTTP requests read.", "requests"),
    ("gogin_published_total", "counter", "Messages published.", "published"),
    ("gogin_delivered_frames_total", "counter", "Frames written to clients.",
     "delivered_frames"),
    ("gogin_delivered_bytes_total", "counter", "Bytes written to clients.", "delivered_bytes"),
    ("gogin_queued_bytes", "gauge", "Bytes queued for clients, not yet written.",
     "queued_bytes"),
    ("gogin_dropped_total", "counter", "Messages skipped for slow consumers (drop policy).",
     "dropped"),
    ("gogin_closed_slow_total", "counter", "Slow consumers closed (close policy).",
     "closed_slow"),
    ("gogin_writes_total", "counter", "sendmsg calls (one per connection per loop turn).",
     "writes"),
    ("gogin_stored_messages", "gauge", "Messages in storage, all channels.",
     "stored_messages"),
    ("gogin_deflate_compressed_total", "counter",
     "Messages compressed (permessage-deflate): once per message per window size, whatever "
     "the number of subscribers.", "deflate_compressed"),
    ("gogin_deflate_bytes_in_total", "counter", "Bytes before compression.",
     "deflate_bytes_in"),
    ("gogin_deflate_bytes_out_total", "counter", "Bytes after compression.",
     "deflate_bytes_out"),
    ("gogin_deflate_inflated_total", "counter", "Compressed client messages inflated.",
     "deflate_inflated"),
    ("gogin_stored_bytes", "gauge", "Bytes charged to message storage.", "stored_bytes"),
    ("gogin_evicted_messages_total", "counter",
     "Stored messages dropped by a limit (count, TTL, byte cap).", "evicted_messages"),
    ("gogin_client_messages_total", "counter", "WebSocket messages received from clients.",
     "messages_in"),
]
# the cache of verified tokens (gogin.tokens.GrantCache), when [auth.token] has one
TOKEN_CACHE = [
    ("gogin_token_cache_hits_total", "counter",
     "Token connects answered from the cache of verified tokens (no signature check).", "hits"),
    ("gogin_token_cache_misses_total", "counter",
     "Token connects not in the cache, or expired there (checked by PyJWT).", "misses"),
    ("gogin_token_cache_entries", "gauge", "Verified tokens in the cache.", None),
    ("gogin_token_cache_bytes", "gauge",
     "Bytes charged to the cache (bounded by auth.token.cache_bytes).", "size"),
]
AUTH_CALLS = ("gogin_auth_calls_total", "Callbacks made to the main server.")
# a shared broker's counters (Broker.state()): (metric name, help, key)
BROKER_METRICS = [
    ("gogin_broker_up", "1 when every broker connection is up, else 0.", None),
    ("gogin_broker_published_total", "Publishes the broker took.", "published"),
    ("gogin_broker_publish_errors_total", "Publishes the broker refused or never answered "
     "(answered 503).", "publish_errors"),
    ("gogin_broker_received_total", "Messages received from the broker.", "received_received"),
    ("gogin_broker_delivered_total", "... delivered to this node's subscribers.",
     "received_delivered"),
    ("gogin_broker_duplicates_total", "... dropped: this node had them already.",
     "received_duplicates"),
    ("gogin_broker_gaps_total", "Gap signals sent (messages lost or the broker's data lost).",
     "received_gaps"),
    ("gogin_broker_fills_total", "Channel history reads (after a jump, a subscribe, a "
     "reconnect).", "fills"),
    ("gogin_broker_reconnects_total", "Broker connections (re)established.", "reconnects"),
    ("gogin_broker_errors_total", "Broker failures, by kind.", "errors"),
]


class HubCollector:
    """Reads the server's counters at scrape time; holds no state of its own."""

    def __init__(self, server):
        self.server = server

    def collect(self):
        st = self.server.hub.stats()
        for name, kind, help_, key in HUB_METRICS:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_, value=st[key])
        verifier = getattr(self.server, "tokens", None)
        cache = verifier.cache if verifier is not None else None
        if cache is not None:
            for name, kind, help_, attr in TOKEN_CACHE:
                family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                value = len(cache) if attr is None else getattr(cache, attr)
                yield family(name, help_, value=value)
        name, help_ = AUTH_CALLS
        yield CounterMetricFamily(name, help_, value=self.server.auth_calls())
        broker = self.server.broker
        if not broker.shared:
            return
        nodes = getattr(broker, "nodes", None) or []
        yield GaugeMetricFamily("gogin_cluster_nodes", "Live nodes sharing the broker (as of "
                                "this node's last heartbeat).", value=len(nodes))
        yield GaugeMetricFamily("gogin_cluster_subscribers", "Subscriptions on every live "
                                "node (each as of its last heartbeat).",
                                value=sum(d.get("subscribers", 0) for d in nodes))
        bst = broker.state()
        for name, help_, key in BROKER_METRICS:
            if key is None:
                yield GaugeMetricFamily(name, help_, value=1 if bst["state"] == "ok" else 0)
            elif key == "errors":
                fam = CounterMetricFamily(name, help_, labels=["kind"])
                for kind, n in sorted(bst.get("errors", {}).items()):
                    fam.add_metric([kind], n)
                yield fam
            else:
                yield CounterMetricFamily(name, help_, value=bst.get(key, 0))


# NATS ingest (gogin/ingest.py), when [nats] url is set: (name, kind, help, Ingest attribute)
NATS_METRICS = [
    ("gogin_nats_ingested_total", "counter", "Messages from NATS published into channels.",
     "ingested"),
    ("gogin_nats_redelivered_total", "counter",
     "JetStream messages delivered again (num_delivered > 1).", "redelivered"),
    ("gogin_nats_duplicates_total", "counter",
     "Redelivered messages this node had published: acknowledged, not published again.",
     "duplicates"),
    ("gogin_nats_replayed_total", "counter",
     "Messages read again from the stream at start into history.", "replayed"),
    ("gogin_nats_publish_failures_total", "counter",
     "Messages whose publish failed (JetStream: redelivered).", "publish_failures"),
    ("gogin_nats_reconnects_total", "counter", "Reconnections to NATS.", "reconnects"),
]
NATS_REJECTED = ("gogin_nats_rejected_total",
                 "Messages from NATS that could not be used, by kind.")
NATS_CONNECTED = ("gogin_nats_connected", "1 while connected to NATS.")


class IngestCollector:
    """NATS ingest's counters, read at scrape time; nothing without ingest."""

    def __init__(self, server):
        self.server = server

    def collect(self):
        ing = getattr(self.server, "ingest", None)
        if ing is None:
            return
        for name, kind, help_, attr in NATS_METRICS:
            family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            yield family(name, help_, value=getattr(ing, attr))
        rej = CounterMetricFamily(*NATS_REJECTED, labels=["kind"])
        for kind, n in ing.rejected.items():
            rej.add_metric([kind], n)
        yield rej
        yield GaugeMetricFamily(*NATS_CONNECTED, value=1 if ing.connected() else 0)


def registry_for(server) -> CollectorRegistry:
    """The private registry of one server: gogin's metrics, then process_* and python_info."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(server))
    registry.register(IngestCollector(server))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
