"""Polling and long-polling resume (issue 12, point 8): a client that was away gets every stored
message after its position, of every channel of the request, in one answer, as the module's
polling handler writes it (src/ngx_http_push_stream_module_subscriber.c, polling_handler and
send_old_messages; src/ngx_http_push_stream_module_utils.c, send_response_message and
add_polling_headers).  The expected bytes are built here from the module's pattern, not taken
from gogin: each message rendered with the location's template, back to back, and the answer
dated (Last-Modified, Etag W/<tag>) at its newest message."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest

from gogin_e2e import parse_default, publish, recv, ws_connect

EPOCH = {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
AWAY = 10


def render(doc) -> str:
    """A message through the default template of /lp/ and /poll/ (docs/protocol.md,
    Templates); the texts and ids of these tests need no JSON escaping."""
    return ('{"id":%d,"channel":"%s","text":"%s","tag":"%s","time":"%s","eventid":"%s"}'
            % (doc["id"], doc["channel"], doc["text"], doc["tag"], doc["time"], doc["eventid"]))


def module_answer(docs) -> bytes:
    """subscriber.c, send_old_messages -> utils.c, send_response_message: the formatted
    messages one after the other, nothing between them."""
    return "".join(render(d) for d in docs).encode()


def module_jsonp(callback, docs) -> bytes:
    """The same with ?callback= (subscriber.c, polling_handler; utils.h): the callback and
    NGX_HTTP_PUSH_STREAM_CALLBACK_INIT_CHUNK "([", the messages with _MID_CHUNK "," before
    each one but the first (send_response_message's send_separator), _END_CHUNK "]);"."""
    return (callback + "([" + ",".join(render(d) for d in docs) + "]);").encode()


async def get(http, url, headers=None):
    async with http.get(url, headers=headers or {}) as r:
        return r.status, r.headers, await r.read()


def position(hdrs) -> dict:
    return {"If-Modified-Since": hdrs["Last-Modified"], "If-None-Match": hdrs["Etag"]}


async def publish_round_robin(http, g, chans, ws, n):
    """n messages m0.. (Event-Id e0..) to chans in turn; returns them as a WebSocket
    subscribed to all of chans saw them (their ids, times and tags)."""
    for i in range(n):
        status, _, _ = await publish(http, g.base, chans[i % len(chans)], f"m{i}",
                                     {"Event-Id": f"e{i}"})
        assert status == 200
    docs = [parse_default(await recv(ws)) for _ in range(n)]
    assert [d["text"] for d in docs] == [f"m{i}" for i in range(n)]
    return docs


def resume_request(kind, url, first_hdrs, before):
    """The request of a client resuming after `before` (its last message)."""
    if kind == "headers":          # what pushstream.js long-polling sends back
        return url, position(first_hdrs)
    if kind == "query":            # ?time=&tag= (pushstream.js with messagesControlByArgument)
        tag = first_hdrs["Etag"].removeprefix("W/")
        return f"{url}?time={quote(first_hdrs['Last-Modified'])}&tag={tag}", {}
    return url, {"Last-Event-ID": before["eventid"]}


@pytest.mark.parametrize("kind", ["headers", "query", "last_event_id"])
@pytest.mark.parametrize("path", ["/lp/", "/poll/"])
async def test_away_while_10_published_to_3_channels_gets_all_in_one_answer(
        shared_gogin, http, chan, path, kind):
    g = shared_gogin
    chans = [f"{chan}a", f"{chan}b", f"{chan}c"]
    url = f"{g.base}{path}{'/'.join(chans)}"
    async with ws_connect(f"{g.ws}/ws/{'/'.join(chans)}") as ws:
        # the client's last answer before it went away: one message, with its position
        await publish(http, g.base, chans[1], "before", {"Event-Id": "before"})
        before = parse_default(await recv(ws))
        status, first_hdrs, body = await get(http, url, EPOCH)
        assert status == 200 and body == module_answer([before])
        assert (first_hdrs["Last-Modified"], first_hdrs["Etag"]) == \
            (before["time"], f"W/{before['tag']}")
        missed = await publish_round_robin(http, g, chans, ws, AWAY)

    req_url, headers = resume_request(kind, url, first_hdrs, before)
    status, hdrs, body = await get(http, req_url, headers)
    assert status == 200
    # all 10, once each, in publish order (= (time, tag) order: tags count per server)
    assert body == module_answer(missed)
    assert hdrs["Content-Type"] == "text/plain; charset=utf-8"
    assert (hdrs["Last-Modified"], hdrs["Etag"]) == (missed[-1]["time"], f"W/{missed[-1]['tag']}")
    assert int(hdrs["Content-Length"]) == len(body)

    # from the answer's position: nothing more (a poll is 304, a long-poll waits for the
    # next live message, which then comes alone)
    if path == "/poll/":
        status, _, _ = await get(http, url, position(hdrs))
        assert status == 304
        await publish(http, g.base, chans[2], "after", {"Event-Id": "after"})
        status, _, body = await get(http, url, position(hdrs))
        assert status == 200
    else:
        task = asyncio.ensure_future(get(http, url, position(hdrs)))
        await asyncio.sleep(0.3)
        assert not task.done(), "nothing stored after the position: the long-poll waits"
        await publish(http, g.base, chans[2], "after", {"Event-Id": "after"})
        status, _, body = await asyncio.wait_for(task, 5)
        assert status == 200
    assert b'"text":"after"' in body and body.count(b'"id":') == 1


@pytest.mark.parametrize("path", ["/lp/", "/poll/"])
async def test_backtrack_on_several_channels_in_one_answer(shared_gogin, http, chan, path):
    """/lp/ch1/ch2.b5/ch3.b2: the 5 newest of ch2 and the 2 newest of ch3 (none of ch1)."""
    g = shared_gogin
    chans = [f"{chan}a", f"{chan}b", f"{chan}c"]
    async with ws_connect(f"{g.ws}/ws/{'/'.join(chans)}") as ws:
        missed = await publish_round_robin(http, g, chans, ws, 21)
    status, hdrs, body = await get(http, f"{g.base}{path}{chans[0]}/{chans[1]}.b5/{chans[2]}.b2")
    assert status == 200
    want = [d for d in missed if d["channel"] == chans[1]][-5:] + \
        [d for d in missed if d["channel"] == chans[2]][-2:]
    want.sort(key=lambda d: missed.index(d))
    assert body == module_answer(want)
    assert (hdrs["Last-Modified"], hdrs["Etag"]) == (want[-1]["time"], f"W/{want[-1]['tag']}")


async def test_long_poll_with_nothing_stored_after_the_position_waits(shared_gogin, http, chan):
    g = shared_gogin
    await publish(http, g.base, chan, "one")
    status, hdrs, body = await get(http, f"{g.base}/lp/{chan}", EPOCH)
    assert status == 200 and body.count(b'"id":') == 1
    task = asyncio.ensure_future(get(http, f"{g.base}/lp/{chan}", position(hdrs)))
    await asyncio.sleep(0.3)
    assert not task.done()
    await publish(http, g.base, chan, "two")
    status, hdrs2, body = await asyncio.wait_for(task, 5)
    assert status == 200 and b'"text":"two"' in body and body.count(b'"id":') == 1


@pytest.mark.parametrize("kind", ["query", "last_event_id"])
@pytest.mark.parametrize("path", ["/lp/", "/poll/"])
async def test_jsonp_resume_wraps_all_the_missed_messages(shared_gogin, http, chan, path, kind):
    """A JSONP client (a script tag: no headers) resumes with ?time=&tag= as pushstream.js
    does, or ?last_event_id=; it gets f([m1,...,m10]); in one answer."""
    g = shared_gogin
    chans = [f"{chan}a", f"{chan}b", f"{chan}c"]
    url = f"{g.base}{path}{'/'.join(chans)}"
    async with ws_connect(f"{g.ws}/ws/{'/'.join(chans)}") as ws:
        await publish(http, g.base, chans[2], "before", {"Event-Id": "before"})
        before = parse_default(await recv(ws))
        status, hdrs, body = await get(http, f"{url}?callback=app.recv", EPOCH)
        assert (status, body) == (200, module_jsonp("app.recv", [before]))
        missed = await publish_round_robin(http, g, chans, ws, AWAY)
    if kind == "query":
        query = f"time={quote(hdrs['Last-Modified'])}&tag={hdrs['Etag'].removeprefix('W/')}"
    else:
        query = f"last_event_id={before['eventid']}"
    status, hdrs, body = await get(http, f"{url}?{query}&callback=app.recv")
    assert status == 200
    assert body == module_jsonp("app.recv", missed)
    assert hdrs["Content-Type"].startswith("application/javascript")
    assert (hdrs["Last-Modified"], hdrs["Etag"]) == (missed[-1]["time"], f"W/{missed[-1]['tag']}")
    # as pushstream.js goes on: from the last message of the array (its time and tag): nothing
    # is sent again (a poll is 304; a long-poll waits, then gets the next message alone)
    last = missed[-1]
    nxt = f"{url}?time={quote(last['time'])}&tag={last['tag']}&callback=app.recv"
    if path == "/poll/":
        assert (await get(http, nxt))[0] == 304
        return
    task = asyncio.ensure_future(get(http, nxt))
    await asyncio.sleep(0.3)
    assert not task.done()
    await publish(http, g.base, chans[0], "after")
    status, _, body = await asyncio.wait_for(task, 5)
    assert status == 200 and body.startswith(b'app.recv([{"id":') and body.endswith(b"}]);")
    assert body.count(b'"id":') == 1 and b'"text":"after"' in body


@pytest.mark.parametrize("path", ["/lp/", "/poll/"])
async def test_pushstream_js_first_request_if_modified_since_null(shared_gogin, http, chan, path):
    """pushstream.js's long-polling sends its position as headers from the first request on,
    before it has one: `If-Modified-Since: null`, `If-None-Match: 0`.  The module's
    ngx_http_parse_time fails on it (-1: no position), so the backtrack applies."""
    g = shared_gogin
    async with ws_connect(f"{g.ws}/ws/{chan}") as ws:
        docs = await publish_round_robin(http, g, [chan], ws, 3)
    first = {"If-Modified-Since": "null", "If-None-Match": "0"}
    status, hdrs, body = await get(http, f"{g.base}{path}{chan}.b2", first)
    assert status == 200 and body == module_answer(docs[1:])
    if path == "/poll/":            # no backtrack, no position: nothing "newer"
        assert (await get(http, f"{g.base}{path}{chan}", first))[0] == 304
