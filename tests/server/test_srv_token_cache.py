"""The cache of verified tokens ([auth.token] cache_bytes, gogin.tokens.GrantCache) and the
one-timer ends of token connections (gogin.expiry.ExpiryWheel), against a real gogin-server
process, with tokens PyJWT makes; the cache's own rules (expiry boundary, bound, LRU) on the
real class in-process, with the time given."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from gogin.config import ConfigError, load
from gogin.tokens import Grant, GrantCache
from gogin_e2e import metric_values, ws_connect
from test_srv_tokens import SECRET, assert_gets, config, hs256, ws_refused

EXPIRED_REASON = {"http_status": 401, "explain": "Token expired."}


async def cache_metrics(http, g) -> dict:
    async with http.get(f"{g.base}/metrics") as r:
        assert r.status == 200
        values = metric_values((await r.read()).decode())
    return {k.removeprefix("gogin_token_cache_"): v for k, v in values.items()
            if k.startswith("gogin_token_cache_")}


def forge(token: str) -> str:
    """The same header and claims with another (wrong) signature."""
    head, body, _ = token.split(".")
    other = jwt.encode(jwt.decode(token, options={"verify_signature": False}),
                       "another-secret-that-is-long-enough-0123456789", algorithm="HS256")
    return f"{head}.{body}.{other.split('.')[2]}"


@pytest.fixture
def hs(gogin_factory):
    return gogin_factory(config(algorithms=["HS256"], key=SECRET))


async def test_reconnect_is_a_cache_hit_and_a_forgery_is_not(hs, http, chan):
    g = hs
    token = hs256([chan])
    m0 = await cache_metrics(http, g)
    assert (m0["hits_total"], m0["misses_total"], m0["entries"]) == (0, 0, 0)
    async with ws_connect(f"{g.ws}/token/?token={token}") as ws:
        await assert_gets(http, g, ws, chan, "first connect")
    m1 = await cache_metrics(http, g)
    assert (m1["hits_total"], m1["misses_total"], m1["entries"]) == (0, 1, 1)
    assert m1["bytes"] > len(token)

    async with ws_connect(f"{g.ws}/token/?token={token}") as ws:      # the reconnect
        await assert_gets(http, g, ws, chan, "from the cache")
    m2 = await cache_metrics(http, g)
    assert (m2["hits_total"], m2["misses_total"]) == (1, 1)

    # the cache is keyed by the whole token: the same claims under a wrong signature, or the
    # token with a byte more, are checked in full, refused, and not stored
    assert await ws_refused(f"{g.ws}/token/?token={forge(token)}") == \
        (401, "Token signature is invalid.")
    assert await ws_refused(f"{g.ws}/token/?token={token}x") == \
        (401, "Token signature is invalid.")
    m3 = await cache_metrics(http, g)
    assert (m3["hits_total"], m3["misses_total"], m3["entries"]) == (1, 3, 1)


async def test_cached_token_ends_while_connected_and_is_refused_after(hs, http, chan):
    """Two connections with one token (the second from the cache) are both closed 1008 at the
    token's exp; a connect with it after that is refused although it was cached."""
    g = hs
    exp = int(time.time()) + 3          # 2 to 3 s from now
    token = jwt.encode({"sub": "42", "channels": [chan], "exp": exp}, SECRET, algorithm="HS256")
    async with ws_connect(f"{g.ws}/token/?token={token}") as a, \
            ws_connect(f"{g.ws}/token/?token={token}") as b:
        m = await cache_metrics(http, g)
        assert (m["hits_total"], m["misses_total"]) == (1, 1)
        await assert_gets(http, g, a, chan, "before the end")
        for ws in (a, b):
            with pytest.raises(ConnectionClosed):
                while True:                                 # bounded by the wait_for
                    await asyncio.wait_for(ws.recv(), 6)
    ended = time.time()
    assert exp <= ended < exp + 2                           # not early, not much late
    for ws in (a, b):
        assert ws.close_code == 1008
        assert json.loads(ws.close_reason) == EXPIRED_REASON
    assert await ws_refused(f"{g.ws}/token/?token={token}") == (401, "Token expired.")
    m = await cache_metrics(http, g)
    assert m["hits_total"] == 1 and m["misses_total"] == 2    # the expired entry: a miss
    assert m["entries"] == 0                                  # ... and dropped


async def test_refresh_moves_a_connection_between_seconds(hs, http, chan):
    """A refreshed connection leaves its second of the wheel: it outlives its first token,
    while a connection that kept that token is closed at its end."""
    g = hs
    first = hs256([chan], exp_in=2)
    async with ws_connect(f"{g.ws}/token/?token={first}") as kept, \
            ws_connect(f"{g.ws}/token/?token={first}") as refreshed:
        await refreshed.send(json.dumps({"token": hs256([chan], exp_in=60)}))
        assert json.loads(await asyncio.wait_for(refreshed.recv(), 5))["token"] == "accepted"
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(kept.recv(), 6)
        assert kept.close_code == 1008
        await assert_gets(http, g, refreshed, chan, "still here")


