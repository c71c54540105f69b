"""Channel info and statistics, byte for byte against nginx-push-stream-module's own patterns.

The expected answers are the module's format strings (include/ngx_http_push_stream_module_utils.h
of its current source: numbers are bare integers since 0.5.2, only by_worker's pid is quoted),
filled here with the values the test knows; only the time of the answer and the uptime are read
back, and they are checked (UTC, now; a few seconds).  Every Accept subtype the module offers is asked for.
"""

from __future__ import annotations

import datetime
import re
import socket

import pytest

from gogin_e2e import NO_CACHE, publish, ws_connect

CRLF = "\r\n"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" ?>' + CRLF

# -- the module's patterns (utils.h), as C format strings ----------------------------------------

PLAIN_CHANNEL = ("channel: %s" + CRLF + "published_messages: %ui" + CRLF + "stored_messages: %ui"
                 + CRLF + "active_subscribers: %ui")
PLAIN_WORKER = "  pid: %d" + CRLF + "  subscribers: %ui" + CRLF + "  uptime: %ui"
JSON_CHANNEL = ('{"channel": "%s", "published_messages": %ui, "stored_messages": %ui, '
                '"subscribers": %ui}')
JSON_WORKER = '{"pid": "%d", "subscribers": %ui, "uptime": %ui}'
YAML_CHANNEL = ("  channel: %s" + CRLF + "  published_messages: %ui" + CRLF
                + "  stored_messages: %ui" + CRLF + "  subscribers: %ui")
YAML_WORKER = "    pid: %d" + CRLF + "    subscribers: %ui" + CRLF + "    uptime: %ui"
XML_CHANNEL = ("<channel>" + CRLF + "  <name>%s</name>" + CRLF
               + "  <published_messages>%ui</published_messages>" + CRLF
               + "  <stored_messages>%ui</stored_messages>" + CRLF
               + "  <subscribers>%ui</subscribers>" + CRLF + "</channel>" + CRLF)
XML_WORKER = ("<worker>" + CRLF + "  <pid>%d</pid>" + CRLF
              + "  <subscribers>%ui</subscribers>" + CRLF + "  <uptime>%ui</uptime>" + CRLF
              + "</worker>" + CRLF)

