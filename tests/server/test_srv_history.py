"""History parity (docs/protocol.md, Message storage): a subscriber that was away while 50
messages were published
resumes with its last id/time/tag and gets exactly those 50, in order, in every mode; a gap
larger than the storage is signalled by the id -4 message before the stored ones (and only
then); catch-up then live with no duplicate and no gap while a publisher keeps publishing."""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

import httpx
import pytest
from httpx_sse import aconnect_sse

from gogin_e2e import (GoginFactory, chromium_page, default_locations_plus, parse_default,
                       publish, recv, ws_connect)

GAP_TEXT = "Messages were lost."
AWAY = 50
PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body><script>
window.msgs = []; window.errors = 0; window.opened = 0;
window.start = function (url) {
  const es = new EventSource(url);
  es.onopen = () => { window.opened += 1; };
  es.onerror = () => { window.errors += 1; };
  es.onmessage = (e) => window.msgs.push({data: e.data, id: e.lastEventId});
};
</script></body></html>
"""


def locations(tmp):
    return default_locations_plus(
        {"path": "/evt/", "role": "subscriber", "mode": "eventsource", "template": "~id~|~text~"},
        {"path": "/evr/", "role": "subscriber", "mode": "eventsource", "template": "~id~|~text~",
         "ttl": 1.5},
        {"path": "/lpt/", "role": "subscriber", "mode": "longpoll", "template": "[~id~|~text~]",
         "ttl": 1.0},
        {"path": "/pollt/", "role": "subscriber", "mode": "polling", "template": "[~id~|~text~]"},
        {"path": "/st/", "role": "subscriber", "mode": "stream",
         "template": "~id~|~time~|~tag~|~text~", "ping_interval": 0.0},
        {"path": "/page/", "role": "static", "root": str(tmp)},
    )


def _server(tmp_path_factory, stored):
    tmp = tmp_path_factory.mktemp(f"history{stored}")
    (tmp / "index.html").write_text(PAGE)
    f = GoginFactory(tmp)
    srv = f({"limits": {"max_messages_stored_per_channel": stored},
             "locations": locations(tmp)})
    return f, srv


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    f, srv = _server(tmp_path_factory, 5000)
    try:
        yield srv
    finally:
        f.close()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Storage of 10 messages per channel: 50 messages away is a gap."""
    f, srv = _server(tmp_path_factory, 10)
    try:
        yield srv
    finally:
        f.close()


async def publish_range(http, base, chan, first, last):
    """m<first>..m<last>, each with Event-Id e<i>."""
    for i in range(first, last + 1):
        status, _, _ = await publish(http, base, chan, f"m{i}", {"Event-Id": f"e{i}"})
        assert status == 200


def split_id_text(s: str):
    i, _, text = s.partition("|")
    return int(i), text


def split_answer(body: bytes):
    """A polling answer: its messages rendered with "[~id~|~text~]", back to back."""
    return [(int(i), text) for i, text in re.findall(r"\[(-?\d+)\|([^\]]*)\]", body.decode())]


# -- per-mode readers: (connect with a position) -> messages as (id, text) ------------------------

class WsSub:
    def __init__(self, g, chan):
        self.g, self.chan = g, chan

    async def open(self, suffix=""):
        self.ws = await ws_connect(f"{self.g.ws}/ws/{self.chan}{suffix}").__aenter__()

    async def read(self, n, timeout=5):
        out = []
        for _ in range(n):
            doc = parse_default(await recv(self.ws, timeout))
            out.append(doc)
        return out

    async def close(self):
        await self.ws.close()


def ws_position(kind, doc, chan_suffix_n=AWAY):
    if kind == "timetag":
        return f"?time={quote(doc['time'])}&tag={doc['tag']}"
    if kind == "last_event_id":
        return f"?last_event_id={quote(doc['eventid'])}"
    return f".b{chan_suffix_n}"


