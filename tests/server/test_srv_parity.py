"""Push-stream parity of methods, handshakes and polling answers (issue 12): what the module's
source does (src/ngx_http_push_stream_module_subscriber.c, _websocket.c, _publisher.c)."""

from __future__ import annotations

import pytest

from gogin_e2e import GoginFactory, NO_CACHE, publish, raw_request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


@pytest.fixture(scope="module")
def explaining(tmp_path_factory):
    """A server that also sends push-stream's explain header."""
    f = GoginFactory(tmp_path_factory.mktemp("parity"))
    try:
        yield f({"server": {"push_stream_explain_header": True}})
    finally:
        f.close()


def handshake(path: str, version: str = "13", method: str = "GET") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n\r\n").encode()


# -- methods ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/sub/m", "/ev/m", "/lp/m", "/poll/m", "/ws/m",
                                  "/subscribe/m", "/subscribe-lp/m"])
async def test_subscribers_answer_get_only(shared_gogin, http, path):
    g = shared_gogin
    for method in ("HEAD", "POST", "PUT", "DELETE", "PATCH"):
        async with http.request(method, g.base + path) as r:
            assert (r.status, r.headers.get("Allow")) == (405, "GET"), (method, path)
            assert r.headers["Cache-Control"] == NO_CACHE


@pytest.mark.parametrize("path", ["/sub/m", "/ev/m", "/lp/m", "/poll/m"])
async def test_subscriber_options_is_200_without_allow(shared_gogin, http, path):
    async with http.options(shared_gogin.base + path) as r:
        assert r.status == 200 and await r.read() == b""
        assert "Allow" not in r.headers


async def test_websocket_options_is_405(shared_gogin, http):
    # the module's WebSocket handler refuses anything but GET, OPTIONS included
    async with http.options(f"{shared_gogin.base}/ws/m") as r:
        assert (r.status, r.headers.get("Allow")) == (405, "GET")


async def test_websocket_handshake_with_post_is_405(shared_gogin):
    g = shared_gogin
    status, headers, _ = await raw_request(g.host, g.port, handshake("/ws/m", method="POST"))
    assert (status, headers.get("allow")) == (405, "GET")


# -- the WebSocket 101 ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/ws/m", "/pub?id=m", "/pub"])
async def test_websocket_101_carries_the_no_cache_headers(shared_gogin, path):
    g = shared_gogin
    status, headers, _ = await raw_request(g.host, g.port, handshake(path))
    assert status == 101
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="   # RFC 6455 §1.3
    assert headers["cache-control"] == NO_CACHE
    assert headers["expires"] == "Thu, 01 Jan 1970 00:00:01 GMT"


async def test_refused_websocket_101_carries_the_no_cache_headers(shared_gogin):
    """A channel error of a valid handshake: upgraded, then closed 1008 (docs/protocol.md)."""
    g = shared_gogin
    status, headers, _ = await raw_request(g.host, g.port, handshake("/ws/" + "x" * 2000))
    assert status == 101 and headers["cache-control"] == NO_CACHE


# -- WebSocket versions --------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["8", "13"])
async def test_websocket_versions_8_and_13_are_accepted(shared_gogin, version):
    g = shared_gogin
    status, _, _ = await raw_request(g.host, g.port, handshake("/ws/m", version))
    assert status == 101


@pytest.mark.parametrize("version", ["7", "12", "14", "0", "abc"])
@pytest.mark.parametrize("path", ["/ws/m", "/pub?id=m"])
async def test_other_websocket_versions_are_400(explaining, version, path):
    g = explaining
    status, headers, body = await raw_request(g.host, g.port, handshake(path, version))
    assert status == 400 and body == b""
    assert headers["sec-websocket-version"] == "8, 13"
    explain = "Version not supported. Supported versions: 8, 13"     # websocket.c
    assert headers["x-nginx-pushstream-explain"] == explain
    assert headers["x-gogin-explain"] == explain


# -- ~tag~ ---------------------------------------------------------------------------------------

