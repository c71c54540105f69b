"""Push-stream parity, one real client per subscriber mode (docs/protocol.md, Subscribers):
httpx-sse and
headless Chromium's EventSource, aiohttp/httpx long-polling and polling, chunked streaming with
header/footer templates; CORS with server.allowed_origins on every kind of answer."""

from __future__ import annotations

import asyncio
import email.utils
import re
import time

import httpx
import pytest
from httpx_sse import aconnect_sse

from gogin_e2e import GoginFactory, NO_CACHE, chromium_page, default_locations_plus, publish

ORIGIN = "http://app.example"
PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>ev</title></head><body><script>
window.msgs = []; window.errors = 0; window.opened = 0;
window.start = function (url) {
  const es = new EventSource(url);
  es.onopen = () => { window.opened += 1; };
  es.onerror = () => { window.errors += 1; };
  const keep = (e) => window.msgs.push({type: e.type, data: e.data, id: e.lastEventId});
  es.onmessage = keep;
  es.addEventListener("note", keep);
  window.es = es;
};
</script></body></html>
"""


def mode_locations(tmp):
    return default_locations_plus(
        {"path": "/evt/", "role": "subscriber", "mode": "eventsource", "template": "~text~"},
        {"path": "/evr/", "role": "subscriber", "mode": "eventsource", "template": "~text~",
         "ttl": 2.0},
        {"path": "/lpt/", "role": "subscriber", "mode": "longpoll", "template": "~text~",
         "ttl": 1.0},
        {"path": "/pollt/", "role": "subscriber", "mode": "polling", "template": "~text~"},
        {"path": "/wst/", "role": "subscriber", "mode": "websocket", "template": "~text~"},
        {"path": "/st/", "role": "subscriber", "mode": "stream", "template": "[~id~:~text~]",
         "header_template": "<HEADER>", "footer_template": "<FOOTER>", "ping_interval": 0.0,
         "ttl": 1.5},
        {"path": "/page/", "role": "static", "root": str(tmp)},
    )


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("modes")
    (tmp / "index.html").write_text(PAGE)
    f = GoginFactory(tmp)
    srv = f({"server": {"allowed_origins": [ORIGIN]},
             "limits": {"max_messages_stored_per_channel": 1000},
             "locations": mode_locations(tmp)})
    try:
        yield srv
    finally:
        f.close()


# -- EventSource --------------------------------------------------------------------------------

async def test_eventsource_httpx_sse(g, http, chan):
    async with httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(10.0)) as hx:
        async with aconnect_sse(hx, "GET", f"{g.base}/evt/{chan}") as src:
            r = src.response
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
            assert r.headers["cache-control"] == NO_CACHE
            it = src.aiter_sse()
            await publish(http, g.base, chan, "first", {"Event-Id": "e1"})
            await publish(http, g.base, chan, "line one\nline two", {"Event-Id": "e2",
                                                                    "Event-Type": "note"})
            await publish(http, g.base, chan, "no id")
            got = []
            for _ in range(3):
                ev = await asyncio.wait_for(it.__anext__(), 5)
                got.append((ev.event, ev.data, ev.id))
    assert got[0] == ("message", "first", "e1")
    assert got[1] == ("note", "line one\nline two", "e2")
    assert got[2][:2] == ("message", "no id")
    assert got[2][2] in ("", "e2")       # no id: field absent (the client keeps the last one)


async def test_eventsource_headless_chromium(g, http, chan):
    async with chromium_page() as page:
        await page.goto(f"{g.base}/page/index.html")
        await page.evaluate(f"window.start('/evt/{chan}')")
        await page.wait_for_function("window.opened >= 1", timeout=10000)
        await publish(http, g.base, chan, "hello", {"Event-Id": "a1"})
        await publish(http, g.base, chan, 'multi\nline "json" ✓', {"Event-Id": "a2"})
        await publish(http, g.base, chan, "typed", {"Event-Id": "a3", "Event-Type": "note"})
        await page.wait_for_function("window.msgs.length >= 3", timeout=10000)
        msgs = await page.evaluate("window.msgs")
        errors = await page.evaluate("window.errors")
    assert msgs == [{"type": "message", "data": "hello", "id": "a1"},
                    {"type": "message", "data": 'multi\nline "json" ✓', "id": "a2"},
                    {"type": "note", "data": "typed", "id": "a3"}]
    assert errors == 0


# -- long-polling, polling ------------------------------------------------------------------------

async def test_longpoll_aiohttp_waits_then_answers_with_position(g, http, chan):
    async def poll(headers=None):
        async with http.get(f"{g.base}/lpt/{chan}", headers=headers or {}) as r:
            return r.status, r.headers, await r.read()

    task = asyncio.ensure_future(poll())
    await asyncio.sleep(0.3)
    assert not task.done(), "a long-poll must wait for the next message"
    await publish(http, g.base, chan, "lp-1")
    status, hdrs, body = await asyncio.wait_for(task, 5)
    assert (status, body) == (200, b"lp-1")
    assert hdrs["Content-Type"] == "text/plain; charset=utf-8"
    assert hdrs["Cache-Control"] == NO_CACHE
    lm, etag = hdrs["Last-Modified"], hdrs["Etag"]
    assert email.utils.parsedate_to_datetime(lm) is not None
    assert etag.startswith("W/")
    # the next poll from that position waits, then times out (ttl 1 s) with 304
    t0 = time.monotonic()
    status, hdrs, body = await poll({"If-Modified-Since": lm, "If-None-Match": etag})
    assert status == 304 and body == b""
    assert 0.7 < time.monotonic() - t0 < 4


async def test_longpoll_httpx(g, http, chan):
    async with httpx.AsyncClient(trust_env=False, timeout=10) as hx:
        task = asyncio.ensure_future(hx.get(f"{g.base}/lpt/{chan}"))
        await asyncio.sleep(0.3)
        await publish(http, g.base, chan, "via httpx")
        r = await asyncio.wait_for(task, 5)
        assert r.status_code == 200 and r.text == "via httpx"
        await publish(http, g.base, chan, "second")
        r = await hx.get(f"{g.base}/lpt/{chan}", headers={
            "If-Modified-Since": r.headers["last-modified"],
            "If-None-Match": r.headers["etag"]})
        assert r.status_code == 200 and r.text == "second"


async def test_polling_answers_at_once(g, http, chan):
    t0 = time.monotonic()
    async with http.get(f"{g.base}/pollt/{chan}") as r:
        assert r.status == 304
    assert time.monotonic() - t0 < 1.0
    await publish(http, g.base, chan, "p1")
    await publish(http, g.base, chan, "p2")
    epoch = "Thu, 01 Jan 1970 00:00:00 GMT"
    # both stored messages in one answer (template ~text~: the rendered messages back to back)
    async with http.get(f"{g.base}/pollt/{chan}", headers={"If-Modified-Since": epoch}) as r:
        assert r.status == 200 and await r.read() == b"p1p2"
        pos = {"If-Modified-Since": r.headers["Last-Modified"], "If-None-Match": r.headers["Etag"]}
    t0 = time.monotonic()
    async with http.get(f"{g.base}/pollt/{chan}", headers=pos) as r:
        assert r.status == 304
    assert time.monotonic() - t0 < 1.0


# -- streaming ----------------------------------------------------------------------------------

async def test_stream_chunked_with_header_and_footer(g, http, chan):
    async with httpx.AsyncClient(trust_env=False, timeout=10) as hx:
        async with hx.stream("GET", f"{g.base}/st/{chan}") as r:
            assert r.status_code == 200
            assert r.headers["transfer-encoding"] == "chunked"
            assert r.headers["cache-control"] == NO_CACHE
            it = r.aiter_raw()
            first = await asyncio.wait_for(it.__anext__(), 5)
            data = bytearray(first)
            assert bytes(data).startswith(b"<HEADER>")
            await publish(http, g.base, chan, "one")
            await publish(http, g.base, chan, "two")
            # the location ttl (1.5 s) ends the stream: footer, then the final chunk
            async def rest():
                async for piece in it:
                    data.extend(piece)
            await asyncio.wait_for(rest(), 6)
    assert bytes(data) == b"<HEADER>[1:one]\r\n[2:two]\r\n<FOOTER>"


# -- CORS ---------------------------------------------------------------------------------------

def _acao(headers):
    return headers.get("Access-Control-Allow-Origin")


async def test_cors_allowed_origin_on_every_answer(g, http, chan):
    ok = {"Origin": ORIGIN}
    bad = {"Origin": "http://evil.example"}
    # publisher
    status, hdrs, _ = await publish(http, g.base, chan, "c1", ok)
    assert status == 200 and _acao(hdrs) == ORIGIN
    status, hdrs, _ = await publish(http, g.base, chan, "c2", bad)
    assert status == 200 and _acao(hdrs) is None
    status, hdrs, _ = await publish(http, g.base, chan, "c3")
    assert status == 200 and _acao(hdrs) is None
    # preflight on the publisher and on a subscriber location
    pre = {**ok, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "Event-Id"}
    async with http.options(f"{g.base}/pub", params={"id": chan}, headers=pre) as r:
        assert r.status == 200 and _acao(r.headers) == ORIGIN
        assert "POST" in r.headers.get("Access-Control-Allow-Methods", "")
        assert "event-id" in r.headers.get("Access-Control-Allow-Headers", "").lower()
    async with http.options(f"{g.base}/ev/{chan}", headers={
            **ok, "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Last-Event-ID"}) as r:
        assert r.status == 200 and _acao(r.headers) == ORIGIN
    async with http.options(f"{g.base}/pub", params={"id": chan}, headers=bad) as r:
        assert r.status == 200 and _acao(r.headers) is None
    # EventSource head
    for hdrs, want in ((ok, ORIGIN), (bad, None)):
        async with http.get(f"{g.base}/evt/{chan}", headers=hdrs) as r:
            assert r.status == 200
            assert _acao(r.headers) == want
            if want:
                assert "Last-Event-ID" in r.headers.get("Access-Control-Allow-Headers", "")
    # long-poll answers: 200 with a message, 304 on timeout, polling 304
    for hdrs, want in ((ok, ORIGIN), (bad, None)):
        task = asyncio.ensure_future(http.get(f"{g.base}/lpt/{chan}", headers=hdrs))
        await asyncio.sleep(0.2)
        await publish(http, g.base, chan, "lp")
        r = await asyncio.wait_for(task, 5)
        assert r.status == 200 and await r.read() == b"lp"
        assert _acao(r.headers) == want
        pos = {"If-Modified-Since": r.headers["Last-Modified"], "If-None-Match": r.headers["Etag"]}
        r.release()
        async with http.get(f"{g.base}/lpt/{chan}", headers={**hdrs, **pos}) as r:
            assert r.status == 304 and _acao(r.headers) == want
        async with http.get(f"{g.base}/pollt/{chan}", headers={**hdrs, **pos}) as r:
            assert r.status == 304 and _acao(r.headers) == want


def _two_publishes(g, chan, first_extra, first_body, second_extra, second_body):
    """Two POSTs on one keep-alive connection; returns both heads, lower-cased."""
    import socket as _s
    with _s.create_connection((g.host, g.port), timeout=5) as sock:
        f = sock.makefile("rb")

        def ask(extra, body):
            sock.sendall((f"POST /pub?id={chan} HTTP/1.1\r\nHost: x\r\n{extra}"
                          f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += f.readline()
            n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            f.read(n)
            return head.decode("latin-1").lower()

        return ask(first_extra, first_body), ask(second_extra, second_body)


async def test_cors_on_publisher_error_answers(g, chan):
    """An error answer to an allowed origin carries CORS (else a browser cannot read it)."""
    first, _ = _two_publishes(g, chan, f"Origin: {ORIGIN}\r\n", b"", "", b"x")
    assert first.startswith("http/1.1 400")
    assert "x-gogin-explain: empty post requests are not allowed." in first
    assert f"access-control-allow-origin: {ORIGIN}" in first, first


async def test_cors_origin_not_leaked_to_next_request_on_connection(g, chan):
    """The Origin of an answered request must not stick to the next one (no Origin)."""
    first, second = _two_publishes(g, chan, f"Origin: {ORIGIN}\r\n", b"",
                                   "", b"no origin here")
    assert first.startswith("http/1.1 400")
    assert second.startswith("http/1.1 200")
    assert "access-control-allow-origin" not in second, second
