"""The demo page and gogin.js in headless Chromium against a real `gogin-server --demo`:
resume after a cut connection (each transport), after a reload, after a restart; the log-in
again prompt when a restart ends the session; fallback when WebSockets do not get through;
the backoff's jitter and countdown; no 404; the curl hint's layout.

The page is loaded through CuttingProxy, so the test can cut its connections (a network
failure) while it publishes straight to gogin.  Every wait is bounded."""

import asyncio
import re
import time

import aiohttp
import pytest

from demo_process import T, CuttingProxy, DemoProcess, chromium

FAST = "min_delay=300&max_delay=1500"        # the page's backoff window, shortened for tests


@pytest.fixture
def demo():
    d = DemoProcess()
    holder = {"demo": d}
    try:
        yield holder                     # a restart replaces holder["demo"]
    finally:
        holder["demo"].stop()


async def publish(demo, channel: str, text: str):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as s:
        async with s.post(f"{demo.base}/pub?id={channel}", data=text.encode(),
                          headers={"Content-Type": "text/plain; charset=utf-8"}) as r:
            assert r.status == 200, await r.text()


async def texts(page) -> list[str]:
    """The feed's texts, oldest first (the page shows the newest on top)."""
    return list(reversed(await page.locator("#notifications li .text").all_text_contents()))


async def wait_texts(page, predicate, timeout=T):
    deadline = time.monotonic() + timeout
    while True:
        got = await texts(page)
        if predicate(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


async def open_page(ctx, url, expect, errors, not_found):
    page = ctx.pages[0] if ctx.pages else await ctx.new_page()
    page.set_default_timeout(T * 1000)
    expect.set_options(timeout=T * 1000)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: not_found.append(r.url) if r.status == 404 else None)
    await page.goto(url)
    return page


async def log_in(page, user, base, query):
    await page.click(f"#user-buttons button[value={user}]")
    await page.wait_for_url(f"{base}/?{query}")


async def restart(demo, new_secret=False):
    """Restart gogin --demo off the event loop (the proxy and Playwright keep running)."""
    demo["demo"] = await asyncio.to_thread(demo["demo"].restart, new_secret)
    return demo["demo"]


def expect_api():
    from playwright.async_api import expect
    return expect


READING = "[demoClient.nextRetryAt, document.getElementById('status').textContent]"


async def countdown_moves(page) -> tuple[float, float]:
    """Two readings of the status, 300 ms apart, during one wait: the second is lower (the
    page redraws every 100 ms and rounds to 0.1 s, so 300 ms always show)."""
    deadline = time.monotonic() + T
    while time.monotonic() < deadline:
        a = await page.evaluate(READING)
        await asyncio.sleep(0.3)
        b = await page.evaluate(READING)
        ma, mb = (re.fullmatch(r"reconnecting in ([\d.]+) s", x[1]) for x in (a, b))
        if a[0] is not None and a[0] == b[0] and ma and mb:
            return float(ma.group(1)), float(mb.group(1))
    raise AssertionError("no countdown seen while the connection was cut")


@pytest.mark.parametrize("transport", ["websocket", "eventsource", "longpoll"])
async def test_cut_connection_resumes_without_loss_or_duplicates(demo, transport):
    d = demo["demo"]
    proxy = await CuttingProxy(d.port).start()
    query = f"transports={transport}&{FAST}"
    errors, not_found = [], []
    expect = expect_api()
    try:
        async with chromium() as ctx:
            page = await open_page(ctx, f"{proxy.base}/?{query}", expect, errors, not_found)
            await log_in(page, "alice", proxy.base, query)
            status = page.locator("#status")
            await expect(status).to_have_attribute("data-state", "open")
            await expect(status).to_have_attribute("data-transport", transport)
            await publish(d, "user.alice", "before")
            assert await wait_texts(page, lambda t: "before" in t) == ["before"]

            proxy.cut()
            await expect(status).to_have_attribute("data-state", "waiting")
            first, second = await countdown_moves(page)
            assert second < first
            sent = [f"m{i:02d}" for i in range(1, 21)]
            for text in sent:                       # while the page cannot connect
                await publish(d, "user.alice", text)
            proxy.restore()

            got = await wait_texts(page, lambda t: len(t) >= 21)
            await expect(status).to_have_attribute("data-state", "open")
            await asyncio.sleep(0.5)                # a late duplicate would show up now
            assert await texts(page) == got == ["before"] + sent
            # still live after the resume
            await publish(d, "all", "after")
            assert (await wait_texts(page, lambda t: "after" in t))[-1] == "after"
    finally:
        await proxy.close()
    assert errors == [] and not_found == []