@pytest.mark.parametrize("kind", ["timetag", "last_event_id", "backtrack"])
async def test_websocket_resume_exactly_the_missed_50(g, http, chan, kind):
    sub = WsSub(g, chan)
    await sub.open()
    await publish_range(http, g.base, chan, 1, 5)
    seen = await sub.read(5)
    assert [d["id"] for d in seen] == [1, 2, 3, 4, 5]
    await sub.close()
    await publish_range(http, g.base, chan, 6, 5 + AWAY)
    await sub.open(ws_position(kind, seen[-1]))
    got = await sub.read(AWAY)
    await publish(http, g.base, chan, "live", {"Event-Id": "live"})
    nxt = (await sub.read(1))[0]
    await sub.close()
    assert [(d["id"], d["text"], d["eventid"]) for d in got] == \
        [(i, f"m{i}", f"e{i}") for i in range(6, 6 + AWAY)]
    assert (nxt["id"], nxt["text"]) == (6 + AWAY, "live"), "a duplicate or an extra message"


async def sse_events(hx, url, headers=None):
    """Open an EventSource stream; returns (context, iterator)."""
    cm = aconnect_sse(hx, "GET", url, headers=headers or {})
    src = await cm.__aenter__()
    assert src.response.status_code == 200
    return cm, src.aiter_sse()


async def sse_take(it, n, timeout=5):
    out = []
    for _ in range(n):
        ev = await asyncio.wait_for(it.__anext__(), timeout)
        out.append((ev.id, *split_id_text(ev.data)))
    return out


@pytest.mark.parametrize("how", ["header", "query"])
async def test_eventsource_resume_with_last_event_id(g, http, chan, how):
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0)) as hx:
        cm, it = await sse_events(hx, f"{g.base}/evt/{chan}")
        await publish_range(http, g.base, chan, 1, 5)
        seen = await sse_take(it, 5)
        await cm.__aexit__(None, None, None)
        last = seen[-1][0]
        assert last == "e5"
        await publish_range(http, g.base, chan, 6, 5 + AWAY)
        if how == "header":
            cm, it = await sse_events(hx, f"{g.base}/evt/{chan}", {"Last-Event-ID": last})
        else:
            cm, it = await sse_events(hx, f"{g.base}/evt/{chan}?last_event_id={last}")
        got = await sse_take(it, AWAY)
        await publish(http, g.base, chan, "live", {"Event-Id": "live"})
        nxt = await sse_take(it, 1)
        await cm.__aexit__(None, None, None)
    assert got == [(f"e{i}", i, f"m{i}") for i in range(6, 6 + AWAY)]
    assert nxt == [("live", 6 + AWAY, "live")]


async def lp_drain(http, url, pos, limit=200):
    """Poll from `pos` until 304; returns ([[(id, text)] per answer], last position)."""
    out = []
    for _ in range(limit):
        async with http.get(url, headers=pos) as r:
            if r.status == 304:
                return out, pos
            assert r.status == 200, r.status
            out.append(split_answer(await r.read()))
            pos = {"If-Modified-Since": r.headers["Last-Modified"],
                   "If-None-Match": r.headers["Etag"]}
    raise AssertionError("no 304 after %d answers" % limit)


