"""``gogin-server --demo``: a demo main server next to gogin, and the demo page at ``/``.

start_demo(cfg) starts the demo main server (gogin/demo/mainserver.py) on 127.0.0.1, port =
gogin's port + 1 (or any free port when that one is taken or gogin's is 0), and returns a
copy of the config whose auth callbacks point at it and which serves, in front of the
configured locations (gogin routes by longest prefix, so ``/`` only gets what nothing else
matches):

    /            gogin/demo/page/    (index.htm, demo.css)
    /static/     gogin/static/       (gogin.js, the browser client)
    /_demo/      a temporary directory with config.json: {"main_server": "http://127.0.0.1:N",
                 ...} so the page (and tests) find the demo main server.

Sessions are signed cookies (gogin/demo/sessions.py) whose secret is kept in a file, so a
logged-in page reconnects after a restart; GOGIN_DEMO_STATE_DIR says where that file lives.

Unless the configuration has its own [auth.token], the demo also sets one up (HS256, a key
derived from the session secret) with three signed-token locations, /token/, /token-ev/ and
/token-lp/: the page's ``?auth=token`` mode subscribes there with tokens from the demo main
server's /token (gogin.js's token option: refreshed before they end).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import shutil
import tempfile

import msgspec

from gogin.config import Location, TokenAuth, parse_listen
from gogin.demo.mainserver import USERS, DemoMainServer, is_loopback_host
from gogin.demo.sessions import Sessions

log = logging.getLogger("gogin.demo")

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_DIR = os.path.join(HERE, "page")
STATIC_DIR = os.path.join(os.path.dirname(HERE), "static")
HOST = "127.0.0.1"


class Demo:
    """What start_demo returns: ``await demo.cleanup()`` stops the main server."""

    def __init__(self, runner, url: str, tmpdir: str, main: DemoMainServer):
        self.runner = runner
        self.url = url                 # http://127.0.0.1:N, the demo main server
        self.tmpdir = tmpdir
        self.main = main

    async def cleanup(self):
        try:
            await self.runner.cleanup()
        finally:
            shutil.rmtree(self.tmpdir, ignore_errors=True)


async def _start_site(runner, port: int) -> int:
    from aiohttp import web
    site = web.TCPSite(runner, HOST, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await site.stop()          # a failed site stays registered with the runner
        raise
    return runner.addresses[-1][1]


async def start_demo(cfg):
    """Start the demo main server; return (demo, config copy wired to it)."""
    from aiohttp import web

    gogin_host, gogin_port = parse_listen(cfg.server.listen[0]) if cfg.server.listen \
        else (HOST, 0)
    for addr in cfg.server.listen:
        host, _ = parse_listen(addr)
        if not is_loopback_host(host):
            log.warning("demo: gogin listens on %s; the demo has no passwords and its main "
                        "server is on loopback only, so use it from this machine", addr)
    page_host = gogin_host if is_loopback_host(gogin_host) else HOST
    page_host = f"[{page_host}]" if ":" in page_host else page_host
    page_url = f"http://{page_host}:{gogin_port}/" if gogin_port else "/"

    sessions = Sessions()
    log.info("demo: sessions signed with the secret %s (a new secret logs everyone out)",
             sessions.secret_source)
    # demo tokens, unless gogin has its own [auth.token] (its key may be a public key)
    token_key = None if cfg.auth.token is not None else \
        hmac.new(sessions.secret, b"gogin-demo-token", hashlib.sha256).hexdigest()
    main = DemoMainServer(page_url=page_url, sessions=sessions, token_key=token_key)
    runner = web.AppRunner(main.app(), access_log=None)
    await runner.setup()
    port = None
    if gogin_port and gogin_port < 65535:
        try:
            port = await _start_site(runner, gogin_port + 1)
        except OSError as e:
            log.info("demo: port %d is taken (%s), using a free one", gogin_port + 1, e)
    try:
        if port is None:
            port = await _start_site(runner, 0)
    except BaseException:
        await runner.cleanup()
        raise
    url = f"http://{HOST}:{port}"

    tmpdir = tempfile.mkdtemp(prefix="gogin-demo-")
    with open(os.path.join(tmpdir, "config.json"), "w") as fh:
        json.dump({"main_server": url, "login": f"{url}/login", "logout": f"{url}/logout",
                   "whoami": f"{url}/whoami", "users": USERS,
                   "token": f"{url}/token" if token_key else None}, fh)
    demo = Demo(runner, url, tmpdir, main)

    if cfg.auth.url or cfg.auth.publish_url:
        log.warning("demo: auth.url / auth.publish_url replaced by the demo main server's")
    auth = msgspec.structs.replace(cfg.auth, url=f"{url}/auth/subscribe",
                                   publish_url=f"{url}/auth/publish")
    taken = {loc.path for loc in cfg.locations}
    ours = [Location(path="/", role="static", root=PAGE_DIR, public=True),
            Location(path="/static/", role="static", root=STATIC_DIR, public=True),
            Location(path="/_demo/", role="static", root=tmpdir, public=True)]
    if token_key is not None:
        auth = msgspec.structs.replace(auth, token=TokenAuth(algorithms=["HS256"],
                                                             key=token_key))
        ours += [Location(path=path, role="subscriber", mode=mode, channels="token",
                          public=True)
                 for path, mode in (("/token/", "websocket"), ("/token-ev/", "eventsource"),
                                    ("/token-lp/", "longpoll"))]
    for loc in ours:
        if loc.path in taken:
            log.warning("demo: location %s is configured already; the demo's is left out",
                        loc.path)
    locations = [loc for loc in ours if loc.path not in taken] + list(cfg.locations)
    new = msgspec.structs.replace(cfg, auth=auth, locations=locations)
    log.info("demo main server listening on %s (users: %s)", url, ", ".join(USERS))
    return demo, new.validate()