async def test_cache_stays_within_its_bytes(gogin_factory, http, chan):
    limit = 32 << 10
    g = gogin_factory(config(algorithms=["HS256"], key=SECRET, cache_bytes=limit))
    tokens = [hs256([f"{chan}{i}"], sub=f"user{i}") for i in range(80)]
    for t in tokens:
        async with ws_connect(f"{g.ws}/token/?token={t}") as ws:
            await asyncio.wait_for(ws.ping(), 5)            # upgraded and subscribed
    m = await cache_metrics(http, g)
    assert m["misses_total"] == 80 and m["hits_total"] == 0
    assert 0 < m["bytes"] <= limit
    assert 10 < m["entries"] < 80                           # some stored, the oldest evicted
    # least recently used first: the newest token is still there, the first one is not
    for t in (tokens[-1], tokens[0]):
        async with ws_connect(f"{g.ws}/token/?token={t}") as ws:
            await asyncio.wait_for(ws.ping(), 5)
    m2 = await cache_metrics(http, g)
    assert (m2["hits_total"], m2["misses_total"]) == (1, 81)
    assert m2["bytes"] <= limit


async def test_cache_off(gogin_factory, http, chan):
    g = gogin_factory(config(algorithms=["HS256"], key=SECRET, cache_bytes=0))
    token = hs256([chan])
    for text in ("one", "two"):
        async with ws_connect(f"{g.ws}/token/?token={token}") as ws:
            await assert_gets(http, g, ws, chan, text)
    assert await cache_metrics(http, g) == {}
    with pytest.raises(ConfigError, match="auth.token.cache_bytes"):
        load(env={}, overrides={"auth.token": {"key": SECRET, "cache_bytes": -1}})


# -- GrantCache itself (the time is an argument: the boundary is exact) -----------------------

def grant(exp: float, name: str = "ch") -> Grant:
    from gogin.publish import ChannelRef
    return Grant((ChannelRef(name),), "u", exp, {name: 0})


def test_grant_cache_never_answers_at_or_after_exp():
    c = GrantCache(1 << 20)
    g = grant(1000.0)
    c.put("t", g, now=990.0)
    assert c.get("t", now=999.999) is g
    assert c.get("t", now=1000.0) is None        # PyJWT decides from here (exp + leeway)
    assert len(c) == 0 and c.size == 0
    c.put("t", g, now=1000.5)                    # accepted within a leeway: not stored
    assert len(c) == 0


def test_grant_cache_bound_and_lru():
    c = GrantCache(64 << 10)
    for i in range(200):
        c.put(f"token-{i}", grant(1e12, f"ch{i}"), now=0.0)
        assert c.size <= c.max_bytes
    assert 0 < len(c) < 200
    first_kept = 200 - len(c)
    assert c.get(f"token-{first_kept - 1}", now=0.0) is None     # evicted
    assert c.get(f"token-{first_kept}", now=0.0) is not None     # now the most recent
    c.put("token-new", grant(1e12), now=0.0)                     # evicts the next oldest
    assert c.get(f"token-{first_kept}", now=0.0) is not None
    assert c.get(f"token-{first_kept + 1}", now=0.0) is None
    assert c.size == sum(e[1] for e in c._entries.values())
    c.put("x" * (c.max_bytes // 8), grant(1e12), now=0.0)        # too big to keep
    assert c.get("x" * (c.max_bytes // 8), now=0.0) is None


# -- ExpiryWheel itself, on a real event loop ---------------------------------------------------

async def test_expiry_wheel_never_early_and_forgets_the_removed():
    from gogin.expiry import ExpiryWheel
    fired = []
    wheel = ExpiryWheel(lambda conn, state: fired.append((conn, state, time.time())))
    now = time.time()
    ends = {"a": now + 0.2, "b": now + 1.3, "c": now + 0.2, "d": now + 2.0}
    buckets = {c: wheel.add(c, c.upper(), end) for c, end in ends.items()}
    assert buckets["a"] is buckets["c"]              # one bucket per second
    assert len(wheel) == 4
    ExpiryWheel.remove(buckets["c"], "c")            # closed before its end: never fired
    ExpiryWheel.remove(buckets["d"], "d")            # moved earlier, as _arm_expiry does
    buckets["d"] = wheel.add("d", "D", now + 0.1)
    ExpiryWheel.remove(None, "x")                    # no bucket: nothing happens
    deadline = time.monotonic() + 4
    while len(fired) < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    got = {conn: (state, t) for conn, state, t in fired}
    assert set(got) == {"a", "b", "d"}, fired       # "c" was removed; "d" fired once
    assert got["a"][1] >= ends["a"] and got["b"][1] >= ends["b"]   # never early
    assert got["b"][1] < ends["b"] + 1.5             # at most about a second late
    await asyncio.sleep(2.2 - (time.time() - now))   # d's first second passes: no second fire
    assert [c for c, _, _ in fired].count("d") == 1
    wheel.close()
