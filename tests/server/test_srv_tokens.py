"""Signed-token auth (`channels = "token"`, [auth.token]) with tokens PyJWT makes, against a
real gogin-server process: no main server is running in any of these tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from websockets.exceptions import ConnectionClosed

from gogin.config import ConfigError, load
from gogin_e2e import default_locations_plus, explain_of, parse_default, publish, recv, ws_connect

SECRET = "s3cret-of-the-main-server-0123456789abcdef"
TOKEN_LOCATIONS = (
    {"path": "/token/", "role": "subscriber", "mode": "websocket", "channels": "token",
     "public": True},
    {"path": "/token-ev/", "role": "subscriber", "mode": "eventsource", "channels": "token",
     "public": True, "ping_interval": 0},
    {"path": "/token-lp/", "role": "subscriber", "mode": "longpoll", "channels": "token",
     "public": True},
)


def config(**token) -> dict:
    # debug logging: what a refused token would leak into the log is all there
    return {"auth": {"token": token}, "server": {"log_level": "debug"},
            "locations": default_locations_plus(*TOKEN_LOCATIONS)}


def hs256(channels, exp_in=60.0, sub="42", key=SECRET, **claims) -> str:
    payload = {"sub": sub, "channels": channels, **claims}
    if exp_in is not None:
        payload["exp"] = int(time.time() + exp_in)
    return jwt.encode(payload, key, algorithm="HS256")


@pytest.fixture
def hs(gogin_factory):
    return gogin_factory(config(algorithms=["HS256"], key=SECRET))


async def ws_refused(url, **kw):
    """A refused token on a WebSocket: upgraded, then closed 1008 with a JSON reason."""
    async with ws_connect(url, **kw) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1008, ws.close_code
    doc = json.loads(ws.close_reason)
    return doc["http_status"], doc["explain"]


async def assert_gets(http, g, ws, channel, text):
    assert (await publish(http, g.base, channel, text))[0] == 200
    doc = parse_default(await recv(ws))
    assert (doc["channel"], doc["text"]) == (channel, text)


# -- valid tokens -------------------------------------------------------------------------------

async def test_valid_token_three_ways(hs, http, chan):
    g = hs
    token = hs256([f"{chan}a", f"{chan}b"])
    ways = [dict(url=f"{g.ws}/token/?token={token}"),
            dict(url=f"{g.ws}/token/", additional_headers={"Authorization": f"Bearer {token}"}),
            dict(url=f"{g.ws}/token/", additional_headers={"Cookie": f"x=1; gogin_token={token}"})]
    for way in ways:
        url = way.pop("url")
        async with ws_connect(url, **way) as ws:     # no channel named: every granted one
            await assert_gets(http, g, ws, f"{chan}a", "to a")
            await assert_gets(http, g, ws, f"{chan}b", "to b")


async def test_named_channels_are_a_subset(hs, http, chan):
    g = hs
    token = hs256([f"{chan}a", f"{chan}b"])
    async with ws_connect(f"{g.ws}/token/{chan}b?token={token}") as ws:
        await publish(http, g.base, f"{chan}a", "not asked for")
        await assert_gets(http, g, ws, f"{chan}b", "to b")     # a never arrived


async def test_channel_not_in_claim_is_403(hs, http, chan):
    g = hs
    token = hs256([f"{chan}a"])
    refused = (403, "Channel not granted by the token.")
    assert await ws_refused(f"{g.ws}/token/{chan}a/{chan}x?token={token}") == refused
    async with http.get(f"{g.base}/token-ev/{chan}x", params={"token": token}) as r:
        assert (r.status, explain_of(r.headers)) == refused


async def test_claim_ids_are_checked_like_a_grant(hs, http):
    # "a/b" is one id (never split), and an invalid one: the whole token is refused
    assert await ws_refused(f"{hs.ws}/token/?token={hs256(['ok', 'a/b'])}") == \
        (403, "Token grants an invalid channel id.")
    assert await ws_refused(f"{hs.ws}/token/?token={hs256([])}") == \
        (403, "Token grants no channels.")


# -- refused tokens ------------------------------------------------------------------------------

async def test_expired_token_is_401(hs, http, chan):
    g = hs
    token = hs256([chan], exp_in=-10)
    assert await ws_refused(f"{g.ws}/token/?token={token}") == (401, "Token expired.")
    async with http.get(f"{g.base}/token-ev/", params={"token": token}) as r:
        assert (r.status, explain_of(r.headers)) == (401, "Token expired.")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.get(f"{g.base}/token-lp/",
                        headers={"Authorization": f"Bearer {token}"}) as r:
        assert (r.status, explain_of(r.headers)) == (401, "Token expired.")
    assert token.split(".")[2] not in g.log()        # a token is never logged


async def test_missing_or_exp_less_token_is_401(hs, http, chan):
    g = hs
    assert await ws_refused(f"{g.ws}/token/") == (401, "No token.")
    assert await ws_refused(f"{g.ws}/token/?token={hs256([chan], exp_in=None)}") == \
        (401, "Token has no exp claim.")
    assert await ws_refused(f"{g.ws}/token/?token=not.a.jwt") == (401, "Token is malformed.")


async def test_wrong_signature_is_401(hs, http, chan):
    forged = hs256([chan], key="another-secret-that-is-long-enough-0123456789")
    assert await ws_refused(f"{hs.ws}/token/?token={forged}") == \
        (401, "Token signature is invalid.")
    async with http.get(f"{hs.base}/token-ev/", params={"token": forged}) as r:
        assert (r.status, explain_of(r.headers)) == (401, "Token signature is invalid.")


async def test_alg_none_is_401(hs, http, chan):
    unsigned = jwt.encode({"sub": "42", "channels": [chan], "exp": int(time.time() + 60)},
                          None, algorithm="none")
    assert unsigned.endswith(".")               # really unsigned
    assert await ws_refused(f"{hs.ws}/token/?token={unsigned}") == \
        (401, "Token algorithm not allowed.")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_key_bytes(payload: dict, key: bytes) -> str:
    """An HS256 token whose HMAC key is the RSA public key's PEM: the classic confusion.
    Made by hand, as PyJWT itself refuses to use a PEM key as an HMAC secret."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(payload).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