async def test_reload_shows_what_was_published_meanwhile(demo):
    d = demo["demo"]
    proxy = await CuttingProxy(d.port).start()
    errors, not_found = [], []
    expect = expect_api()
    try:
        async with chromium() as ctx:
            page = await open_page(ctx, f"{proxy.base}/?{FAST}", expect, errors, not_found)
            await log_in(page, "bob", proxy.base, FAST)
            await expect(page.locator("#status")).to_have_attribute("data-state", "open")
            await publish(d, "team.red", "before")
            await wait_texts(page, lambda t: "before" in t)
            proxy.cut()
            sent = [f"r{i:02d}" for i in range(1, 21)]
            for text in sent:
                await publish(d, "team.red", text)
            proxy.restore()
            await page.reload()
            await expect(page.locator("#status")).to_have_attribute("data-state", "open")
            got = await wait_texts(page, lambda t: len(t) >= 21)
            await asyncio.sleep(0.5)
            assert await texts(page) == got == ["before"] + sent     # history on load
    finally:
        await proxy.close()
    assert errors == [] and not_found == []


@pytest.mark.parametrize("transport", ["websocket", "eventsource", "longpoll"])
async def test_restart_keeps_the_session_then_a_new_secret_asks_to_log_in(demo, transport):
    d = demo["demo"]
    proxy = await CuttingProxy(d.port).start()
    query = f"transports={transport}&{FAST}"
    errors, not_found = [], []
    expect = expect_api()
    try:
        async with chromium() as ctx:
            page = await open_page(ctx, f"{proxy.base}/?{query}", expect, errors, not_found)
            await log_in(page, "carol", proxy.base, query)
            status = page.locator("#status")
            await expect(status).to_have_attribute("data-state", "open")
            await publish(d, "team.blue", "before")
            await wait_texts(page, lambda t: "before" in t)

            # same secret: the signed cookie still works; the messages published after the
            # restart, before the page is back, arrive once, in order
            proxy.cut()
            started = time.time()
            d = await restart(demo)
            # positions are (second, per-channel tag) and a restarted gogin counts tags from 0
            # again: a message in the very second of the last one seen would pass for it
            # (docs/clients.md, Limits).  A real restart takes longer; make sure of it.
            await asyncio.sleep(max(0.0, int(started) + 1.05 - time.time()))
            sent = [f"s{i:02d}" for i in range(1, 21)]
            for text in sent:
                await publish(d, "team.blue", text)
            proxy.restore()
            got = await wait_texts(page, lambda t: len(t) >= 21)
            await expect(status).to_have_attribute("data-state", "open")
            await asyncio.sleep(0.5)
            assert await texts(page) == got == ["before"] + sent
            await expect(page.locator("#whoami")).to_have_text("carol")

            # a new secret: the session is refused, the page stops retrying and asks
            d = await restart(demo, new_secret=True)
            await expect(status).to_have_attribute("data-state", "refused")
            await expect(page.locator("#relogin")).to_be_visible()
            await expect(page.locator("#user-buttons button")).to_have_count(4)
            info = await page.evaluate("demoClient.lastError")
            assert info["status"] == 401
            await asyncio.sleep(1.0)
            assert await page.evaluate("demoClient.state") == "refused"   # not retried

            # logging in again works
            await log_in(page, "carol", proxy.base, query)
            await expect(status).to_have_attribute("data-state", "open")
            await expect(status).to_have_attribute("data-transport", transport)
    finally:
        await proxy.close()
    assert errors == [] and not_found == []


