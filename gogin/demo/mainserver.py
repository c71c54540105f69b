"""The demo main server: what an application (Django, Rails, ...) does next to gogin.

It owns a few users, a signed cookie session (gogin/demo/sessions.py: it survives a restart)
and per-user channel lists, and answers gogin's two callbacks (docs/protocol.md, Main-server
callbacks):

- ``POST /auth/subscribe`` (auth.url): gogin forwards the browser's Cookie; a logged-in user gets
  ``{"channels": [...], "user": "..."}``, anyone else a 401 with a JSON body (passed on to the
  browser as the handshake answer).  A client that names channels in its path
  (``/subscribe-lp/team.red``, ``X-Gogin-Channels``) gets those of them it may read: gogin.js
  long-polls each channel on its own, so that each keeps its own resume position;
- ``POST /auth/publish`` (auth.publish_url): a message a browser sent over its WebSocket.  The
  page sends ``{"channel": "team.red", "text": "hi"}`` (plain text goes to ``all``); a logged-in
  user may post to one of their own channels, and the message is replaced by
  ``{"from": "alice", "text": "hi"}`` so receivers see who sent it (``X-Gogin-Channels`` names
  the target).  Empty, too long or misdirected messages get a 403.

And for the browser: ``POST /login`` (form field ``user``), ``POST /logout`` (both answer a
303 back to gogin's page), ``GET /whoami`` (CORS, with credentials, for gogin's page) and
``GET /token`` (same CORS): for a logged-in user, a short signed token (HS256 JWT: ``sub``, the
user's ``channels``, ``exp`` in TOKEN_LIFE s, or ``?life=`` within TOKEN_LIFES) for gogin's
``channels = "token"`` locations, which the page's gogin.js asks for at each connect and
before each token ends (the page's ``?auth=token`` mode).

Cookies are per host, not per port: the session cookie set here on 127.0.0.1:<port> is sent by
the browser to gogin on 127.0.0.1:<gogin port> too, which forwards it back to us.  Loopback only.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from typing import Optional
from urllib.parse import urlsplit

from aiohttp import web

from gogin.demo.sessions import MAX_AGE, Sessions

log = logging.getLogger("gogin.demo")

COOKIE = "gogin_demo_session"
MAX_TEXT = 280
TOKEN_LIFE = 120.0             # s a demo token lasts (short: the page refreshes it)
TOKEN_LIFES = (2.0, 3600.0)    # the ?life= a page may ask for (the tests ask for seconds)

# user -> channels; user.<name> is private, team.* is shared by a team, all by everybody
USERS: dict[str, list[str]] = {
    "alice": ["user.alice", "team.red", "all"],
    "bob": ["user.bob", "team.red", "all"],
    "carol": ["user.carol", "team.blue", "all"],
    "dave": ["user.dave", "team.blue", "all"],
}

LOOPBACK_NAMES = ("localhost",)


def is_loopback_host(host: Optional[str]) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_http_url(url: Optional[str]) -> Optional[str]:
    """The URL if it is an http(s) URL on a loopback host (no open redirects / CORS), else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        parts.port     # raises ValueError on a bad port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not is_loopback_host(parts.hostname):
        return None
    return url