async def test_rs256_and_the_hs256_confusion(gogin_factory, http, tmp_path, chan):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "rsa.pub").write_bytes(pem)
    g = gogin_factory(config(algorithms=["RS256"], key_file=str(tmp_path / "rsa.pub")))
    claims = {"sub": "7", "channels": [chan], "exp": int(time.time() + 60)}
    good = jwt.encode(claims, private, algorithm="RS256")
    async with ws_connect(f"{g.ws}/token/?token={good}") as ws:
        await assert_gets(http, g, ws, chan, "signed with RSA")
    confused = hs256_with_key_bytes(claims, pem)
    assert await ws_refused(f"{g.ws}/token/?token={confused}") == \
        (401, "Token algorithm not allowed.")
    assert await ws_refused(f"{g.ws}/token/?token={hs256([chan])}") == \
        (401, "Token algorithm not allowed.")


async def test_es256_from_a_jwks_file(gogin_factory, http, tmp_path, chan):
    keys, jwks = {}, []
    for kid in ("k1", "k2"):
        keys[kid] = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(keys[kid].public_key()))
        jwks.append({**jwk, "kid": kid, "alg": "ES256", "use": "sig"})
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": jwks}))
    g = gogin_factory(config(algorithms=["ES256"], jwks_file=str(tmp_path / "jwks.json")))
    claims = {"sub": "7", "channels": [chan], "exp": int(time.time() + 60)}
    for kid in ("k1", "k2"):
        token = jwt.encode(claims, keys[kid], algorithm="ES256", headers={"kid": kid})
        async with ws_connect(f"{g.ws}/token/?token={token}") as ws:
            await assert_gets(http, g, ws, chan, f"by {kid}")
    swapped = jwt.encode(claims, keys["k1"], algorithm="ES256", headers={"kid": "k2"})
    assert await ws_refused(f"{g.ws}/token/?token={swapped}") == \
        (401, "Token signature is invalid.")
    unknown = jwt.encode(claims, keys["k1"], algorithm="ES256", headers={"kid": "k9"})
    assert await ws_refused(f"{g.ws}/token/?token={unknown}") == (401, "Token key is unknown.")


# -- the end of a token while connected, and its refresh ------------------------------------------

