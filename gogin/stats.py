"""Channel information and statistics in push-stream's formats (/pub answers, /channels-stats);
/metrics is gogin/metrics.py.

push-stream picks the format from the request's Accept header (plain, json, yaml, xml, x-json,
x-yaml; JSON by default) and fills fixed patterns (include/ngx_http_push_stream_module_utils.h
of the module): numbers are bare integers in every format, only by_worker's pid is a JSON
string.  The patterns below give the same bytes.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Optional
from xml.sax.saxutils import escape as xml_escape

from gogin.publish import BACKTRACK, json_str


@dataclass(frozen=True)
class InfoFormat:
    """One push-stream content subtype: the patterns of its answers (str.format fields)."""
    subtype: str
    content_type: str
    item: str               # one channel: {channel} {published} {stored} {subscribers}
    group_head: str         # several channels: {hostname} {time} {channels} {wildcard} {uptime}
    group_item: str         # every channel but the last
    group_last_item: str
    group_tail: str
    summarized: str         # no id: ... {by_worker}
    worker_item: str        # {pid} {subscribers} {uptime}; every worker but the last
    worker_last_item: str
    escape: object          # how a channel id or the hostname is inserted


def _as_is(s: str) -> str:
    return s


def _plain() -> InfoFormat:
    chan = ("channel: {channel}\r\npublished_messages: {published}\r\n"
            "stored_messages: {stored}\r\nactive_subscribers: {subscribers}")
    worker = "  pid: {pid}\r\n  subscribers: {subscribers}\r\n  uptime: {uptime}"
    return InfoFormat(
        "plain", "text/plain", chan + "\r\n",
        "hostname: {hostname}, time: {time}, channels: {channels}, "
        "wildcard_channels: {wildcard}, uptime: {uptime}, infos: \r\n",
        chan + ",\r\n", chan, "\r\n",
        "hostname: {hostname}\r\ntime: {time}\r\nchannels: {channels}\r\n"
        "wildcard_channels: {wildcard}\r\npublished_messages: {published}\r\n"
        "stored_messages: {stored}\r\nmessages_in_trash: {messages_in_trash}\r\n"
        "channels_in_delete: {channels_in_delete}\r\nchannels_in_trash: {channels_in_trash}\r\n"
        "subscribers: {subscribers}\r\nuptime: {uptime}\r\nby_worker:\r\n{by_worker}\r\n",
        worker + ",\r\n", worker, _as_is)


def _json(subtype: str, content_type: str) -> InfoFormat:
    # channel ids are JSON-escaped (the module inserts them raw: a '"' would break its JSON)
    chan = ('{{"channel": "{channel}", "published_messages": {published}, '
            '"stored_messages": {stored}, "subscribers": {subscribers}}}')
    worker = '{{"pid": "{pid}", "subscribers": {subscribers}, "uptime": {uptime}}}'
    return InfoFormat(
        subtype, content_type, chan + "\r\n",
        '{{"hostname": "{hostname}", "time": "{time}", "channels": {channels}, '
        '"wildcard_channels": {wildcard}, "uptime": {uptime}, "infos": [\r\n',
        chan + ",\r\n", chan + "\r\n", "]}\r\n",
        '{{"hostname": "{hostname}", "time": "{time}", "channels": {channels}, '
        '"wildcard_channels": {wildcard}, "published_messages": {published}, '
        '"stored_messages": {stored}, "messages_in_trash": {messages_in_trash}, '
        '"channels_in_delete": {channels_in_delete}, "channels_in_trash": {channels_in_trash}, '
        '"subscribers": {subscribers}, "uptime": {uptime}, "by_worker": [\r\n'
        '{by_worker}\r\n]}}\r\n',
        worker + ",\r\n", worker, json_str)


def _yaml(subtype: str, content_type: str) -> InfoFormat:
    chan = ("  channel: {channel}\r\n  published_messages: {published}\r\n"
            "  stored_messages: {stored}\r\n  subscribers: {subscribers}")
    worker = "    pid: {pid}\r\n    subscribers: {subscribers}\r\n    uptime: {uptime}"
    return InfoFormat(
        subtype, content_type, chan + "\r\n",
        "hostname: {hostname}\r\ntime: {time}\r\nchannels: {channels}\r\n"
        "wildcard_channels: {wildcard}\r\nuptime: {uptime}\r\ninfos: \r\n",
        " -\r\n" + chan + "\r\n", " -\r\n" + chan, "\r\n",
        "  hostname: {hostname}\r\n  time: {time}\r\n  channels: {channels}\r\n"
        "  wildcard_channels: {wildcard}\r\n  published_messages: {published}\r\n"
        "  stored_messages: {stored}\r\n  messages_in_trash: {messages_in_trash}\r\n"
        "  channels_in_delete: {channels_in_delete}\r\n"
        "  channels_in_trash: {channels_in_trash}\r\n  subscribers: {subscribers}\r\n"
        "  uptime: {uptime}\r\n  by_worker:\r\n{by_worker}\r\n",
        "   -\r\n" + worker + "\r\n", "   -\r\n" + worker, _as_is)


def _xml() -> InfoFormat:
    decl = '<?xml version="1.0" encoding="UTF-8" ?>\r\n'
    chan = ("<channel>\r\n  <name>{channel}</name>\r\n"
            "  <published_messages>{published}</published_messages>\r\n"
            "  <stored_messages>{stored}</stored_messages>\r\n"
            "  <subscribers>{subscribers}</subscribers>\r\n</channel>\r\n")
    worker = ("<worker>\r\n  <pid>{pid}</pid>\r\n  <subscribers>{subscribers}</subscribers>\r\n"
              "  <uptime>{uptime}</uptime>\r\n</worker>\r\n")

    def lines(*pairs):          # (tag, field) -> "  <tag>{field}</tag>" lines
        return "".join(f"  <{tag}>{{{field}}}</{tag}>\r\n" for tag, field in pairs)

    head = lines(("hostname", "hostname"), ("time", "time"), ("channels", "channels"),
                 ("wildcard_channels", "wildcard"))
    return InfoFormat(
        "xml", "application/xml", decl + chan + "\r\n",
        decl + "<root>\r\n" + head + lines(("uptime", "uptime")) + "  <infos>\r\n",
        chan, chan, "  </infos>\r\n</root>\r\n",
        decl + "<infos>\r\n" + head
        + lines(("published_messages", "published"), ("stored_messages", "stored"),
                ("messages_in_trash", "messages_in_trash"),
                ("channels_in_delete", "channels_in_delete"),
                ("channels_in_trash", "channels_in_trash"), ("subscribers", "subscribers"),
                ("uptime", "uptime"))
        + "  <by_worker>{by_worker}</by_worker>\r\n</infos>\r\n",
        worker, worker, xml_escape)


# in the module's order: the first subtype an Accept header names wins
FORMATS = [_plain(), _json("json", "application/json"), _yaml("yaml", "application/yaml"),
           _xml(), _json("x-json", "text/x-json"), _yaml("x-yaml", "text/x-yaml")]
JSON = FORMATS[1]


def negotiate(accept: Optional[str]) -> InfoFormat:
    """push-stream's choice (utils.c, match_channel_info_format_and_content_type): after each
    '/' of the Accept header, the first subtype the text starts with; JSON when none does
    (so "*/*" and no Accept give JSON, "text/html,...,application/xml" gives XML)."""
    if accept:
        for part in accept.split("/")[1:]:
            for fmt in FORMATS:
                if part.startswith(fmt.subtype):
                    return fmt
    return JSON


def hostname() -> str:
    # nginx's cycle hostname: gethostname(), lower-cased (ngx_cycle.c)
    return socket.gethostname().lower()


def iso_now() -> str:
    # push-stream's ISO 8601 time of the answer, in UTC (ngx_gmtime in utils.c)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


def _uptime(server) -> int:
    return int(time.monotonic() - server.started)


def channel_counts(server) -> tuple[int, int]:
    """(normal, wildcard) channels of the whole server: the head of every group answer."""
    wildcard = server.count_wildcard_channels()
    return len(server.hub.channel_names()) - wildcard, wildcard


def _row(fmt: InfoFormat, template: str, ch) -> str:
    return template.format(channel=fmt.escape(ch.name), published=ch.published,
                           stored=ch.stored, subscribers=ch.subscribers)


def channels_info(server, fmt: InfoFormat, channels: list) -> bytes:
    """Existing channels (Channel objects) in request order: one channel in the item format,
    several in the group format (module.c, send_response_channels_info_detailed)."""
    if len(channels) == 1:
        return _row(fmt, fmt.item, channels[0]).encode("utf-8")
    return group(server, fmt, channels)


def group(server, fmt: InfoFormat, channels: list) -> bytes:
    normal, wildcard = channel_counts(server)
    out = [fmt.group_head.format(hostname=fmt.escape(hostname()), time=iso_now(),
                                 channels=normal, wildcard=wildcard, uptime=_uptime(server))]
    for i, ch in enumerate(channels):
        out.append(_row(fmt, fmt.group_last_item if i == len(channels) - 1 else fmt.group_item,
                        ch))
    out.append(fmt.group_tail)
    return "".join(out).encode("utf-8")


def all_channels(server, fmt: InfoFormat, prefix: str = "") -> bytes:
    """?id=ALL, ?id=prefix*: every channel whose id starts with prefix, in creation order (the
    module walks its channel queue; ids after the '*' are ignored, publisher.c)."""
    hub = server.hub
    chans = [hub.channel(n) for n in hub.channel_names() if n.startswith(prefix)]
    return group(server, fmt, [c for c in chans if c is not None])


def summarized(server, fmt: InfoFormat) -> bytes:
    """No id: the whole server.  gogin frees deleted channels and dropped messages at once,
    so nothing is ever waiting in push-stream's trash or delete queues (always 0)."""
    st = server.hub.stats()
    normal, wildcard = channel_counts(server)
    uptime = _uptime(server)
    nodes = getattr(server.broker, "nodes", None)
    if nodes:
        # a shared broker: every live node is a worker of the cluster (its pid; its
        # subscribers as of its last heartbeat, this node's as of now)
        me = os.getpid()
        rows = [(d["pid"], st["subscribers"] if d["id"] == server.broker.node_id
                 else d["subscribers"], d["uptime"]) for d in nodes]
        if not any(d["id"] == server.broker.node_id for d in nodes):
            rows.append((me, st["subscribers"], uptime))
    else:
        rows = [(os.getpid(), st["subscribers"], uptime)]
    items = [(fmt.worker_last_item if i == len(rows) - 1 else fmt.worker_item).format(
        pid=pid, subscribers=subs, uptime=up) for i, (pid, subs, up) in enumerate(rows)]
    worker = "".join(items)
    return fmt.summarized.format(
        hostname=fmt.escape(hostname()), time=iso_now(), channels=normal, wildcard=wildcard,
        published=st["published"], stored=st["stored_messages"], messages_in_trash=0,
        channels_in_delete=0, channels_in_trash=0, subscribers=sum(r[1] for r in rows),
        uptime=uptime, by_worker=worker).encode("utf-8")


def requested_ids(ids: str) -> list[str]:
    """'a/b.b3/c' -> ['a', 'b', 'c']: the module's channel path parser drops the .bN suffix
    (utils.c, parse_channels_ids_from_path)."""
    out = []
    for part in ids.split("/"):
        m = BACKTRACK.match(part)
        name = m.group(1) if m else part
        if name:
            out.append(name)
    return out
