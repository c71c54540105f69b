"""The demo page in its signed-token mode (?auth=token) in headless Chromium against a real
`gogin-server --demo`: gogin.js gets its tokens from the demo main server's /token, the
WebSocket stays open past the first token's end (refreshed), an EventSource reconnects with
a new token without losing a message, and a new secret (sessions and tokens gone) ends in the
log-in-again prompt, not in retries.  Every wait is bounded."""

import asyncio
import time

import pytest

from demo_process import CuttingProxy, DemoProcess, chromium
from test_demo_resume import FAST, expect_api, log_in, open_page, publish, restart, texts, \
    wait_texts

LIFE = 3                        # s of each demo token (?token_life=)


@pytest.fixture
def demo():
    d = DemoProcess()
    holder = {"demo": d}
    try:
        yield holder                     # a restart replaces holder["demo"]
    finally:
        holder["demo"].stop()


async def test_websocket_outlives_its_first_token(demo):
    d = demo["demo"]
    query = f"auth=token&token_life={LIFE}&transports=websocket&{FAST}"
    errors, not_found = [], []
    expect = expect_api()
    async with chromium() as ctx:
        page = await open_page(ctx, f"{d.base}/?{query}", expect, errors, not_found)
        await log_in(page, "alice", d.base, query)
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "open")
        await expect(status).to_have_attribute("data-transport", "websocket")
        assert "/token/" in await page.evaluate("demoClient.ws.url")
        await expect(page.locator("#send")).to_be_hidden()     # token locations take none
        await publish(d, "user.alice", "before")
        assert await wait_texts(page, lambda t: "before" in t) == ["before"]
        first_end = await page.evaluate("demoClient.tokenExp") / 1000
        opened = await page.evaluate("demoClient.openedAt")
        while time.time() < first_end + 1.5:
            await asyncio.sleep(0.1)
        state = await page.evaluate("[demoClient.state, demoClient.refreshes, "
                                    "demoClient.openedAt]")
        assert state[0] == "open" and state[1] >= 1 and state[2] == opened, state
        await publish(d, "team.red", "after")
        assert await wait_texts(page, lambda t: "after" in t) == ["before", "after"]
    assert errors == [] and not_found == []


async def test_eventsource_reconnects_with_new_tokens_losing_nothing(demo):
    d = demo["demo"]
    query = f"auth=token&token_life=2&transports=eventsource&{FAST}"
    errors, not_found = [], []
    expect = expect_api()
    async with chromium() as ctx:
        page = await open_page(ctx, f"{d.base}/?{query}", expect, errors, not_found)
        await log_in(page, "bob", d.base, query)
        await expect(page.locator("#status")).to_have_attribute("data-state", "open")
        sent = [f"e{i}" for i in range(10)]
        for text in sent:                  # over 5 s: two or more tokens end meanwhile
            await publish(d, "user.bob", text)
            await asyncio.sleep(0.5)
        assert await wait_texts(page, lambda t: len(t) >= len(sent)) == sent
        await asyncio.sleep(0.5)
        assert await texts(page) == sent     # once each, in order
        assert await page.evaluate("demoClient.state") in ("open", "connecting", "waiting")
    assert errors == [] and not_found == []


async def test_new_secret_asks_to_log_in_again(demo):
    d = demo["demo"]
    proxy = await CuttingProxy(d.port).start()
    query = f"auth=token&token_life={LIFE}&transports=websocket&{FAST}"
    errors, not_found = [], []
    expect = expect_api()
    try:
        async with chromium() as ctx:
            page = await open_page(ctx, f"{proxy.base}/?{query}", expect, errors, not_found)
            await log_in(page, "carol", proxy.base, query)
            status = page.locator("#status")
            await expect(status).to_have_attribute("data-state", "open")
            await restart(demo, new_secret=True)     # sessions and the token key change
            await expect(status).to_have_attribute("data-state", "refused")
            await expect(page.locator("#relogin")).to_be_visible()
            assert (await page.evaluate("demoClient.lastError"))["status"] == 401
            await asyncio.sleep(1.0)
            assert await page.evaluate("demoClient.state") == "refused"    # not retried
    finally:
        await proxy.close()
    assert errors == [] and not_found == []
