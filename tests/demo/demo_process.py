"""Helpers of the demo tests: a real `python -m gogin --demo` process (restartable on the same
port, with its session secret in a directory the test owns), a TCP proxy that can cut the
page's connections, and headless Chromium.  Loopback only; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

T = 10.0                                     # upper bound of any single wait
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]


def free_port() -> int:
    """A free port whose successor is free too (the demo main server takes port + 1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


class DemoProcess:
    def __init__(self, port: int | None = None, state_dir: str | None = None):
        self.port = port or free_port()
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="gogin-demo-state-")
        self.log = tempfile.NamedTemporaryFile("w+", prefix="gogin-demo-", suffix=".log",
                                               delete=False)
        env = dict(os.environ, PYTHONUNBUFFERED="1", GOGIN_DEMO_STATE_DIR=self.state_dir)
        for k in ("GOGIN_AUTH_URL", "GOGIN_AUTH_PUBLISH_URL", "GOGIN_DEMO_SECRET"):
            env.pop(k, None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gogin", "--demo", "--listen", f"127.0.0.1:{self.port}"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}/subscribe/"
        self.main = self._wait_ready()

    def output(self) -> str:
        with open(self.log.name) as fh:
            return fh.read()

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = self.output()
            if self.proc.poll() is not None:
                raise RuntimeError(f"gogin --demo exited {self.proc.returncode}:\n{out}")
            m = re.search(r"demo main server listening on (http://127\.0\.0\.1:\d+)", out)
            if m and "demo: open http://" in out:
                return m.group(1)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gogin --demo did not start:\n{self.output()}")

    def restart(self, new_secret: bool = False) -> "DemoProcess":
        """Stop, then start again on the same port and state directory; new_secret=True
        deletes the session secret first (every session ends)."""
        self.stop(keep_state=True)
        if new_secret:
            os.unlink(os.path.join(self.state_dir, "secret"))
        return DemoProcess(self.port, self.state_dir)

    def stop(self, keep_state: bool = False):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(T)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(T)
        self.log.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.log.name)
        if not keep_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)


class CuttingProxy:
    """127.0.0.1:<port> -> gogin.  cut() resets every connection through it and refuses new
    ones until restore(): what a network failure looks like to the page.  With
    refuse_upgrades, WebSocket handshakes are reset (a proxy that breaks WebSockets); with
    refuse_event_streams, requests that accept only text/event-stream (a browser's
    EventSource; not fetch()) are reset."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.down = False
        self.refuse_upgrades = False
        self.refuse_event_streams = False
        self.transports: set = set()
        self.server = None
        self.port = 0

    async def start(self) -> "CuttingProxy":
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _client(self, reader, writer):
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target_port), T)
        except (OSError, asyncio.TimeoutError):
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self.transports.update(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer, check=True),
                                 self._pipe(up_reader, writer))
        finally:
            for t in pair:
                self.transports.discard(t)
                t.abort()

    async def _pipe(self, reader, writer, check=False):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                low = data.lower()
                if check and self.refuse_upgrades and b"\r\nupgrade: websocket" in low:
                    break
                if check and self.refuse_event_streams and b"\r\naccept: text/event-stream" in low:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()

    def cut(self):
        self.down = True
        for t in list(self.transports):
            t.abort()

    def restore(self):
        self.down = False

    async def close(self):
        self.cut()
        self.server.close()
        await asyncio.wait_for(self.server.wait_closed(), T)


@contextlib.asynccontextmanager
async def chromium(viewport=None):
    """A headless Chromium context (fresh profile, loopback only); closed and removed after."""
    import pytest
    pw_api = pytest.importorskip("playwright.async_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="gogin-chromium-")
    try:
        async with pw_api.async_playwright() as pw:
            ctx = await asyncio.wait_for(pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                viewport=viewport or {"width": 1100, "height": 760}, timeout=T * 1000), 30)
            try:
                yield ctx
            finally:
                await asyncio.wait_for(ctx.close(), 15)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
