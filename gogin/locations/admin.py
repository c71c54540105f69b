"""The locations that report on the node: push-stream's channel statistics, the health check
(broker and NATS ingest state) and the Prometheus metrics."""

from __future__ import annotations

import asyncio

from gogin import metrics, stats
from gogin.locations.base import (
    ALLOW_GET,
    ChannelRow,
    Location,
    answer_channels_info,
    broker_answer,
)
from gogin.locations.http import NO_CACHE
from gogin.publish import HttpError


class StatsLocation(Location):
    """push-stream's statistics location (publisher.c, channels_statistics_handler)."""

    def handle(self, conn, req):
        self.check_access(conn, req)
        if req.method != "GET":       # HEAD and OPTIONS too, as in the module
            raise HttpError(405, "Method not allowed.", [("Allow", ALLOW_GET)])
        ids = stats.requested_ids(req.query_params().get("id") or "")
        fmt = stats.negotiate(req.get("accept"))
        hdrs = [("Content-Type", fmt.content_type)] + NO_CACHE
        if not ids:
            return self.http.respond(conn, 200, hdrs, stats.summarized(self.ctx, fmt))
        if self.ctx.broker.shared and not any("*" in n or n == "ALL" for n in ids):
            for name in ids:
                if len(name) > self.ctx.config.limits.max_channel_id_length:
                    raise HttpError(400, "Channel id is too large.")
            task = asyncio.ensure_future(self._cluster_info(conn, ids, fmt, hdrs))
            self.ctx.track(task)
            return
        # the first id that is a pattern decides for the whole request, as in the module
        for name in ids:
            if len(name) > self.ctx.config.limits.max_channel_id_length:
                raise HttpError(400, "Channel id is too large.")
            if "*" in name:
                prefix = name[:name.index("*")]
                return self.http.respond(conn, 200, hdrs,
                                         stats.all_channels(self.ctx, fmt, prefix))
            if name == "ALL":
                return self.http.respond(conn, 200, hdrs, stats.all_channels(self.ctx, fmt))
        answer_channels_info(self.ctx, conn, req, ids)

    async def _cluster_info(self, conn, ids, fmt, hdrs):
        """A shared broker: the channels' counts as Redis has them, subscribers of every live
        node (as of their last heartbeat; this node's as of now)."""
        ctx = self.ctx
        found = await broker_answer(ctx, conn,
                                    ctx.broker.cluster_channels(list(dict.fromkeys(ids))))
        if found is None:
            return
        rows = [ChannelRow(n, *found[n]) for n in dict.fromkeys(ids) if n in found]
        if not rows:
            return self.http.error(conn, HttpError(404, "Channel not found."))
        self.http.respond(conn, 200, hdrs, stats.channels_info(ctx, fmt, rows))


class HealthLocation(Location):
    """200 "ok"; with a shared broker that is not fully connected, 503 "degraded" (publishes
    fail and new channels cannot start; connected subscribers stay).  With NATS ingest, a
    "nats: <state>" line; 503 "starting" while its start-up replay runs."""

    def handle(self, conn, req):
        self.check_access(conn, req)
        hdrs = [("Content-Type", "text/plain")] + NO_CACHE
        worker = self.ctx.worker
        if worker is not None:                  # which of the --workers answered
            hdrs.append(("X-Gogin-Worker", str(worker)))
        st = self.ctx.broker.state()
        ingest = self.ctx.ingest
        if st["state"] == "ok" and ingest is None:
            return self.http.respond(conn, 200, hdrs, b"ok\n")
        head, lines, status = "ok", [], 200
        if st["state"] != "ok":
            head, status = "degraded", 503
            lines.append(f"broker: {st['broker']} {st['state']}")
            hdrs += self.http.explain("Broker unavailable.")
        if ingest is not None:        # "nats: ok" / "disconnected" / "replaying" (503) / ...
            ready, line = ingest.health()
            if not ready:
                head, status = ("starting" if head == "ok" else head), 503
            lines.append(line)
        self.http.respond(conn, status, hdrs, "\n".join([head] + lines).encode() + b"\n")


class MetricsLocation(Location):
    """Prometheus text format (gogin/metrics.py): the core's counters read at scrape time."""

    def __init__(self, ctx, cfg):
        super().__init__(ctx, cfg)
        self.registry = metrics.registry_for(ctx)

    def handle(self, conn, req):
        self.check_access(conn, req)
        self.http.respond(conn, 200, [("Content-Type", metrics.CONTENT_TYPE)] + NO_CACHE,
                          metrics.exposition(self.registry))