JSON = {
    "item": JSON_CHANNEL + CRLF,
    "head": ('{"hostname": "%s", "time": "%s", "channels": %ui, "wildcard_channels": %ui, '
             '"uptime": %ui, "infos": [' + CRLF),
    "tail": "]}" + CRLF,
    "group_item": JSON_CHANNEL + "," + CRLF,
    "group_last": JSON_CHANNEL + CRLF,
    "summarized": ('{"hostname": "%s", "time": "%s", "channels": %ui, "wildcard_channels": %ui, '
                   '"published_messages": %ui, "stored_messages": %ui, "messages_in_trash": %ui, '
                   '"channels_in_delete": %ui, "channels_in_trash": %ui, "subscribers": %ui, '
                   '"uptime": %ui, "by_worker": [' + CRLF + "%s" + CRLF + "]}" + CRLF),
    "worker_last": JSON_WORKER,
}
YAML = {
    "item": YAML_CHANNEL + CRLF,
    "head": ("hostname: %s" + CRLF + "time: %s" + CRLF + "channels: %ui" + CRLF
             + "wildcard_channels: %ui" + CRLF + "uptime: %ui" + CRLF + "infos: " + CRLF),
    "tail": CRLF,
    "group_item": " -" + CRLF + YAML_CHANNEL + CRLF,
    "group_last": " -" + CRLF + YAML_CHANNEL,
    "summarized": ("  hostname: %s" + CRLF + "  time: %s" + CRLF + "  channels: %ui" + CRLF
                   + "  wildcard_channels: %ui" + CRLF + "  published_messages: %ui" + CRLF
                   + "  stored_messages: %ui" + CRLF + "  messages_in_trash: %ui" + CRLF
                   + "  channels_in_delete: %ui" + CRLF + "  channels_in_trash: %ui" + CRLF
                   + "  subscribers: %ui" + CRLF + "  uptime: %ui" + CRLF + "  by_worker:"
                   + CRLF + "%s" + CRLF),
    "worker_last": "   -" + CRLF + YAML_WORKER,
}
FORMATS = {
    "plain": ("text/plain", {
        "item": PLAIN_CHANNEL + CRLF,
        "head": ("hostname: %s, time: %s, channels: %ui, wildcard_channels: %ui, uptime: %ui, "
                 "infos: " + CRLF),
        "tail": CRLF,
        "group_item": PLAIN_CHANNEL + "," + CRLF,
        "group_last": PLAIN_CHANNEL,
        "summarized": ("hostname: %s" + CRLF + "time: %s" + CRLF + "channels: %ui" + CRLF
                       + "wildcard_channels: %ui" + CRLF + "published_messages: %ui" + CRLF
                       + "stored_messages: %ui" + CRLF + "messages_in_trash: %ui" + CRLF
                       + "channels_in_delete: %ui" + CRLF + "channels_in_trash: %ui" + CRLF
                       + "subscribers: %ui" + CRLF + "uptime: %ui" + CRLF + "by_worker:" + CRLF
                       + "%s" + CRLF),
        "worker_last": PLAIN_WORKER,
    }),
    "json": ("application/json", JSON),
    "yaml": ("application/yaml", YAML),
    "xml": ("application/xml", {
        "item": XML_DECL + XML_CHANNEL + CRLF,
        "head": (XML_DECL + "<root>" + CRLF + "  <hostname>%s</hostname>" + CRLF
                 + "  <time>%s</time>" + CRLF + "  <channels>%ui</channels>" + CRLF
                 + "  <wildcard_channels>%ui</wildcard_channels>" + CRLF
                 + "  <uptime>%ui</uptime>" + CRLF + "  <infos>" + CRLF),
        "tail": "  </infos>" + CRLF + "</root>" + CRLF,
        "group_item": XML_CHANNEL,
        "group_last": XML_CHANNEL,
        "summarized": (XML_DECL + "<infos>" + CRLF + "  <hostname>%s</hostname>" + CRLF
                       + "  <time>%s</time>" + CRLF + "  <channels>%ui</channels>" + CRLF
                       + "  <wildcard_channels>%ui</wildcard_channels>" + CRLF
                       + "  <published_messages>%ui</published_messages>" + CRLF
                       + "  <stored_messages>%ui</stored_messages>" + CRLF
                       + "  <messages_in_trash>%ui</messages_in_trash>" + CRLF
                       + "  <channels_in_delete>%ui</channels_in_delete>" + CRLF
                       + "  <channels_in_trash>%ui</channels_in_trash>" + CRLF
                       + "  <subscribers>%ui</subscribers>" + CRLF
                       + "  <uptime>%ui</uptime>" + CRLF
                       + "  <by_worker>%s</by_worker>" + CRLF + "</infos>" + CRLF),
        "worker_last": XML_WORKER,
    }),
    "x-json": ("text/x-json", JSON),
    "x-yaml": ("text/x-yaml", YAML),
}
ACCEPT = {"plain": "text/plain", "json": "application/json", "yaml": "application/yaml",
          "xml": "application/xml", "x-json": "text/x-json", "x-yaml": "text/x-yaml"}


# -- filling a C pattern ---------------------------------------------------------------------------

class Slot:
    """A value the test cannot know in advance: matched by a regex, checked afterwards."""

    def __init__(self, regex: str):
        self.regex = regex