async def test_falls_back_to_eventsource_when_websockets_do_not_get_through(demo):
    d = demo["demo"]
    proxy = await CuttingProxy(d.port).start()
    proxy.refuse_upgrades = True
    errors, not_found = [], []
    expect = expect_api()
    try:
        async with chromium() as ctx:
            page = await open_page(ctx, f"{proxy.base}/?{FAST}", expect, errors, not_found)
            await log_in(page, "dave", proxy.base, FAST)
            status = page.locator("#status")
            await expect(status).to_have_attribute("data-state", "open")
            await expect(status).to_have_attribute("data-transport", "eventsource")
            await publish(d, "user.dave", "via eventsource")
            assert "via eventsource" in await wait_texts(page, lambda t: "via eventsource" in t)
    finally:
        await proxy.close()
    assert errors == [] and not_found == []


async def test_falls_back_to_long_polling_when_neither_gets_through(demo):
    d = demo["demo"]
    proxy = await CuttingProxy(d.port).start()
    proxy.refuse_upgrades = proxy.refuse_event_streams = True
    errors, not_found = [], []
    expect = expect_api()
    try:
        async with chromium() as ctx:
            page = await open_page(ctx, f"{proxy.base}/?{FAST}", expect, errors, not_found)
            await log_in(page, "dave", proxy.base, FAST)
            status = page.locator("#status")
            await expect(status).to_have_attribute("data-transport", "longpoll")
            await expect(status).to_have_attribute("data-state", "open")
            await publish(d, "user.dave", "via long-polling")
            assert "via long-polling" in await wait_texts(page, lambda t: "via long-polling" in t)
    finally:
        await proxy.close()
    assert errors == [] and not_found == []


async def test_browser_without_websocket_and_eventsource_long_polls(demo):
    d = demo["demo"]
    errors, not_found = [], []
    expect = expect_api()
    async with chromium() as ctx:
        await ctx.add_init_script("delete window.WebSocket; delete window.EventSource;")
        page = await open_page(ctx, f"{d.base}/?{FAST}", expect, errors, not_found)
        await log_in(page, "bob", d.base, FAST)
        await expect(page.locator("#status")).to_have_attribute("data-transport", "longpoll")
        await publish(d, "team.red", "no websocket here")
        assert "no websocket here" in await wait_texts(page, lambda t: "no websocket here" in t)
    assert errors == [] and not_found == []


async def test_gap_is_shown_when_history_no_longer_holds_the_position(demo):
    d = demo["demo"]
    proxy = await CuttingProxy(d.port).start()
    errors, not_found = [], []
    expect = expect_api()
    try:
        async with chromium() as ctx:
            page = await open_page(ctx, f"{proxy.base}/?{FAST}", expect, errors, not_found)
            await log_in(page, "alice", proxy.base, FAST)
            await expect(page.locator("#status")).to_have_attribute("data-state", "open")
            await publish(d, "user.alice", "before")
            await wait_texts(page, lambda t: "before" in t)
            proxy.cut()
            # the demo stores 100 messages per channel: 130 push the position out
            for i in range(130):
                await publish(d, "user.alice", f"g{i:03d}")
            proxy.restore()
            got = await wait_texts(page, lambda t: "g129" in t)
            gap = page.locator("#notifications li.gap")
            await expect(gap).to_have_count(1)
            assert "lost" in await gap.text_content()
            notes = [t for t in got if not t.startswith("Older notifications")]
            assert notes == ["before"] + [f"g{i:03d}" for i in range(30, 130)]
    finally:
        await proxy.close()
    assert errors == [] and not_found == []