@pytest.mark.parametrize("path", ["/lpt/", "/pollt/"])
async def test_longpoll_and_polling_resume_exactly_the_missed_50(g, http, chan, path):
    url = f"{g.base}{path}{chan}"
    await publish_range(http, g.base, chan, 1, 5)
    epoch = {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
    seen, pos = await lp_drain(http, url, epoch)
    assert seen == [[(i, f"m{i}") for i in range(1, 6)]]
    await publish_range(http, g.base, chan, 6, 5 + AWAY)
    got, pos = await lp_drain(http, url, pos)
    # one answer with all of them (subscriber.c, polling_handler), then 304 from its position
    assert got == [[(i, f"m{i}") for i in range(6, 6 + AWAY)]]


async def test_stream_resume_with_time_and_tag(g, http, chan):
    async def lines(url, n):
        out = []
        async with httpx.AsyncClient(trust_env=False, timeout=10) as hx:
            async with hx.stream("GET", url) as r:
                assert r.status_code == 200
                buf = ""
                it = r.aiter_text()
                if n == 0:
                    return out
                while len(out) < n:
                    buf += await asyncio.wait_for(it.__anext__(), 5)
                    while "\r\n" in buf:
                        line, buf = buf.split("\r\n", 1)
                        out.append(line.split("|", 3))
                        if len(out) == n:
                            break
        return out

    task = asyncio.ensure_future(lines(f"{g.base}/st/{chan}", 5))
    await asyncio.sleep(0.3)
    await publish_range(http, g.base, chan, 1, 5)
    seen = await asyncio.wait_for(task, 10)
    assert [s[3] for s in seen] == [f"m{i}" for i in range(1, 6)]
    _, t, tag, _ = seen[-1]
    await publish_range(http, g.base, chan, 6, 5 + AWAY)
    got = await lines(f"{g.base}/st/{chan}?time={quote(t)}&tag={tag}", AWAY)
    assert [(int(i), text) for i, _, _, text in got] == [(i, f"m{i}") for i in range(6, 6 + AWAY)]


# -- gaps ---------------------------------------------------------------------------------------

STORED = list(range(6 + AWAY - 10, 6 + AWAY))      # the 10 newest of m1..m55


@pytest.mark.parametrize("kind", ["timetag", "last_event_id", "backtrack"])
async def test_websocket_gap_message_before_stored(small, http, chan, kind):
    g = small
    sub = WsSub(g, chan)
    await sub.open()
    await publish_range(http, g.base, chan, 1, 5)
    seen = await sub.read(5)
    await sub.close()
    await publish_range(http, g.base, chan, 6, 5 + AWAY)
    await sub.open(ws_position(kind, seen[-1]))
    got = await sub.read(11)
    await publish(http, g.base, chan, "live")
    nxt = (await sub.read(1))[0]
    await sub.close()
    assert (got[0]["id"], got[0]["text"]) == (-4, GAP_TEXT)
    assert got[0]["channel"] == chan
    assert [(d["id"], d["text"]) for d in got[1:]] == [(i, f"m{i}") for i in STORED]
    assert (nxt["id"], nxt["text"]) == (6 + AWAY, "live")


async def test_websocket_no_gap_no_gap_message(small, http, chan):
    """Within the storage (5 away, 10 kept): the missed ones only, never id -4."""
    g = small
    sub = WsSub(g, chan)
    await sub.open()
    await publish_range(http, g.base, chan, 1, 3)
    seen = await sub.read(3)
    await sub.close()
    await publish_range(http, g.base, chan, 4, 8)
    await sub.open(ws_position("timetag", seen[-1]))
    await publish(http, g.base, chan, "live")
    got = await sub.read(6)
    await sub.close()
    assert [(d["id"], d["text"]) for d in got] == [(4, "m4"), (5, "m5"), (6, "m6"), (7, "m7"),
                                                   (8, "m8"), (9, "live")]


async def test_eventsource_gap_message_before_stored(small, http, chan):
    g = small
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0)) as hx:
        cm, it = await sse_events(hx, f"{g.base}/evt/{chan}")
        await publish_range(http, g.base, chan, 1, 5)
        seen = await sse_take(it, 5)
        await cm.__aexit__(None, None, None)
        await publish_range(http, g.base, chan, 6, 5 + AWAY)
        cm, it = await sse_events(hx, f"{g.base}/evt/{chan}", {"Last-Event-ID": seen[-1][0]})
        got = await sse_take(it, 11)
        await cm.__aexit__(None, None, None)
    assert got[0][1:] == (-4, GAP_TEXT)
    assert got[1:] == [(f"e{i}", i, f"m{i}") for i in STORED]


