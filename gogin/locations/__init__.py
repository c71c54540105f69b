"""Locations: what a path does (publisher, subscriber in one mode, stats, health, metrics,
static files), configured like nginx locations.  Each request reaches exactly one.

One module per room (docs/architecture.md, The rooms of the Python layer): ``base`` (the
context, the base class, shared request parsing), ``http`` (answers, CORS), ``publisher``,
``subscriber``, ``admin`` (stats, health, metrics), ``static``, ``router`` (the hub's
callbacks).  A location is given a ``LocationContext``, never the Server.  The names below are
what the package offered as one module; they stay importable from ``gogin.locations``."""

from __future__ import annotations

from gogin.locations.admin import HealthLocation, MetricsLocation, StatsLocation
from gogin.locations.base import (
    ALLOW_GET,
    JSONP_CALLBACK,
    WS_HEADERS_EXPLAIN,
    WS_VERSION_EXPLAIN,
    WS_VERSIONS,
    ChannelRow,
    ClientState,
    Location,
    LocationContext,
    TokenState,
    answer_channels_info,
    broker_answer,
    jsonp_callback,
    position_headers,
    resume_position,
    websocket_key,
)
from gogin.locations.http import NO_CACHE, Answers
from gogin.locations.publisher import (
    PUBLISHER_METHODS,
    PublisherLocation,
    PublishItem,
)
from gogin.locations.router import Router
from gogin.locations.static import StaticLocation
from gogin.locations.subscriber import (
    MAX_PENDING_PUBLISHES,
    STREAMING,
    SubscriberLocation,
    TokenRefresh,
)

__all__ = [
    "ALLOW_GET", "JSONP_CALLBACK", "MAX_PENDING_PUBLISHES", "NO_CACHE",
    "PUBLISHER_METHODS", "ROLES", "STREAMING", "WS_HEADERS_EXPLAIN", "WS_VERSIONS",
    "WS_VERSION_EXPLAIN", "Answers", "ChannelRow", "ClientState", "HealthLocation", "Location",
    "LocationContext", "MetricsLocation", "PublishItem", "PublisherLocation", "Router",
    "StaticLocation", "StatsLocation", "SubscriberLocation", "TokenRefresh", "TokenState",
    "answer_channels_info", "broker_answer", "build", "jsonp_callback", "position_headers",
    "resume_position", "websocket_key",
]

ROLES = {"publisher": PublisherLocation, "subscriber": SubscriberLocation,
         "stats": StatsLocation, "health": HealthLocation, "metrics": MetricsLocation,
         "static": StaticLocation}


def build(ctx: LocationContext, cfgs) -> list[Location]:
    """Locations sorted by path length, longest first: the most specific prefix wins."""
    locs = [ROLES[c.role](ctx, c) for c in cfgs]
    return sorted(locs, key=lambda loc: len(loc.path), reverse=True)