async def test_tags_count_per_server_second_from_1(gogin, http):
    """utils.c, add_msg_to_channel: a message in the same second as the server's previous
    message (any channel) gets its tag + 1, else 1; tags never start at 0."""
    import asyncio
    import email.utils
    import time

    from gogin_e2e import parse_default, recv, ws_connect
    g = gogin
    got = []
    async with ws_connect(f"{g.ws}/ws/ta/tb") as ws:
        for rnd in range(2):
            for ch in ("ta", "tb", "ta", "tb"):
                assert (await publish(http, g.base, ch, "m"))[0] == 200
            for _ in range(4):
                doc = parse_default(await recv(ws))
                got.append((email.utils.parsedate_to_datetime(doc["time"]).timestamp(),
                            int(doc["tag"]), doc["channel"]))
            if rnd == 0:               # the next round starts in a later second
                await asyncio.sleep(int(time.time()) + 1.05 - time.time())
    assert got[0][1] == 1, got                      # the server's first message
    assert got[4][0] > got[3][0] and got[4][1] == 1, got
    for (t0, tag0, _), (t1, tag1, _) in zip(got, got[1:]):
        assert tag1 == (tag0 + 1 if t1 == t0 else 1), got
    # several channels share the count: within a second no two messages have the same tag
    same_second = [(t, tag) for t, tag, _ in got]
    assert len(set(same_second)) == len(same_second), got


# -- polling with nothing new ------------------------------------------------------------------------

async def test_polling_304_echoes_the_position(shared_gogin, http, chan):
    """subscriber.c: "polling subscriber requests get a 304 with their entity tags preserved"."""
    g = shared_gogin
    url = f"{g.base}/poll/{chan}"
    # no position: 304 without Last-Modified / Etag
    async with http.get(url) as r:
        assert r.status == 304
        assert "Last-Modified" not in r.headers and "Etag" not in r.headers
        assert r.headers["Cache-Control"] == NO_CACHE
    await publish(http, g.base, chan, "p1")
    async with http.get(url, headers={"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}) as r:
        assert r.status == 200 and await r.read()
        lm, etag = r.headers["Last-Modified"], r.headers["Etag"]
    # the answer's position, sent back: nothing newer -> 304 with the same values
    async with http.get(url, headers={"If-Modified-Since": lm, "If-None-Match": etag}) as r:
        assert r.status == 304 and await r.read() == b""
        assert (r.headers.get("Last-Modified"), r.headers.get("Etag")) == (lm, etag)
    # only one of them: only that one comes back (a bare tag comes back as W/<tag>)
    later = "Mon, 01 Jan 2080 00:00:00 GMT"
    async with http.get(url, headers={"If-Modified-Since": later}) as r:
        assert r.status == 304
        assert (r.headers.get("Last-Modified"), r.headers.get("Etag")) == (later, None)
    async with http.get(url, headers={"If-Modified-Since": later, "If-None-Match": "7"}) as r:
        assert (r.headers.get("Last-Modified"), r.headers.get("Etag")) == (later, "W/7")
    async with http.get(url, params={"time": "3502915200", "tag": "2"}) as r:   # 2081-01-01
        assert r.status == 304
        assert r.headers.get("Last-Modified") == "Wed, 01 Jan 2081 00:00:00 GMT"
        assert r.headers.get("Etag") == "W/2"


async def test_jsonp_polling_with_nothing_new_is_304(shared_gogin, http, chan):
    g = shared_gogin
    url = f"{g.base}/poll/{chan}"
    await publish(http, g.base, chan, "j1")
    epoch = {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
    async with http.get(url, params={"callback": "cb"}, headers=epoch) as r:
        assert r.status == 200
        body = await r.read()
        assert body.startswith(b"cb([") and body.endswith(b"]);")
    async with http.get(url, headers=epoch) as r:     # the same message, with its position
        pos = {"If-Modified-Since": r.headers["Last-Modified"], "If-None-Match": r.headers["Etag"]}
    async with http.get(url, params={"callback": "cb"}, headers=pos) as r:
        assert (r.status, await r.read()) == (304, b"")
        assert (r.headers.get("Last-Modified"), r.headers.get("Etag")) == \
            (pos["If-Modified-Since"], pos["If-None-Match"])
    async with http.get(url, params={"callback": "cb"}) as r:        # no position at all
        assert r.status == 304 and "Etag" not in r.headers
    async with http.get(url, params={"callback": "1bad"}) as r:
        assert r.status == 400