@pytest.mark.parametrize("path", ["/lpt/", "/pollt/"])
async def test_longpoll_and_polling_gap_message_before_stored(small, http, chan, path):
    g = small
    url = f"{g.base}{path}{chan}"
    await publish_range(http, g.base, chan, 1, 5)
    seen, pos = await lp_drain(http, url, {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert seen == [[(i, f"m{i}") for i in range(1, 6)]]
    await publish_range(http, g.base, chan, 6, 5 + AWAY)
    await asyncio.sleep(1.1)          # the client comes back in a later second
    got, _ = await lp_drain(http, url, pos)
    assert len(got) == 1, "the gap message and the stored ones come in one answer"
    assert got[0][:1] == [(-4, GAP_TEXT)]
    assert got[0][1:] == [(i, f"m{i}") for i in STORED]


# -- catch-up then live, with a publisher publishing right through the reconnections -------------

class Publisher:
    def __init__(self, http, base, chan, n):
        self.http, self.base, self.chan, self.n = http, base, chan, n

    async def run(self):
        for i in range(1, self.n + 1):
            status, _, _ = await publish(self.http, self.base, self.chan, f"m{i}",
                                         {"Event-Id": f"e{i}"})
            assert status == 200


N_LIVE = 400


@pytest.mark.parametrize("kind", ["timetag", "last_event_id"])
async def test_websocket_catch_up_then_live_while_publishing(g, http, chan, kind):
    sub = WsSub(g, chan)
    await sub.open()
    pub = asyncio.ensure_future(Publisher(http, g.base, chan, N_LIVE).run())
    got = []
    reconnects = 0
    try:
        while not got or got[-1]["id"] < N_LIVE:
            left = N_LIVE - (got[-1]["id"] if got else 0)
            got += await sub.read(min(37, left))     # some messages, then away and back
            if got[-1]["id"] >= N_LIVE:
                break
            await sub.close()
            await sub.open(ws_position(kind, got[-1]))
            reconnects += 1
    finally:
        await sub.close()
        await asyncio.wait_for(pub, 30)
    assert reconnects >= 3
    assert [d["id"] for d in got] == list(range(1, N_LIVE + 1))
    assert [d["text"] for d in got] == [f"m{i}" for i in range(1, N_LIVE + 1)]


async def test_eventsource_catch_up_then_live_while_publishing(g, http, chan):
    got = []
    reconnects = 0
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0)) as hx:
        cm, it = await sse_events(hx, f"{g.base}/evt/{chan}")
        pub = asyncio.ensure_future(Publisher(http, g.base, chan, N_LIVE).run())
        try:
            while True:
                got += await sse_take(it, 41 if len(got) + 41 <= N_LIVE else N_LIVE - len(got))
                if len(got) >= N_LIVE:
                    break
                await cm.__aexit__(None, None, None)
                cm, it = await sse_events(hx, f"{g.base}/evt/{chan}",
                                          {"Last-Event-ID": got[-1][0]})
                reconnects += 1
        finally:
            await cm.__aexit__(None, None, None)
            await asyncio.wait_for(pub, 30)
    assert reconnects >= 3
    assert got == [(f"e{i}", i, f"m{i}") for i in range(1, N_LIVE + 1)]


async def test_longpoll_loop_while_publishing(g, http, chan):
    """Every long-poll answer is a reconnection: the loop sees 1..N exactly."""
    url = f"{g.base}/lpt/{chan}"
    pub = asyncio.ensure_future(Publisher(http, g.base, chan, N_LIVE).run())
    got = []
    pos = {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
    try:
        while len(got) < N_LIVE:
            async with http.get(url, headers=pos) as r:
                if r.status == 304:
                    break
                assert r.status == 200
                got += split_answer(await r.read())
                pos = {"If-Modified-Since": r.headers["Last-Modified"],
                       "If-None-Match": r.headers["Etag"]}
    finally:
        await asyncio.wait_for(pub, 30)
    assert got == [(i, f"m{i}") for i in range(1, N_LIVE + 1)]


# -- Chromium's own reconnection (the location ttl ends each EventSource response) ---------------

async def test_chromium_eventsource_reconnects_with_last_event_id(g, http, chan):
    async with chromium_page() as page:
        await page.goto(f"{g.base}/page/index.html")
        await page.evaluate(f"window.start('/evr/{chan}')")
        await page.wait_for_function("window.opened >= 1", timeout=10000)
        await publish_range(http, g.base, chan, 1, 5)
        await page.wait_for_function("window.msgs.length >= 5", timeout=10000)
        # gogin ends the response at the location ttl (1.5 s); Chromium notices, and reconnects
        # on its own after its retry delay, sending Last-Event-ID: e5
        await page.wait_for_function("window.errors >= 1", timeout=10000)
        await publish_range(http, g.base, chan, 6, 5 + AWAY)
        await page.wait_for_function(f"window.msgs.length >= {5 + AWAY}", timeout=15000)
        await asyncio.sleep(0.3)
        msgs = await page.evaluate("window.msgs")
        opened = await page.evaluate("window.opened")
    assert opened >= 2
    assert [(m["id"], m["data"]) for m in msgs] == \
        [(f"e{i}", f"{i}|m{i}") for i in range(1, 6 + AWAY)]
