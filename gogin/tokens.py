"""Signed-token auth: a JWT the main server signed says who subscribes to what.

A location with ``channels = "token"`` checks the token itself (PyJWT) instead of calling the
main server on every connect, so a reconnect storm costs the main server nothing.  What is
trusted comes from the configuration only ([auth.token]): the algorithm list and the key.  A
token's own header never chooses them, which is what keeps out ``alg: none`` and an HS256
token "signed" with a published RSA key.

Claims: ``exp`` (required), ``channels`` (a list, each item one channel id checked exactly as
a main server's grant: gogin.publish.parse_granted), ``sub`` (the user, optional).

A token is a credential: nothing here logs one, and an error says what was wrong with it,
never what it was.
"""

from __future__ import annotations

import json
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

import jwt

from gogin.config import ConfigError
from gogin.publish import HttpError, parse_granted

HMAC = ("HS256", "HS384", "HS512")
RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC = ("ES256", "ES384", "ES512")
FAMILIES = {"HMAC": HMAC, "RSA": RSA, "EC": EC}
MIN_HMAC_SECRET = 32            # bytes: RFC 7518 §3.2 wants at least the hash size (HS256)

EXPIRED = "Token expired."
ENTRY_OVERHEAD = 750            # bytes: a cache entry besides its token and channel names
                                # (OrderedDict node, Grant, tuple, ChannelRefs; measured)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a valid token allows: its channels (ChannelRefs), its user, its expiry (Unix s).
    Shared by every connection that presents the same token (the cache): never mutated."""
    refs: tuple
    user: Optional[str]
    exp: float
    granted: dict = field(default_factory=dict, compare=False)   # name -> backtrack (read-only)

    def select(self, asked) -> tuple[list[str], dict]:
        """The channels of a connection: those the client named (each must be granted, else
        403), or every granted one; backtrack is the token's .bN, else the client's (the
        dict returned is only read)."""
        granted = self.granted
        if not asked:
            return list(granted), granted
        for r in asked:
            if r.name not in granted:
                raise HttpError(403, "Channel not granted by the token.")
        return [r.name for r in asked], {r.name: granted[r.name] or r.backtrack for r in asked}


def family_of(algorithms) -> str:
    """The one key family of the configured algorithms (a mix would let one key be read as
    another kind: the HS256-with-an-RSA-public-key confusion)."""
    found = set()
    for alg in algorithms:
        for name, algs in FAMILIES.items():
            if alg in algs:
                found.add(name)
                break
        else:
            raise ConfigError(f"auth.token.algorithms: {alg!r} is not one of "
                              f"{', '.join(HMAC + RSA + EC)}")
    if len(found) != 1:
        raise ConfigError("auth.token.algorithms: one key family per server: HS*, or "
                          "RS*/PS*, or ES* (mixing them lets one key be read as another kind)")
    return found.pop()


def _read(path: str, key: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise ConfigError(f"auth.token.{key}: cannot read {path}: {e.strerror}") from None


def _public_key(data: bytes, family: str, key: str):
    """A PEM public key (or certificate) of the family; a private key is refused: gogin only
    verifies, and a signing key in its configuration is a secret in the wrong place."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"auth.token.{key}: is a private key; give the public key (PEM)")
    try:
        if b"CERTIFICATE" in data:
            pub = x509.load_pem_x509_certificate(data).public_key()
        else:
            pub = load_pem_public_key(data)
    except ValueError:
        raise ConfigError(f"auth.token.{key}: not a PEM public key or certificate") from None
    wanted = rsa.RSAPublicKey if family == "RSA" else ec.EllipticCurvePublicKey
    if not isinstance(pub, wanted):
        raise ConfigError(f"auth.token.{key}: not an {family} public key, as "
                          "auth.token.algorithms needs")
    return pub


def _hmac_secret(data: bytes, key: str) -> bytes:
    if len(data) < MIN_HMAC_SECRET:
        raise ConfigError(f"auth.token.{key}: an HMAC secret needs at least "
                          f"{MIN_HMAC_SECRET} bytes")
    return data


JWK_FAMILY = {"oct": "HMAC", "RSA": "RSA", "EC": "EC"}