class DemoMainServer:
    """The aiohttp application; sessions are signed cookies (nothing is kept in memory)."""

    def __init__(self, page_url: str = "/", users: Optional[dict] = None,
                 sessions: Optional[Sessions] = None, token_key: Optional[str] = None):
        self.page_url = page_url              # where /login and /logout send the browser back
        self.users = dict(users or USERS)
        self.sessions = sessions or Sessions()
        self.token_key = token_key            # HS256 secret shared with gogin's [auth.token]

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.add_routes([
            web.post("/login", self.login),
            web.post("/logout", self.logout),
            web.get("/whoami", self.whoami),
            web.options("/whoami", self.whoami),
            web.get("/token", self.token),
            web.options("/token", self.token),
            web.post("/auth/subscribe", self.auth_subscribe),
            web.post("/auth/publish", self.auth_publish),
            web.get("/", self.index),
        ])
        return app

    # -- sessions ----------------------------------------------------------------------------

    def user_of(self, request: web.Request) -> Optional[str]:
        found = self.sessions.parse(request.cookies.get(COOKIE))
        if found is None or found[0] not in self.users:
            return None
        return found[0]

    def _back(self, request, form) -> str:
        return (loopback_http_url(form.get("next"))
                or loopback_http_url(request.headers.get("Referer"))
                or self.page_url)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        user = str(form.get("user") or "")
        back = self._back(request, form)
        if user not in self.users:
            return web.json_response({"error": f"unknown user {user!r}"}, status=403)
        self.sessions.revoke(request.cookies.get(COOKIE))
        resp = web.HTTPSeeOther(back)
        resp.set_cookie(COOKIE, self.sessions.issue(user), httponly=True, samesite="Lax",
                        path="/", max_age=MAX_AGE)
        log.info("demo: %s logged in", user)
        return resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        user = self.sessions.revoke(request.cookies.get(COOKIE))
        resp = web.HTTPSeeOther(self._back(request, form))
        resp.del_cookie(COOKIE, path="/")
        if user:
            log.info("demo: %s logged out", user)
        return resp

    @staticmethod
    def _cors(request: web.Request) -> dict:
        """CORS with credentials for gogin's page (another origin), loopback origins only."""
        origin = request.headers.get("Origin")
        if loopback_http_url(origin):
            return {"Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Credentials": "true",
                    "Vary": "Origin"}
        return {}

    async def token(self, request: web.Request) -> web.StreamResponse:
        """A signed token for the logged-in user (gogin verifies it; nothing is kept here)."""
        import jwt
        cors = self._cors(request)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=cors)
        headers = {**cors, "Cache-Control": "no-store"}
        if self.token_key is None:
            return web.json_response({"error": "gogin has its own [auth.token]: no demo tokens"},
                                     status=404, headers=headers)
        user = self.user_of(request)
        if user is None:
            return web.json_response({"error": "not logged in"}, status=401, headers=headers)
        try:
            life = float(request.query.get("life", TOKEN_LIFE))
        except ValueError:
            life = TOKEN_LIFE
        life = min(max(life, TOKEN_LIFES[0]), TOKEN_LIFES[1])
        token = jwt.encode({"sub": user, "channels": self.users[user],
                            "exp": int(time.time() + life)}, self.token_key, algorithm="HS256")
        return web.Response(text=token, headers=headers)

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        """For gogin's page (another origin: CORS with credentials, loopback origins only)."""
        cors = self._cors(request)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=cors)
        user = self.user_of(request)
        return web.json_response({
            "user": user,
            "channels": self.users.get(user, []) if user else [],
            "users": {u: chans for u, chans in self.users.items()},
        }, headers={**cors, "Cache-Control": "no-store"})

    async def index(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(self.page_url)

    # -- gogin's callbacks (docs/protocol.md, Main-server callbacks) ------------------------

    async def auth_subscribe(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin and not loopback_http_url(origin):
            # a page on another site must not ride the user's cookie (cross-site WebSocket)
            return web.json_response({"error": "origin not allowed"}, status=403)
        user = self.user_of(request)
        if user is None:
            return web.json_response({"error": "not logged in"}, status=401)
        allowed = self.users[user]
        wanted = [c for c in request.headers.get("X-Gogin-Channels", "").split("/") if c]
        channels = [c for c in wanted if c in allowed] if wanted else allowed
        if not channels:
            return web.json_response({"error": f"{user} may not read {'/'.join(wanted)}"},
                                     status=403)
        return web.json_response({"channels": channels, "user": user})

    async def auth_publish(self, request: web.Request) -> web.StreamResponse:
        user = self.user_of(request)
        if user is None:
            return web.json_response({"error": "not logged in"}, status=401)
        raw = await request.read()
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict):
            text, channel = doc.get("text"), doc.get("channel") or "all"
        else:
            text, channel = raw.decode("utf-8", "replace"), "all"
        if not isinstance(text, str) or not isinstance(channel, str):
            return web.json_response({"error": "text and channel are strings"}, status=403)
        text = text.strip()
        if not text:
            return web.json_response({"error": "empty message"}, status=403)
        if len(text) > MAX_TEXT:
            return web.json_response({"error": f"longer than {MAX_TEXT} characters"},
                                     status=403)
        if channel not in self.users[user]:
            return web.json_response({"error": f"{user} may not post to {channel}"}, status=403)
        body = json.dumps({"from": user, "text": text}, ensure_ascii=False)
        return web.Response(status=200, body=body.encode("utf-8"),
                            content_type="application/json",
                            headers={"X-Gogin-Channels": channel})
