"""The forever-iframe (issue 12, point 11): pushstream.js's "stream" mode loads an iframe whose
page registers itself with the parent page's PushStream and then calls p(id, channel, text,
eventid, time, tag) once per message (misc/js/pushstream.js: StreamWrapper.loadFrame, register,
process; PushStream.register).  The module serves that page from its example configuration's
/sub/ location (misc/nginx.conf: header, message and footer templates); gogin's default is
/iframe/."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from gogin_e2e import (GoginFactory, chromium_page, default_locations_plus, parse_default,
                       publish, recv, ws_connect)

# The parent page: what the frame relies on in pushstream.js, written for this test.  The page
# relaxes its document.domain as pushstream.js does before loading the frame (the host is an
# IP: it stays as it is), loads the frame with ?streamid=<n>, and PushStream.register(frame)
# matches that streamid in the frame's URL and gives the frame its p() function.
PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body><script>
try { document.domain = location.hostname; } catch (e) {}
window.msgs = []; window.registered = [];
window.PushStream = {register: function (frame) {
  var m = frame.window.location.href.match(/streamid=([0-9]*)&?/);
  window.registered.push(m && m[1]);
  frame.p = function (id, channel, text, eventid, time, tag) {
    window.msgs.push([id, channel, text, eventid, time, tag]);
  };
}};
window.start = function (url) {
  var f = document.createElement("iframe");
  f.setAttribute("src", url);
  document.body.appendChild(f);
};
</script></body></html>
"""


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("iframe")
    (tmp / "index.html").write_text(PAGE)
    f = GoginFactory(tmp)
    try:
        yield f({"locations": default_locations_plus(
            {"path": "/page/", "role": "static", "root": str(tmp)})})
    finally:
        f.close()


async def test_pushstream_stream_mode_gets_messages_through_the_iframe(g, http, chan):
    texts = ["hello", 'multi\nline "json" \\ ✓', "it's <b>bold</b>"]
    async with ws_connect(f"{g.ws}/ws/{chan}") as ws, chromium_page() as page:
        await page.goto(f"{g.base}/page/index.html")
        await page.evaluate(f"window.start('/iframe/{chan}?_=1&streamid=7')")
        await page.wait_for_function("window.registered.length >= 1", timeout=10000)
        for i, text in enumerate(texts):
            await publish(http, g.base, chan, text, {"Event-Id": f"e{i}"})
        docs = [parse_default(await recv(ws)) for _ in texts]
        await page.wait_for_function(f"window.msgs.length >= {len(texts)}", timeout=10000)
        msgs = await page.evaluate("window.msgs")
        registered = await page.evaluate("window.registered")
    assert registered == ["7"]
    # process(id, channel, text, eventid, time, tag) as pushstream.js receives them
    assert msgs == [[d["id"], chan, t, f"e{i}", d["time"], d["tag"]]
                    for i, (t, d) in enumerate(zip(texts, docs))]


async def test_iframe_page_bytes(g, http, chan):
    """A text/html page: the header (a script that registers the frame), one script per
    message calling p(...) with JSON strings, and the footer when the stream ends (here: the
    channel is deleted, which first sends its id -2 message)."""
    async with ws_connect(f"{g.ws}/ws/{chan}") as ws, \
            httpx.AsyncClient(trust_env=False, timeout=10) as hx:
        async with hx.stream("GET", f"{g.base}/iframe/{chan}") as r:
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/html; charset=utf-8"
            assert r.headers["transfer-encoding"] == "chunked"
            it = r.aiter_bytes()
            data = bytearray(await asyncio.wait_for(it.__anext__(), 5))
            await publish(http, g.base, chan, 'say "hi"\n', {"Event-Id": "x1"})
            doc = parse_default(await recv(ws))
            async with http.delete(f"{g.base}/pub", params={"id": chan}) as d:
                assert d.status == 200

            async def rest():
                async for piece in it:
                    data.extend(piece)
            await asyncio.wait_for(rest(), 5)
    page = bytes(data).decode()
    head, _, body = page.partition("<body>")
    assert head.startswith("<html><head>") and "parent.PushStream.register(this);" in head
    call = '<script>p(%d,%s,%s,%s,%s,%s);</script>\r\n'
    first = call % (doc["id"], json.dumps(chan), json.dumps('say "hi"\n'), '"x1"',
                    json.dumps(doc["time"]), json.dumps(doc["tag"]))
    assert body.startswith(first)
    deleted = body[len(first):]
    assert deleted.startswith('<script>p(-2,%s,"Channel deleted",' % json.dumps(chan))
    assert deleted.endswith(");</script>\r\n</body></html>")
