"""gogin.js with signed tokens (the `token` option) in headless Chromium against a real
gogin-server process: the WebSocket gets a new token before exp and stays open past the first
token's end; an EventSource stream ends at its token's exp and reconnects with a new one,
losing nothing; a token already ended at connect is a refusal.  The page's token function is
the test's (Playwright's expose_function), as a page would fetch one from its main server.
Every wait is bounded."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import pytest

from gogin.client import token_exp
from gogin_e2e import CHROMIUM, ROOT, chromium_page, default_locations_plus, publish
from test_srv_tokens import SECRET, TOKEN_LOCATIONS, hs256

T = 10.0
PAGE = """<!doctype html><html><body><script src="gogin.js"></script><script>
window.got = []; window.statuses = []; window.tokenEvents = []; window.refused = null;
window.startClient = (transports, chan) => {
  window.client = new GoginClient({
    transports: transports, channels: [chan], minDelay: 200, maxDelay: 500,
    token: () => window.getToken(),
    onmessage: (m) => window.got.push(m.text),
    onstatus: (state) => window.statuses.push(state),
    ontoken: (info) => window.tokenEvents.push(info),
    onrefused: (info) => { window.refused = info; },
  });
};
</script></body></html>
"""

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing")


@pytest.fixture
def g(gogin_factory, tmp_path):
    (tmp_path / "index.html").write_text(PAGE)
    shutil.copy(Path(ROOT) / "gogin" / "static" / "gogin.js", tmp_path / "gogin.js")
    return gogin_factory({"auth": {"token": {"algorithms": ["HS256"], "key": SECRET}},
                          "locations": default_locations_plus(
                              *TOKEN_LOCATIONS,
                              {"path": "/page/", "role": "static", "root": str(tmp_path)})})


async def wait_js(page, expr: str, timeout: float = T):
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(expr)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


async def open_page(page, g, tokens):
    await page.expose_function("getToken", tokens)
    await page.goto(f"{g.base}/page/index.html")


class Tokens:
    def __init__(self, channels, life):
        self.channels, self.life, self.issued = channels, life, []

    def __call__(self) -> str:
        token = hs256(self.channels, exp_in=self.life)
        self.issued.append(token)
        return token


async def test_websocket_token_refreshed_before_exp(g, http, chan):
    tokens = Tokens([chan], life=3.0)
    async with chromium_page() as page:
        await open_page(page, g, tokens)
        await page.evaluate(f"startClient({{websocket: '/token/', eventsource: '', "
                            f"longpoll: ''}}, '{chan}')")
        assert await wait_js(page, "client.state === 'open'")
        await publish(http, g.base, chan, "before")
        assert await wait_js(page, "got.includes('before')")
        first_exp = token_exp(tokens.issued[0])
        while time.time() < first_exp + 1.5:                # past the first token's end
            await asyncio.sleep(0.1)
        state = await page.evaluate("[client.state, client.refreshes, statuses, tokenEvents]")
        assert state[0] == "open" and state[1] >= 1, state
        assert state[2].count("open") == 1, state            # never reconnected
        assert all(e["state"] == "accepted" for e in state[3]), state
        assert len(tokens.issued) == 1 + state[1]
        await publish(http, g.base, chan, "after")
        assert await wait_js(page, "got.includes('after')")
        assert await page.evaluate("got") == ["before", "after"]


async def test_eventsource_reconnects_with_a_new_token(g, http, chan):
    tokens = Tokens([chan], life=2.0)
    async with chromium_page() as page:
        await open_page(page, g, tokens)
        await page.evaluate(f"startClient({{websocket: '', eventsource: '/token-ev/', "
                            f"longpoll: ''}}, '{chan}')")
        assert await wait_js(page, "client.state === 'open'")
        sent = [f"m{i}" for i in range(8)]
        for text in sent:                    # over 4 s: through at least one token's end
            await publish(http, g.base, chan, text)
            await asyncio.sleep(0.5)
        await wait_js(page, f"got.length >= {len(sent)}")
        assert await page.evaluate("got") == sent            # once each, in order
        assert len(tokens.issued) >= 2
        assert await page.evaluate("refused") is None


async def test_ended_token_at_connect_is_refused(g, chan):
    def stale() -> str:
        return hs256([chan], exp_in=-5)

    async with chromium_page() as page:
        await open_page(page, g, stale)
        await page.evaluate(f"startClient({{websocket: '/token/', eventsource: '', "
                            f"longpoll: ''}}, '{chan}')")
        refused = await wait_js(page, "refused")
        assert refused["status"] == 401 and refused["explain"] == "Token expired.", refused
        assert await page.evaluate("client.state") == "refused"