async def test_token_expires_while_connected(hs, http, chan):
    g = hs
    token = hs256([chan], exp_in=2)
    t0 = time.monotonic()
    async with ws_connect(f"{g.ws}/token/?token={token}") as ws:
        await assert_gets(http, g, ws, chan, "before the end")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 6)
    assert 0.5 < time.monotonic() - t0 < 5
    assert ws.close_code == 1008
    assert json.loads(ws.close_reason) == {"http_status": 401, "explain": "Token expired."}

    # an EventSource stream just ends at the token's end
    t0 = time.monotonic()
    async with http.get(f"{g.base}/token-ev/", params={"token": hs256([chan], exp_in=2)}) as r:
        assert r.status == 200
        await asyncio.wait_for(r.content.read(), 6)      # returns at EOF
    assert 0.5 < time.monotonic() - t0 < 5


async def test_long_poll_hold_ends_with_the_token(hs, http, chan):
    """A held long-poll (30 s timeout) is answered as at its timeout when the token ends."""
    t0 = time.monotonic()
    async with http.get(f"{hs.base}/token-lp/", params={"token": hs256([chan], exp_in=2)}) as r:
        assert r.status == 304
    assert 0.5 < time.monotonic() - t0 < 5


async def test_refresh_moves_the_end(hs, http, chan):
    g = hs
    async with ws_connect(f"{g.ws}/token/?token={hs256([chan], exp_in=2)}") as ws:
        # a refresh may not add channels nor change the user: refused, the old end stands
        await ws.send(json.dumps({"token": hs256([f"{chan}x"], exp_in=60)}))
        assert json.loads(await recv(ws)) == {
            "token": "refused", "http_status": 403,
            "explain": "Token does not grant every channel of this connection."}
        await ws.send(json.dumps({"token": hs256([chan], exp_in=60, sub="666")}))
        assert json.loads(await recv(ws))["explain"] == "Token is for another user."
        await ws.send(json.dumps({"token": hs256([chan], exp_in=-5)}))
        assert json.loads(await recv(ws))["explain"] == "Token expired."

        fresh = hs256([chan, f"{chan}x"], exp_in=60)
        await ws.send(json.dumps({"token": fresh}))
        answer = json.loads(await recv(ws))
        assert answer == {"token": "accepted", "exp": jwt.decode(
            fresh, SECRET, algorithms=["HS256"])["exp"]}
        await asyncio.sleep(3)                  # past the first token's end
        await assert_gets(http, g, ws, chan, "still here")
        await publish(http, g.base, f"{chan}x", "not added by the refresh")
        await assert_gets(http, g, ws, chan, "only the first channel")


# -- configuration errors name the key ------------------------------------------------------------

@pytest.mark.parametrize("token,key", [
    ({"algorithms": ["HS256"]}, "auth.token"),
    ({"algorithms": ["HS256"], "key": "short"}, "auth.token.key"),
    ({"algorithms": ["none"], "key": SECRET}, "auth.token.algorithms"),
    ({"algorithms": ["HS256", "RS256"], "key": SECRET}, "auth.token.algorithms"),
    ({"algorithms": ["RS256"], "key": SECRET}, "auth.token.key"),
    ({"algorithms": ["RS256"], "key_file": "/nonexistent/key.pem"}, "auth.token.key_file"),
    ({"algorithms": ["ES256"], "jwks_file": "/nonexistent/jwks.json"}, "auth.token.jwks_file"),
    ({"key": SECRET, "cookie": "a=b"}, "auth.token.cookie"),
    ({"key": SECRET, "leeway": -1}, "auth.token.leeway"),
])
def test_config_errors_name_the_key(tmp_path, token, key):
    with pytest.raises(ConfigError) as exc:
        load(env={}, overrides={"auth.token": token})
    assert str(exc.value).startswith(key), exc.value


def test_token_location_needs_the_section():
    with pytest.raises(ConfigError) as exc:
        load(env={}, overrides={"locations": [dict(TOKEN_LOCATIONS[0])]})
    assert str(exc.value).startswith("locations[0].channels"), exc.value


def test_private_key_is_refused(tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (tmp_path / "rsa.key").write_bytes(pem)
    with pytest.raises(ConfigError, match="auth.token.key_file: is a private key"):
        load(env={}, overrides={"auth.token": {"algorithms": ["RS256"],
                                               "key_file": str(tmp_path / "rsa.key")}})


def test_secret_from_the_environment():
    cfg = load(env={"GOGIN_AUTH_TOKEN_KEY": SECRET, "GOGIN_AUTH_TOKEN_ALGORITHMS": "HS512"})
    assert (cfg.auth.token.key, cfg.auth.token.algorithms) == (SECRET, ["HS512"])
