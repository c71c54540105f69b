"""gogin.client with signed tokens (Client(token=...)) against a real gogin-server process:
a WebSocket gets its token refreshed before exp and stays connected past the first token's
end; a fixed token ends with Refused; an EventSource stream reconnects with a new token and
loses nothing; a token already ended at connect is a refusal, not retried.  Every wait is
bounded."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from gogin.client import Client, Message, Refused, refresh_at, token_exp
from test_srv_tokens import SECRET, config, hs256

T = 8.0


class Tokens:
    """A token function as an application has one (asks its main server): counts the calls;
    async, as a real one would be."""

    def __init__(self, channels, life: float = 3.0, sub: str = "42"):
        self.channels, self.life, self.sub = channels, life, sub
        self.issued: list[str] = []

    async def __call__(self) -> str:
        await asyncio.sleep(0)
        token = hs256(self.channels, exp_in=self.life, sub=self.sub)
        self.issued.append(token)
        return token


@pytest.fixture
def hs(gogin_factory):
    return gogin_factory(config(algorithms=["HS256"], key=SECRET))


async def next_item(sub, timeout=T):
    return await asyncio.wait_for(sub.__anext__(), timeout)


def test_token_exp_and_refresh_time():
    token = hs256(["a"], exp_in=100)
    assert token_exp(token) == jwt.decode(token, SECRET, algorithms=["HS256"])["exp"]
    assert token_exp("not-a-jwt") is None and token_exp("a.b.c") is None
    assert refresh_at(1000.0, 0.0, 30.0) == 970.0          # margin before exp
    assert refresh_at(1008.0, 1000.0, 30.0) == 1006.0      # short token: after 3/4 of it


async def test_websocket_refreshed_before_exp_stays_connected(hs, chan):
    g = hs
    tokens = Tokens([chan], life=3.0)
    async with Client(g.base) as pub, \
            Client(g.base, ws_path="/token/", token=tokens, min_delay=0.2) as client:
        sub = client.subscribe([chan])
        await sub.wait_open()
        opened = sub.resume.opened_at
        first_exp = token_exp(tokens.issued[0])
        await pub.publish(chan, "before")
        assert (await next_item(sub)).text == "before"
        while time.time() < first_exp + 1.5:           # well past the first token's end
            await asyncio.sleep(0.1)
        assert sub.state == "open" and sub.resume.opened_at == opened    # the same socket
        assert sub.refreshes >= 1 and len(tokens.issued) == 1 + sub.refreshes
        assert sub.token_exp > first_exp
        await pub.publish(chan, "after")
        item = await next_item(sub)
        assert isinstance(item, Message) and item.text == "after"


async def test_fixed_token_ends_with_refused(hs, chan):
    g = hs
    token = hs256([chan], exp_in=2)
    async with Client(g.base, ws_path="/token/", token=token) as client:
        sub = client.subscribe([chan])
        await sub.wait_open()
        with pytest.raises(Refused) as exc:
            await next_item(sub)
        assert (exc.value.status, exc.value.explain) == (401, "Token expired.")
        assert sub.state == "refused"


async def test_eventsource_reconnects_with_a_new_token(hs, chan):
    g = hs
    tokens = Tokens([chan], life=2.0)
    async with Client(g.base) as pub, \
            Client(g.base, ev_path="/token-ev/", token=tokens, min_delay=0.2,
                   max_delay=0.5) as client:
        sub = client.subscribe([chan], transport="eventsource")
        await sub.wait_open()
        await pub.publish(chan, "m0")
        assert (await next_item(sub)).text == "m0"
        got, sent = [], [f"m{i}" for i in range(1, 9)]
        for text in sent:                      # over 4 s: through at least one token's end
            await pub.publish(chan, text)
            await asyncio.sleep(0.5)
        while len(got) < len(sent):
            item = await next_item(sub)
            assert isinstance(item, Message), item
            got.append(item.text)
        assert got == sent                     # each once, in order, across the reconnects
        assert len(tokens.issued) >= 2         # a new token for each new stream


async def test_token_ended_at_connect_is_not_retried(hs, chan):
    g = hs
    calls = []

    def stale() -> str:
        calls.append(1)
        return hs256([chan], exp_in=-5)

    async with Client(g.base, ws_path="/token/", token=stale, min_delay=0.1) as client:
        sub = client.subscribe([chan])
        with pytest.raises(Refused) as exc:
            await next_item(sub)
        assert (exc.value.status, exc.value.explain) == (401, "Token expired.")
        await asyncio.sleep(0.5)
        assert len(calls) == 1 and sub.state == "refused"


async def test_token_function_refusing_ends_the_subscription(hs, chan):
    """The session behind the token function is gone: it raises Refused, which ends the
    iteration (no retry); any other error is retried like a network failure."""
    g = hs
    calls = []

    async def source() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("token endpoint down")          # retried
        raise Refused(401, "not logged in")

    async with Client(g.base, ws_path="/token/", token=source, min_delay=0.05,
                      max_delay=0.1) as client:
        sub = client.subscribe([chan])
        with pytest.raises(Refused) as exc:
            await next_item(sub)
        assert (exc.value.status, exc.value.explain) == (401, "not logged in")
        await asyncio.sleep(0.3)
        assert len(calls) == 2 and sub.state == "refused"