TIME = Slot(r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")


def uptime():
    return Slot(r"(?P<uptime%d>\d+)" % next(_n))


_n = iter(range(10 ** 6))


def fill(pattern: str, *args) -> str:
    """The pattern with its %s / %ui / %d filled, as a regex of the exact bytes."""
    parts = re.split(r"%(?:ui|s|d)", pattern)
    assert len(parts) == len(args) + 1, (pattern, args)
    out = [re.escape(parts[0])]
    for arg, literal in zip(args, parts[1:]):
        out.append(arg.regex if isinstance(arg, Slot) else re.escape(str(arg)))
        out.append(re.escape(literal))
    return "".join(out)


def check(regex: str, body: bytes):
    m = re.fullmatch(regex, body.decode("utf-8"))
    assert m, f"\n{body!r}\ndoes not match the module's pattern\n{regex}"
    groups = m.groupdict()
    if "time" in groups:
        t = datetime.datetime.strptime(groups["time"], "%Y-%m-%dT%H:%M:%S")
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert abs((now - t).total_seconds()) < 5, f"time {t} is not now in UTC ({now})"
    for k, v in groups.items():
        if k.startswith("uptime"):
            assert 0 <= int(v) < 120
    return m


def host() -> str:
    return socket.gethostname().lower()


def group(pats, channels, wildcard, rows) -> str:
    """The module's group answer: head, items (last one apart), tail."""
    items = [fill(pats["group_last"] if i == len(rows) - 1 else pats["group_item"], *row)
             for i, row in enumerate(rows)]
    return fill(pats["head"], host(), TIME, channels, wildcard, uptime()) + "".join(items) + \
        re.escape(pats["tail"])


async def get(http, url, subtype=None, **params):
    headers = {"Accept": ACCEPT[subtype]} if subtype else {}
    async with http.get(url, params=params, headers=headers) as r:
        body = await r.read()
        if r.status == 200:
            assert r.headers["Cache-Control"] == NO_CACHE
            want = FORMATS[subtype or "json"][0]
            assert r.headers["Content-Type"] == want, (subtype, r.headers["Content-Type"])
        return r.status, body


SUBTYPES = list(FORMATS)


# -- one channel --------------------------------------------------------------------------------

@pytest.mark.parametrize("subtype", SUBTYPES)
async def test_one_channel_in_every_format(gogin, http, subtype):
    g = gogin
    ctype, pats = FORMATS[subtype]
    headers = {"Accept": ACCEPT[subtype]}
    async with ws_connect(f"{g.ws}/ws/room"):
        for n in (1, 2):
            async with http.post(f"{g.base}/pub", params={"id": "room"}, data=f"m{n}",
                                 headers=headers) as r:
                assert r.status == 200 and r.headers["Content-Type"] == ctype
                check(fill(pats["item"], "room", n, n, 1), await r.read())
        want = fill(pats["item"], "room", 2, 2, 1)
        check(want, (await get(http, f"{g.base}/pub", subtype, id="room"))[1])
        check(want, (await get(http, f"{g.base}/channels-stats", subtype, id="room"))[1])
        # several ids of which one exists: that one, in the one-channel format (module.c)
        check(want, (await get(http, f"{g.base}/channels-stats", subtype,
                               id="nothere/room"))[1])


async def test_default_format_is_json(gogin, http):
    g = gogin
    await publish(http, g.base, "room", "m")
    for accept in (None, "*/*", "text/html", "application/x-www-form-urlencoded"):
        headers = {"Accept": accept} if accept else {}
        async with http.get(f"{g.base}/channels-stats", params={"id": "room"},
                            headers=headers) as r:
            assert r.headers["Content-Type"] == "application/json", accept
            check(fill(JSON["item"], "room", 1, 1, 0), await r.read())
    # a browser's Accept names application/xml after text/html: the module answers XML
    async with http.get(f"{g.base}/channels-stats", params={"id": "room"}, headers={
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}) as r:
        assert r.headers["Content-Type"] == "application/xml"


# -- several channels -----------------------------------------------------------------------------

@pytest.mark.parametrize("subtype", SUBTYPES)
async def test_several_channels_in_every_format(gogin, http, subtype):
    g = gogin
    ctype, pats = FORMATS[subtype]
    headers = {"Accept": ACCEPT[subtype]}
    # creation order: alpha (its subscriber), zeta, broad_w (a wildcard channel), pre_b, pre_a
    async with ws_connect(f"{g.ws}/ws/alpha"):
        for ch in ("zeta", "alpha", "broad_w", "pre_b", "pre_a", "alpha"):
            assert (await publish(http, g.base, ch, "m"))[0] == 200
        # the publisher's answer to a publish on several channels
        async with http.post(f"{g.base}/pub", params={"id": "zeta/pre_a"}, data="x",
                             headers=headers) as r:
            assert r.status == 200 and r.headers["Content-Type"] == ctype
            check(group(pats, 4, 1, [("zeta", 2, 2, 0), ("pre_a", 2, 2, 0)]), await r.read())
        # the existing ones, in request order; the head counts the whole server's channels
        status, body = await get(http, f"{g.base}/channels-stats", subtype,
                                 id="pre_b/missing/alpha/zeta")
        assert status == 200
        check(group(pats, 4, 1, [("pre_b", 1, 1, 0), ("alpha", 2, 2, 1), ("zeta", 2, 2, 0)]),
              body)
        status, body = await get(http, f"{g.base}/pub", subtype, id="alpha/pre_b")
        check(group(pats, 4, 1, [("alpha", 2, 2, 1), ("pre_b", 1, 1, 0)]), body)
        # ALL: every channel in creation order
        status, body = await get(http, f"{g.base}/channels-stats", subtype, id="ALL")
        check(group(pats, 4, 1, [("alpha", 2, 2, 1), ("zeta", 2, 2, 0), ("broad_w", 1, 1, 0),
                                 ("pre_b", 1, 1, 0), ("pre_a", 2, 2, 0)]), body)
        # a prefix: the text before the '*'
        for pattern in ("pre_*", "pre_*ignored"):
            status, body = await get(http, f"{g.base}/channels-stats", subtype, id=pattern)
            check(group(pats, 4, 1, [("pre_b", 1, 1, 0), ("pre_a", 2, 2, 0)]), body)
        status, body = await get(http, f"{g.base}/channels-stats", subtype, id="nomatch_*")
        check(group(pats, 4, 1, []), body)


async def test_none_of_the_channels_exists_is_404(gogin, http):
    g = gogin
    await publish(http, g.base, "room", "m")
    for ids in ("missing", "missing/other"):
        for url in (f"{g.base}/channels-stats", f"{g.base}/pub"):
            status, body = await get(http, url, id=ids)
            assert (status, body) == (404, b""), (url, ids)


async def test_empty_server_all_channels(gogin, http):
    status, body = await get(http, f"{gogin.base}/channels-stats", id="ALL")
    assert status == 200
    check(group(JSON, 0, 0, []), body)
    assert body.endswith(b'"infos": [\r\n]}\r\n')


# -- summarized ---------------------------------------------------------------------------------

@pytest.mark.parametrize("subtype", SUBTYPES)
async def test_summarized_in_every_format(gogin, http, subtype):
    g = gogin
    ctype, pats = FORMATS[subtype]
    status, body = await get(http, f"{g.base}/channels-stats", subtype)
    assert status == 200
    worker = Slot(fill(pats["worker_last"], g.proc.pid, 0, uptime()))
    check(fill(pats["summarized"], host(), TIME, 0, 0, 0, 0, 0, 0, 0, 0, uptime(), worker), body)

    async with ws_connect(f"{g.ws}/ws/s1"), ws_connect(f"{g.ws}/ws/s1"):
        for ch in ("s1", "s1", "s2", "broad_x"):
            assert (await publish(http, g.base, ch, "m"))[0] == 200
        status, body = await get(http, f"{g.base}/channels-stats", subtype)
        worker = Slot(fill(pats["worker_last"], g.proc.pid, 2, uptime()))
        # channels, wildcard_channels, published, stored, in trash, in delete, channels in
        # trash, subscribers, uptime, by_worker
        check(fill(pats["summarized"], host(), TIME, 2, 1, 4, 4, 0, 0, 0, 2, uptime(), worker),
              body)


async def test_summarized_json_is_integers_except_pid(gogin, http):
    """The module's JSON, parsed: every number a JSON integer, the pid a string."""
    import json
    g = gogin
    await publish(http, g.base, "room", "m")
    doc = json.loads((await get(http, f"{g.base}/channels-stats"))[1])
    assert list(doc) == ["hostname", "time", "channels", "wildcard_channels",
                         "published_messages", "stored_messages", "messages_in_trash",
                         "channels_in_delete", "channels_in_trash", "subscribers", "uptime",
                         "by_worker"]
    assert all(type(doc[k]) is int for k in list(doc)[2:-1])
    (worker,) = doc["by_worker"]
    assert worker == {"pid": str(g.proc.pid), "subscribers": 0,
                      "uptime": worker["uptime"]}
    assert type(worker["uptime"]) is int
