"""Helpers of the end-to-end tests: the gogin-server process, the main server, clients.

Everything listens on loopback only; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import msgspec
import picows
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 8.0
RECV_TIMEOUT = 5.0

NO_CACHE = "no-cache, no-store, must-revalidate"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# -- TOML ------------------------------------------------------------------------------------

def render_toml(cfg: dict) -> str:
    """A config dict as TOML (msgspec's encoder; None values are left out)."""
    def drop_none(v):
        if isinstance(v, dict):
            return {k: drop_none(x) for k, x in v.items() if x is not None}
        if isinstance(v, list):
            return [drop_none(x) for x in v]
        return v
    return msgspec.toml.encode(drop_none(cfg)).decode()


def default_locations_plus(*extra: dict) -> list[dict]:
    """The default location table (gogin.config) plus extra locations, as TOML-ready dicts."""
    from gogin.config import default_locations
    locs = [msgspec.to_builtins(l) for l in default_locations()]
    return locs + list(extra)


# -- the gogin-server process ------------------------------------------------------------------

class Gogin:
    def __init__(self, workdir: Path, config: dict, port: Optional[int] = None,
                 host: str = "127.0.0.1", name: str = "gogin"):
        self.host = host
        self.port = port or free_port(host)
        cfg = dict(config)
        server = dict(cfg.get("server", {}))
        server.setdefault("listen", [f"{host}:{self.port}"])
        server.setdefault("shutdown_timeout", 2.0)
        cfg["server"] = server
        self.config_path = workdir / f"{name}-{self.port}.toml"
        self.config_path.write_text(render_toml(cfg))
        self.log_path = workdir / f"{name}-{self.port}.log"
        self.proc: Optional[subprocess.Popen] = None
        self.returncode: Optional[int] = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> "Gogin":
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        for k in list(env):
            if k.startswith("GOGIN_"):
                del env[k]
        self._log_fh = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gogin", "--config", str(self.config_path)],
            cwd=str(ROOT), env=env, stdout=self._log_fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gogin exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"gogin did not listen within {STARTUP_TIMEOUT}s:\n{self.log()}")
            time.sleep(0.05)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait (bounded); returns the exit code (kills it and fails if it hangs)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"gogin did not exit within {timeout}s of SIGTERM:\n{self.log()}")
        finally:
            self._log_fh.close()
        return self.returncode

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


class GoginFactory:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.running: list[Gogin] = []

    def __call__(self, config: Optional[dict] = None, **kw) -> Gogin:
        g = Gogin(self.workdir, config or {}, **kw)
        self.running.append(g)
        return g.start()

    def close(self):
        errors = []
        for g in self.running:
            if g.proc is None or g.returncode is not None:
                continue
            try:
                rc = g.terminate()
                if rc != 0:
                    errors.append(f"gogin exited {rc} on SIGTERM:\n{g.log()[-3000:]}")
            except AssertionError as e:
                errors.append(str(e))
        self.running.clear()
        assert not errors, "\n".join(errors)










# -- the main server (aiohttp) ------------------------------------------------------------------

