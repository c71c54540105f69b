"""/channels-stats in push-stream's JSON formats (integer numbers, CRLF separators); every
Accept format byte for byte: test_srv_info_formats.py."""

from __future__ import annotations

import re
import socket

from gogin_e2e import NO_CACHE, publish, ws_connect

TIME = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
SUMMARY = re.compile(
    rb'^\{"hostname": "(?P<host>[^"]+)", "time": "' + TIME + rb'", "channels": (?P<channels>\d+), '
    rb'"wildcard_channels": (?P<wildcard>\d+), "published_messages": (?P<published>\d+), '
    rb'"stored_messages": (?P<stored>\d+), "messages_in_trash": 0, '
    rb'"channels_in_delete": 0, "channels_in_trash": 0, "subscribers": (?P<subscribers>\d+), '
    rb'"uptime": (?P<uptime>\d+), "by_worker": \[\r\n'
    rb'\{"pid": "(?P<pid>\d+)", "subscribers": (?P<wsubs>\d+), "uptime": \d+\}\r\n'
    rb'\]\}\r\n$')
GROUP = re.compile(
    rb'^\{"hostname": "(?P<host>[^"]+)", "time": "' + TIME + rb'", "channels": (?P<channels>\d+), '
    rb'"wildcard_channels": (?P<wildcard>\d+), "uptime": \d+, "infos": \[\r\n'
    rb'(?P<infos>.*)\]\}\r\n$', re.S)


def info(ch, published, subscribers, stored=None) -> bytes:
    # message storage is on by default (docs/protocol.md, Message storage): every message is
    # kept, up to 100
    stored = min(published, 100) if stored is None else stored
    return (f'{{"channel": "{ch}", "published_messages": {published}, '
            f'"stored_messages": {stored}, "subscribers": {subscribers}}}').encode()


async def stats(http, g, **params):
    async with http.get(f"{g.base}/channels-stats", params=params) as r:
        body = await r.read()
        assert r.headers.get("Cache-Control") == NO_CACHE
        if r.status == 200:
            assert r.headers["Content-Type"] == "application/json"
        return r.status, body


async def test_channels_stats_formats(gogin, http):
    g = gogin
    host = socket.gethostname().lower().encode()     # nginx lower-cases it
    status, body = await stats(http, g)
    m = SUMMARY.match(body)
    assert status == 200 and m, body
    assert (m["channels"], m["published"], m["subscribers"]) == (b"0", b"0", b"0")

    async with ws_connect(f"{g.ws}/ws/s1"), ws_connect(f"{g.ws}/ws/s1"):
        for ch in ("s1", "s1", "s2", "pre_a", "pre_b", "broad_x"):
            assert (await publish(http, g.base, ch, "m"))[0] == 200

        # summarized
        status, body = await stats(http, g)
        m = SUMMARY.match(body)
        assert status == 200 and m, body
        assert m["host"] == host
        assert m["pid"] == str(g.proc.pid).encode()
        assert m["channels"] == b"4"           # s1 s2 pre_a pre_b
        assert m["wildcard"] == b"1"           # broad_x
        assert m["published"] == b"6"
        assert m["stored"] == b"6"           # storage on by default
        assert m["subscribers"] == m["wsubs"] == b"2"

        # one channel
        status, body = await stats(http, g, id="s1")
        assert (status, body) == (200, info("s1", 2, 2) + b"\r\n")
        status, _ = await stats(http, g, id="unknown")
        assert status == 404

        # every channel, in creation order; the head counts normal and wildcard channels
        status, body = await stats(http, g, id="ALL")
        m = GROUP.match(body)
        assert status == 200 and m, body
        assert (m["host"], m["channels"], m["wildcard"]) == (host, b"4", b"1")
        assert m["infos"] == b",\r\n".join([
            info("s1", 2, 2), info("s2", 1, 0), info("pre_a", 1, 0), info("pre_b", 1, 0),
            info("broad_x", 1, 0)]) + b"\r\n"

        # a prefix pattern
        status, body = await stats(http, g, id="pre_*")
        m = GROUP.match(body)
        assert status == 200 and m, body
        assert m["channels"] == b"4"           # the server's channels, not the listed ones
        assert m["infos"] == info("pre_a", 1, 0) + b",\r\n" + info("pre_b", 1, 0) + b"\r\n"

        status, body = await stats(http, g, id="zzz_*")
        m = GROUP.match(body)
        assert status == 200 and m, body
        assert (m["channels"], m["infos"]) == (b"4", b"")

    for method in ("POST", "PUT", "DELETE", "HEAD", "OPTIONS"):     # only GET, as the module
        async with http.request(method, f"{g.base}/channels-stats") as r:
            assert (r.status, r.headers["Allow"]) == (405, "GET"), method
