"""Statistics: /channels-stats in push-stream's JSON formats, /metrics for Prometheus."""

from __future__ import annotations

import fnmatch
import os
import socket
import time

from gogin.publish import channel_info_of, group_info, json_str


def iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime())


def summarized(server) -> bytes:
    """push-stream's summarized statistics (no id)."""
    hub = server.hub
    st = hub.stats()
    uptime = int(time.monotonic() - server.started)
    wildcard = server.count_wildcard_channels()
    return (
        f'{{"hostname": "{json_str(socket.gethostname())}", "time": "{iso_now()}", '
        f'"channels": "{st["channels"] - wildcard}", "wildcard_channels": "{wildcard}", '
        f'"published_messages": "{st["published"]}", '
        f'"stored_messages": "{st["stored_messages"]}", '
        f'"messages_in_trash": "0", "channels_in_trash": "0", '
        f'"subscribers": "{st["subscribers"]}", "uptime": "{uptime}", "by_worker": [\r\n'
        f'{{"pid": "{os.getpid()}", "subscribers": "{st["subscribers"]}", "uptime": "{uptime}"}}'
        f'\r\n]}}\r\n').encode("utf-8")


def detailed(server, pattern: str) -> bytes:
    """?id=ALL (every channel) or ?id=prefix_* (a glob) in the group format."""
    hub = server.hub
    names = sorted(hub.channel_names())
    if pattern != "ALL":
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    infos = [channel_info_of(hub, n) for n in names]
    wildcard = server.count_wildcard_channels()
    return group_info(socket.gethostname(), iso_now(), len(names), wildcard,
                      int(time.monotonic() - server.started), infos)


def prometheus(server) -> bytes:
    st = server.hub.stats()
    lines = []

    def metric(name, kind, help_, value):
        lines.append(f"# HELP gogin_{name} {help_}")
        lines.append(f"# TYPE gogin_{name} {kind}")
        lines.append(f"gogin_{name} {value}")

    metric("connections", "gauge", "Open client connections.", st["connections"])
    metric("subscribers", "gauge", "Channel subscriptions.", st["subscribers"])
    metric("channels", "gauge", "Channels known to this node.", st["channels"])
    metric("accepted_total", "counter", "Connections accepted.", st["accepted"])
    metric("rejected_total", "counter", "Connections refused past max_connections.",
           st["rejected"])
    metric("requests_total", "counter", "HTTP requests read.", st["requests"])
    metric("published_total", "counter", "Messages published.", st["published"])
    metric("delivered_frames_total", "counter", "Frames written to clients.",
           st["delivered_frames"])
    metric("delivered_bytes_total", "counter", "Bytes written to clients.",
           st["delivered_bytes"])
    metric("queued_bytes", "gauge", "Bytes queued for clients, not yet written.",
           st["queued_bytes"])
    metric("dropped_total", "counter", "Messages skipped for slow consumers (drop policy).",
           st["dropped"])
    metric("closed_slow_total", "counter", "Slow consumers closed (close policy).",
           st["closed_slow"])
    metric("writes_total", "counter", "sendmsg calls (one per connection per loop turn).",
           st["writes"])
    metric("stored_messages", "gauge", "Messages in storage, all channels.",
           st["stored_messages"])
    metric("stored_bytes", "gauge", "Bytes charged to message storage.", st["stored_bytes"])
    metric("evicted_messages_total", "counter",
           "Stored messages dropped by a limit (count, TTL, byte cap).", st["evicted_messages"])
    metric("client_messages_total", "counter", "WebSocket messages received from clients.",
           st["messages_in"])
    metric("auth_calls_total", "counter", "Callbacks made to the main server.",
           server.auth_calls())
    return ("\n".join(lines) + "\n").encode("utf-8")