async def test_backoff_full_jitter_spreads_a_storm(demo):
    """10,000 pages dropped at once: their first tries spread over the whole window, later
    ones over a doubling window; never two thirds of them in the same second."""
    d = demo["demo"]
    async with chromium() as ctx:
        page = ctx.pages[0] if ctx.pages else await ctx.new_page()
        await page.goto(d.base + "/")
        for n in range(6):
            delays = await page.evaluate(
                "(n) => Array.from({length: 10000},"
                " () => GoginClient.retryDelay(n, 3000, 60000))", n)
            window = min(60000, 3000 * 2 ** n)
            assert all(0 <= x <= window for x in delays)
            buckets = {}
            for x in delays:
                buckets[int(x // 1000)] = buckets.get(int(x // 1000), 0) + 1
            assert max(buckets.values()) < 0.4 * 10000, (n, buckets)
            assert len(buckets) >= window // 1000        # every second of the window is used
            assert max(delays) > 0.9 * window and min(delays) < 0.1 * window


async def test_curl_hint_never_breaks_a_word(demo):
    """At every width from 300 to 600 px the hint wraps only at a space or after / ? =, so a
    host, a port, a channel id is never cut in two."""
    d = demo["demo"]
    errors, not_found = [], []
    expect = expect_api()
    async with chromium(viewport={"width": 360, "height": 700}) as ctx:
        page = await open_page(ctx, d.base + "/", expect, errors, not_found)
        assert await page.locator("link[rel=icon]").count() == 1     # no /favicon.ico request
        await page.click("#user-buttons button[value=alice]")
        await page.wait_for_url(d.base + "/")
        hint = page.locator("#curl-hint")
        await expect(hint).to_contain_text("/pub?id=user.alice")
        wrapped = 0
        for width in range(300, 601, 10):
            await page.set_viewport_size({"width": width, "height": 700})
            layout = await hint.evaluate(LAYOUT_JS)
            assert layout["broken"] == [], (width, layout)
            assert not layout["overflow"], width
            wrapped += layout["lines"] > 1
        assert wrapped > 5                      # it does wrap at the narrow widths
    assert errors == [] and not_found == []


# For each word of the hint (split at spaces and after / ? = &): the lines its characters
# are on.  A word on two lines was broken.
LAYOUT_JS = """(el) => {
  const chars = [];
  for (const node of el.childNodes) {
    if (node.nodeType !== Node.TEXT_NODE) continue;
    for (let i = 0; i < node.data.length; i++) {
      const r = document.createRange();
      r.setStart(node, i); r.setEnd(node, i + 1);
      chars.push([node.data[i], Math.round(r.getBoundingClientRect().top)]);
    }
  }
  const words = [[]];
  for (const [c, top] of chars) {
    if (c === " ") { words.push([]); continue; }
    words[words.length - 1].push([c, top]);
    if ("/?=&".includes(c)) words.push([]);
  }
  const broken = words.filter((w) => new Set(w.map((x) => x[1])).size > 1)
                      .map((w) => w.map((x) => x[0]).join(""));
  const lines = new Set(chars.map((x) => x[1])).size;
  return {broken, lines, overflow: el.scrollWidth > el.clientWidth};
}"""


async def test_gogin_js_reads_the_1008_refusal(demo):
    """gogin.js on its own (no demo page logic): a channel gogin refuses closes the
    WebSocket with 1008 + JSON; that is a "refused" event with gogin's status, not retried."""
    d = demo["demo"]
    async with chromium() as ctx:
        page = ctx.pages[0] if ctx.pages else await ctx.new_page()
        await page.goto(d.base + "/static/gogin.js")          # same origin, nothing else
        await page.add_script_tag(url=d.base + "/static/gogin.js")
        info = await page.evaluate("""() => new Promise((resolve) => {
            const states = [];
            const c = new GoginClient({transports: {websocket: "/ws/"}, channels: ["ALL"],
                                       minDelay: 100,
                                       onstatus: (s) => states.push(s),
                                       onrefused: (i) => setTimeout(() =>
                                         resolve({status: i.status, explain: i.explain,
                                                  states, state: c.state}), 500)});
        })""")
    assert info["status"] == 403
    assert info["explain"] == "Channel id not authorized for this method."
    # upgraded, then closed: open for a moment, then refused, and no retry after it
    assert info["states"] == ["connecting", "open", "refused"] and info["state"] == "refused"
