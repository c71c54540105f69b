"""`gogin-server --demo` end to end: a real `python -m gogin --demo` process, the demo main
server's cookie session, gogin's subscribe/publish callbacks, and the page in headless
Chromium.  Every wait is bounded."""

import asyncio
import json
import os
import shutil
import tempfile

import aiohttp
import pytest
import websockets

from demo_process import CHROMIUM, CHROMIUM_ARGS, T, DemoProcess  # noqa: E402

SCREENSHOT = "/tmp/gogin-demo.png"


@pytest.fixture(scope="module")
def demo():
    d = DemoProcess()
    try:
        yield d
    finally:
        d.stop()


async def login(demo, user: str) -> str:
    """POST /login at the demo main server; returns the Cookie header value."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as s:
        async with s.post(f"{demo.main}/login", data={"user": user, "next": demo.base + "/"},
                          allow_redirects=False) as r:
            assert r.status == 303
            assert r.headers["Location"] == demo.base + "/"
            set_cookie = r.headers["Set-Cookie"]
            assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie
            assert "Path=/" in set_cookie
            morsel = r.cookies["gogin_demo_session"]
            return f"gogin_demo_session={morsel.value}"


async def publish(demo, channel: str, text: str) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as s:
        # text/plain: an application/octet-stream body would go out as a raw binary frame
        async with s.post(f"{demo.base}/pub?id={channel}", data=text.encode(),
                          headers={"Content-Type": "text/plain; charset=utf-8"}) as r:
            assert r.status == 200, await r.text()
            return json.loads(await r.text())


def connect(demo, cookie=None):
    headers = {"Cookie": cookie} if cookie else {}
    return websockets.connect(demo.ws, additional_headers=headers, open_timeout=T)


async def recv(ws) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), T))


# -- HTTP / WebSocket ---------------------------------------------------------------------------

async def test_page_and_client_are_served(demo):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as s:
        async with s.get(demo.base + "/") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/html")
            page = await r.text()
            assert "/static/gogin.js" in page
        async with s.get(demo.base + "/static/gogin.js") as r:
            assert r.status == 200
            assert "GoginClient" in await r.text()
        async with s.get(demo.base + "/_demo/config.json") as r:
            cfg = json.loads(await r.text())
            assert cfg["main_server"] == demo.main
            assert set(cfg["users"]) >= {"alice", "bob", "carol"}
        # `/` only gets what no other location matches
        async with s.get(demo.base + "/healthz") as r:
            assert r.status == 200 and await r.text() == "ok\n"
        async with s.get(demo.base + "/no-such-file") as r:
            assert r.status == 404
    assert demo.main == f"http://127.0.0.1:{demo.port + 1}"


async def test_server_publish_reaches_logged_in_user(demo):
    cookie = await login(demo, "alice")
    async with connect(demo, cookie) as ws:
        info = await publish(demo, "user.alice", 'hello "alice"\n')
        assert int(info["subscribers"]) == 1
        msg = await recv(ws)
        assert msg["channel"] == "user.alice"
        assert msg["text"] == 'hello "alice"\n'
        assert set(msg) == {"id", "channel", "text", "tag", "time", "eventid"}


async def test_client_publish_is_authorized_and_stamped(demo):
    alice, bob, carol = [await login(demo, u) for u in ("alice", "bob", "carol")]
    async with connect(demo, alice) as wa, connect(demo, bob) as wb, connect(demo, carol) as wc:
        await wa.send(json.dumps({"channel": "team.red", "text": "hi bob"}))
        for ws in (wb, wa):          # bob shares team.red; alice hears herself too
            msg = await recv(ws)
            assert msg["channel"] == "team.red"
            assert json.loads(msg["text"]) == {"from": "alice", "text": "hi bob"}
        # plain text goes to `all`
        await wb.send("plain hello")
        msg = await recv(wc)
        assert msg["channel"] == "all"
        assert json.loads(msg["text"]) == {"from": "bob", "text": "plain hello"}
        # carol (team.blue) never saw the team.red message: her next one is this marker
        await publish(demo, "user.carol", "marker")
        msg = await recv(wc)
        assert (msg["channel"], msg["text"]) == ("user.carol", "marker")


@pytest.mark.parametrize("message", [
    json.dumps({"channel": "team.red", "text": "   "}),          # empty
    json.dumps({"channel": "team.red", "text": "x" * 281}),      # too long
    json.dumps({"channel": "team.blue", "text": "not mine"}),    # not one of alice's channels
    json.dumps({"channel": "user.bob", "text": "not mine"}),
])
async def test_client_publish_rejected(demo, message):
    alice, bob = await login(demo, "alice"), await login(demo, "bob")
    async with connect(demo, alice) as wa, connect(demo, bob) as wb:
        await wa.send(message)
        assert await recv(wa) == {"error": "publish rejected", "status": 403}
        await publish(demo, "user.bob", "marker")
        msg = await recv(wb)
        assert (msg["channel"], msg["text"]) == ("user.bob", "marker")


@pytest.mark.parametrize("cookie", [None, "gogin_demo_session=forged"])
async def test_not_logged_in_is_refused(demo, cookie):
    with pytest.raises(websockets.exceptions.InvalidStatus) as exc:
        async with connect(demo, cookie):
            pass
    resp = exc.value.response
    assert resp.status_code == 401
    assert json.loads(resp.body) == {"error": "not logged in"}


async def test_tampered_session_is_refused(demo):
    cookie = await login(demo, "bob")
    name, _, token = cookie.partition("=")
    user, sid, issued, sig = token.split(".")
    for forged in (f"alice.{sid}.{issued}.{sig}",                   # another user, same signature
                   f"{user}.{sid}.{issued}.{sig[:-2]}AA"):         # a broken signature
        with pytest.raises(websockets.exceptions.InvalidStatus) as exc:
            async with connect(demo, f"{name}={forged}"):
                pass
        assert exc.value.response.status_code == 401
    async with connect(demo, cookie):                                # the real one still works
        pass


async def test_logout_ends_the_session(demo):
    cookie = await login(demo, "dave")
    async with connect(demo, cookie):
        pass
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as s:
        async with s.post(f"{demo.main}/logout", data={"next": demo.base + "/"},
                          headers={"Cookie": cookie}, allow_redirects=False) as r:
            assert r.status == 303
    with pytest.raises(websockets.exceptions.InvalidStatus) as exc:
        async with connect(demo, cookie):
            pass
    assert exc.value.response.status_code == 401


async def test_foreign_origin_is_refused(demo):
    cookie = await login(demo, "alice")
    with pytest.raises(websockets.exceptions.InvalidStatus) as exc:
        async with websockets.connect(demo.ws, additional_headers={"Cookie": cookie},
                                      origin="http://evil.example", open_timeout=T):
            pass
    assert exc.value.response.status_code == 403


async def test_whoami_cors_for_the_page(demo):
    cookie = await login(demo, "carol")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as s:
        async with s.get(f"{demo.main}/whoami",
                         headers={"Cookie": cookie, "Origin": demo.base}) as r:
            assert r.headers["Access-Control-Allow-Origin"] == demo.base
            assert r.headers["Access-Control-Allow-Credentials"] == "true"
            doc = await r.json()
            assert doc["user"] == "carol" and "team.blue" in doc["channels"]
        async with s.get(f"{demo.main}/whoami", headers={"Origin": "http://evil.example"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
            assert (await r.json())["user"] is None
        async with s.post(f"{demo.main}/login", data={"user": "alice",
                                                      "next": "http://evil.example/"},
                          allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] != "http://evil.example/"


# -- the page in headless Chromium --------------------------------------------------------------

async def test_page_in_headless_chromium(demo):
    pw_api = pytest.importorskip("playwright.async_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="gogin-chromium-")
    try:
        async with pw_api.async_playwright() as pw:
            ctx = await pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": 1100, "height": 760}, timeout=T * 1000)
            try:
                await _drive_page(demo, ctx, pw_api.expect)
            finally:
                await ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def _drive_page(demo, ctx, expect):
    page = ctx.pages[0] if ctx.pages else await ctx.new_page()
    page.set_default_timeout(T * 1000)
    expect.set_options(timeout=T * 1000)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))

    await page.goto(demo.base + "/")
    # logged out: one button per user; the form posts to the main server, which redirects back
    await page.click("#user-buttons button[value=alice]")
    await page.wait_for_url(demo.base + "/")
    await expect(page.locator("#whoami")).to_have_text("alice")
    await expect(page.locator("#channels li")).to_have_count(3)
    await expect(page.locator("#status")).to_have_attribute("data-state", "open")
    # history on load: what earlier tests published to alice's channels is shown first
    await expect(page.locator("#notifications li .text", has_text="plain hello")).to_have_count(1)
    before = int(await page.locator("#count").text_content())

    # a server-side publish appears live
    await publish(demo, "user.alice", "Build #42 passed")
    first = page.locator("#notifications li").first
    await expect(first.locator(".text")).to_have_text("Build #42 passed")
    await expect(first.locator(".channel")).to_have_text("user.alice")
    await expect(first.locator(".from")).to_have_text("server")

    # a message typed on the page goes through the main server and comes back stamped;
    # bob, on the same team, receives it too
    bob = await login(demo, "bob")
    async with connect(demo, bob) as wb:
        await page.select_option("#send-channel", "team.red")
        await page.fill("#send-text", "Lunch at noon?")
        await page.click("#send-button")
        await expect(first.locator(".text")).to_have_text("Lunch at noon?")
        await expect(first.locator(".from")).to_have_text("alice")
        await expect(first.locator(".channel")).to_have_text("team.red")
        msg = await recv(wb)
        assert json.loads(msg["text"]) == {"from": "alice", "text": "Lunch at noon?"}
        await wb.send(json.dumps({"channel": "all", "text": "Sure, see you there"}))
        await expect(first.locator(".text")).to_have_text("Sure, see you there")
        await expect(first.locator(".from")).to_have_text("bob")

    await expect(page.locator("#count")).to_have_text(str(before + 3))
    await page.screenshot(path=SCREENSHOT, full_page=True)
    assert errors == []

    # log out: back to the login form, no live connection
    await page.click("#logout-form button")
    await page.wait_for_url(demo.base + "/")
    await expect(page.locator("#user-buttons button")).to_have_count(4)
    await expect(page.locator("#status")).to_have_attribute("data-state", "idle")