class MainServer:
    """The app's main server.  Tests set `on_subscribe` / `on_publish` (aiohttp handlers);
    every callback request is recorded (headers, body)."""

    def __init__(self):
        self.sub_requests: list[dict] = []
        self.pub_requests: list[dict] = []
        self.on_subscribe = self.allow(["x"])
        self.on_publish = self._publish_304
        self.runner: Optional[web.AppRunner] = None
        self.port = 0

    @staticmethod
    def allow(channels, user="42"):
        async def handler(request):
            return web.json_response({"channels": channels, "user": user})
        return handler

    @staticmethod
    async def _publish_304(request):
        return web.Response(status=304)

    async def _sub(self, request: web.Request):
        body = await request.read()
        self.sub_requests.append({"headers": dict(request.headers), "body": body})
        return await self.on_subscribe(request)

    async def _pub(self, request: web.Request):
        body = await request.read()
        self.pub_requests.append({"headers": dict(request.headers), "body": body})
        return await self.on_publish(request, body)

    async def start(self):
        app = web.Application()
        app.router.add_post("/auth/subscribe", self._sub)
        app.router.add_post("/auth/publish", self._pub)
        self.runner = web.AppRunner(app, handle_signals=False, access_log=None,
                                    shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/auth/subscribe"

    @property
    def publish_url(self):
        return f"http://127.0.0.1:{self.port}/auth/publish"

    def auth_config(self, **extra) -> dict:
        return {"url": self.url, "publish_url": self.publish_url, **extra}

    async def stop(self):
        if self.runner is not None:
            await asyncio.wait_for(self.runner.cleanup(), 5)




# -- clients ------------------------------------------------------------------------------------



class PicowsClient(picows.WSListener):
    """picows listener collecting frames into a queue."""

    def __init__(self):
        self.frames: asyncio.Queue = asyncio.Queue()
        self.transport = None

    def on_ws_connected(self, transport):
        self.transport = transport

    def on_ws_frame(self, transport, frame):
        t = frame.msg_type
        if t == picows.WSMsgType.CLOSE:
            self.frames.put_nowait(("close", frame.get_close_code()))
        elif t in (picows.WSMsgType.TEXT, picows.WSMsgType.BINARY):
            self.frames.put_nowait((t, frame.get_payload_as_bytes()))

    async def recv(self, timeout=RECV_TIMEOUT):
        return await asyncio.wait_for(self.frames.get(), timeout)


async def picows_connect(url: str) -> PicowsClient:
    transport, client = await asyncio.wait_for(
        picows.ws_connect(PicowsClient, url, websocket_handshake_timeout=5), 10)
    return client


async def raw_request(host: str, port: int, data: bytes, timeout: float = 5.0,
                      local_addr=None):
    """Send raw bytes, read one HTTP response head (+ Content-Length body).  Returns
    (status, headers lower-cased, body)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=local_addr), timeout)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        body = b""
        n = int(headers.get("content-length", "0") or 0)
        if n:
            body = await asyncio.wait_for(reader.readexactly(n), timeout)
        return status, headers, body
    finally:
        writer.close()


async def wait_for(predicate, timeout=5.0, interval=0.05):
    """Poll an async predicate until true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return value
        await asyncio.sleep(interval)


# -- WebSocket helpers (websockets 17) ------------------------------------------------------------

from websockets.asyncio.client import connect as _ws_connect   # noqa: E402

DEFAULT_FRAME = re.compile(
    r'^\{"id":(-?\d+),"channel":"((?:[^"\\]|\\.)*)","text":"((?:[^"\\]|\\.)*)",'
    r'"tag":"(\d+)","time":"([^"]*)","eventid":"((?:[^"\\]|\\.)*)"\}$', re.S)


def ws_connect(url: str, **kw):
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 2)
    kw.setdefault("ping_interval", None)
    kw.setdefault("proxy", None)
    return _ws_connect(url, **kw)


async def recv(ws, timeout: float = RECV_TIMEOUT):
    return await asyncio.wait_for(ws.recv(), timeout)


def parse_default(frame) -> dict:
    """A frame rendered with the default template -> its fields (json.loads must work too)."""
    if isinstance(frame, bytes):
        frame = frame.decode("utf-8")
    m = DEFAULT_FRAME.match(frame)
    assert m, f"frame does not follow the default template: {frame!r}"
    doc = json.loads(frame)
    assert list(doc) == ["id", "channel", "text", "tag", "time", "eventid"]
    return doc


async def publish(http, base: str, channels: str, body, headers=None, method="POST"):
    async with http.request(method, f"{base}/pub", params={"id": channels}, data=body,
                            headers=headers or {}) as r:
        return r.status, r.headers, await r.read()


# -- push-stream parity helpers (modes, history, events, memory) ----------------------------------

import contextlib   # noqa: E402
import shutil       # noqa: E402
import tempfile     # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"]


@contextlib.asynccontextmanager
async def chromium_page():
    """A headless Chromium page (fresh profile, loopback only); closed and removed after."""
    from playwright.async_api import async_playwright
    profile = tempfile.mkdtemp(prefix="gogin-chromium-")
    # under scripts/sanitize.sh the ASan runtime is preloaded for gogin; Playwright's driver
    # and Chromium must not inherit it
    preload = os.environ.pop("LD_PRELOAD", None)
    try:
        async with async_playwright() as pw:
            try:
                ctx = await asyncio.wait_for(pw.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS), 30)
            finally:
                if preload is not None:
                    os.environ["LD_PRELOAD"] = preload
            try:
                page = ctx.pages[0] if ctx.pages else await ctx.new_page()
                yield page
            finally:
                await asyncio.wait_for(ctx.close(), 15)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def metric_values(text: str) -> dict:
    """/metrics text -> {sample name: value} (samples without labels), read by
    prometheus_client's own parser: values are floats there, large ones in exponent form."""
    from prometheus_client.parser import text_string_to_metric_families
    return {s.name: s.value for f in text_string_to_metric_families(text)
            for s in f.samples if not s.labels}


def explain_of(headers) -> Optional[str]:
    """The X-Gogin-Explain header of an answer (any case-insensitive mapping)."""
    return headers.get("X-Gogin-Explain") or headers.get("x-gogin-explain")