def _jwks(data: bytes, family: str) -> dict:
    """kid -> key of a JWKS document; every key must be of the configured family."""
    try:
        doc = json.loads(data)
        keys = doc["keys"]
        if not isinstance(keys, list) or not keys:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise ConfigError("auth.token.jwks_file: not a JWKS document "
                          '({"keys": [...]}, at least one key)') from None
    out = {}
    for i, jwk in enumerate(keys):
        where = f"auth.token.jwks_file: key {i}"
        if not isinstance(jwk, dict) or JWK_FAMILY.get(jwk.get("kty")) != family:
            raise ConfigError(f"{where}: kty must be "
                              f"{[k for k, v in JWK_FAMILY.items() if v == family][0]!r}, "
                              "as auth.token.algorithms needs")
        if "d" in jwk and family != "HMAC":
            raise ConfigError(f"{where}: is a private key; give the public key")
        try:
            parsed = jwt.PyJWK(jwk)
        except jwt.PyJWTError as e:
            raise ConfigError(f"{where}: {e}") from None
        if family == "HMAC":
            _hmac_secret(parsed.key, "jwks_file")
        kid = jwk.get("kid")
        if kid in out:
            raise ConfigError(f"{where}: kid {kid!r} appears twice")
        out[kid] = parsed.key
    if len(out) > 1 and None in out:
        raise ConfigError("auth.token.jwks_file: with several keys, each needs a kid")
    return out


# PyJWT's errors -> the explain a client gets (fixed texts: nothing of the token echoed)
_EXPLAINS = [
    (jwt.ExpiredSignatureError, EXPIRED),
    (jwt.InvalidAlgorithmError, "Token algorithm not allowed."),
    (jwt.InvalidSignatureError, "Token signature is invalid."),
    (jwt.InvalidAudienceError, "Token audience is invalid."),
    (jwt.InvalidIssuerError, "Token issuer is invalid."),
    (jwt.ImmatureSignatureError, "Token is not valid yet."),
    (jwt.DecodeError, "Token is malformed."),
]


def _refusal(e: jwt.PyJWTError) -> HttpError:
    if isinstance(e, jwt.MissingRequiredClaimError):
        return HttpError(401, f"Token has no {e.claim} claim.")
    for cls, explain in _EXPLAINS:
        if isinstance(e, cls):
            return HttpError(401, explain)
    return HttpError(401, "Invalid token.")


class GrantCache:
    """Tokens already verified -> their Grant, so that a client reconnecting with the token it
    holds (a reconnect storm) costs a dict lookup, not a signature check.

    Safe because nothing a verification depends on changes while the process runs (the keys,
    algorithms, audience and issuer are loaded once) except the time, and the time only ends
    a token: an entry is keyed by the exact token string (any other byte: another entry, and
    a full check) and is good until the token's own `exp` - earlier than PyJWT, which accepts
    it up to exp + leeway.  Only successful checks are stored.  Bounded in bytes (tokens,
    channel names, plus ENTRY_OVERHEAD each): the least recently used entries go first; an
    expired entry goes when it is looked up, or when it is the oldest."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.size = 0                       # bytes charged for the entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict = OrderedDict()   # token -> (Grant, charge)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float) -> Optional[Grant]:
        entry = self._entries.get(token)
        if entry is None:
            self.misses += 1
            return None
        if now >= entry[0].exp:             # expired since: never answered from here
            self._drop(token)
            self.misses += 1
            return None
        self._entries.move_to_end(token)
        self.hits += 1
        return entry[0]

    def put(self, token: str, grant: Grant, now: float) -> None:
        if now >= grant.exp:                # within the leeway only: not worth keeping
            return
        charge = (sys.getsizeof(token) + ENTRY_OVERHEAD
                  + sum(sys.getsizeof(r.name) for r in grant.refs))
        if charge > self.max_bytes // 16:   # one giant token may not flush everyone else
            return
        if token in self._entries:
            self._drop(token)
        self._entries[token] = (grant, charge)
        self.size += charge
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, token: str) -> None:
        self.size -= self._entries.pop(token)[1]

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0


class TokenVerifier:
    """Keys and rules of [auth.token], loaded once; verify() is pure CPU (no I/O)."""

    def __init__(self, cfg, limits):
        if not cfg.algorithms:
            raise ConfigError("auth.token.algorithms: give at least one algorithm")
        self.family = family_of(cfg.algorithms)
        self.algorithms = list(cfg.algorithms)
        self.cfg = cfg
        self.limits = limits
        sources = [k for k in ("key", "key_file", "jwks_file") if getattr(cfg, k)]
        if len(sources) != 1:
            raise ConfigError("auth.token: give exactly one of key, key_file, jwks_file")
        if cfg.leeway < 0:
            raise ConfigError("auth.token.leeway: must be >= 0")
        if not cfg.cookie or any(c in cfg.cookie for c in "=;, \t\r\n"):
            raise ConfigError(f"auth.token.cookie: {cfg.cookie!r} is no cookie name")
        if cfg.cache_bytes < 0:
            raise ConfigError("auth.token.cache_bytes: must be >= 0 (0: no cache)")
        self.cache: Optional[GrantCache] = GrantCache(cfg.cache_bytes) if cfg.cache_bytes \
            else None
        self.keys: Optional[dict] = None
        self.key = None
        source = sources[0]
        if source == "jwks_file":
            self.keys = _jwks(_read(cfg.jwks_file, source), self.family)
            return
        data = cfg.key.encode("utf-8") if source == "key" else _read(cfg.key_file, source)
        if self.family == "HMAC":
            # a secret in a file usually ends with the newline of its editor: not part of it
            self.key = _hmac_secret(data.rstrip(b"\r\n") if source == "key_file" else data,
                                    source)
        else:
            self.key = _public_key(data, self.family, source)

    def _key_for(self, token: str):
        if self.keys is None:
            return self.key
        try:
            kid = jwt.get_unverified_header(token).get("kid")   # only to pick a key
        except jwt.PyJWTError as e:
            raise _refusal(e) from None
        key = self.keys.get(kid)
        if key is None and kid is not None and len(self.keys) == 1 and None in self.keys:
            key = self.keys[None]
        if key is None:
            raise HttpError(401, "Token key is unknown.")
        return key

    def verify(self, token: Optional[str]) -> Grant:
        """The grant of a token, or HttpError: 401 for a missing, expired or invalid token,
        403 for one that grants no valid channel.  A token verified before and not expired
        since is answered from the cache (GrantCache)."""
        if not token:
            raise HttpError(401, "No token.", [("WWW-Authenticate", "Bearer")])
        cache = self.cache
        if cache is None:
            return self._verify(token)
        now = time.time()
        grant = cache.get(token, now)
        if grant is None:
            grant = self._verify(token)
            cache.put(token, grant, now)
        return grant

    def _verify(self, token: str) -> Grant:
        """The full check: PyJWT (signature, algorithm, exp/nbf/aud/iss), then the claims."""
        cfg = self.cfg
        try:
            claims = jwt.decode(token, self._key_for(token), algorithms=self.algorithms,
                                audience=cfg.audience, issuer=cfg.issuer, leeway=cfg.leeway,
                                options={"require": ["exp"]})
        except jwt.PyJWTError as e:
            err = _refusal(e)
            err.headers = [("WWW-Authenticate", 'Bearer error="invalid_token"')]
            raise err from None
        channels = claims.get("channels")
        if not channels:
            raise HttpError(403, "Token grants no channels.")
        try:
            refs = parse_granted(channels, self.limits)
        except HttpError:
            raise HttpError(403, "Token grants an invalid channel id.") from None
        sub = claims.get("sub")
        return Grant(tuple(refs), None if sub is None else str(sub), float(claims["exp"]),
                     {r.name: r.backtrack for r in refs})

    def remaining(self, grant: Grant) -> float:
        """Seconds until the grant ends (its exp, plus the leeway the check allows)."""
        return grant.exp + self.cfg.leeway - time.time()


def token_of(req, cookie: str) -> Optional[str]:
    """The client's token: ?token=, else Authorization: Bearer, else the cookie.  A browser's
    WebSocket can set no header, hence the query and the cookie."""
    token = req.query_params().get("token")
    if token:
        return token
    auth = req.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    for pair in (req.get("cookie") or "").split(";"):
        name, sep, value = pair.strip().partition("=")
        if sep and name == cookie:
            return value.strip().strip('"') or None
    return None
