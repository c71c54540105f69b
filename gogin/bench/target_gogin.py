"""gogin itself as a gogin-bench target, with the same surface as the peers (gogin.bench.peers).

``GoginTarget`` starts ``python -m gogin`` with a temporary TOML: 127.0.0.1 on a free port,
limits sized for benchmarks, and three locations of its own:

* ``/bws/<channel>``: WebSocket subscriber, raw ``~text~`` template (frame payload = message);
* ``/bpub?id=<channel>``: HTTP publisher, no channel info in the answer (200, empty body); a
  WebSocket upgrade there is a publishing stream to that channel (the core publishes each
  frame without calling Python), and without ``?id=`` a multi-channel JSON publisher.

``UrlTarget`` points at a gogin (or push-stream compatible) server that is already running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from urllib.parse import urlsplit

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0    # seconds for the server to accept connections
STOP_TIMEOUT = 8.0        # seconds for a clean stop before SIGKILL


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bench_config(port: int, max_connections: int = 40000) -> str:
    server = {"listen": [f"{HOST}:{port}"], "backlog": 4096, "max_connections": max_connections,
              "log_level": "warning", "allowed_networks": ["127.0.0.0/8"],
              "flush_pacing": float(os.environ.get("GOGIN_BENCH_PACING", "1.0"))}
    limits = {"max_backpressure": 16 << 20, "max_messages_stored_per_channel": 0,
              "channel_inactivity_time": 3600.0, "header_timeout": 60.0,
              "max_body_size": 1 << 20, "max_message_size": 1 << 20}
    locs = [
        {"path": "/bpub", "role": "publisher", "channels": "query",
         "channel_info_on_publish": False},
        {"path": "/bws/", "role": "subscriber", "mode": "websocket", "channels": "path",
         "template": "~text~"},
        {"path": "/bev/", "role": "subscriber", "mode": "eventsource", "channels": "path",
         "template": "~text~"},
        {"path": "/healthz", "role": "health", "public": True},
    ]
    return msgspec.toml.encode({"server": server, "limits": limits, "locations": locs}).decode()


def wait_port(host: str, port: int, timeout: float, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} during startup")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {host}:{port} within {timeout} s")


class GoginTarget:
    """gogin started by the bench (``python -m gogin``), pinned with ``taskset -c`` if asked."""

    name = "gogin"

    def __init__(self, pub_mode: str = "http", max_connections: int = 40000) -> None:
        if pub_mode not in ("http", "ws"):
            raise ValueError(f"pub_mode must be 'http' or 'ws', not {pub_mode!r}")
        self.pub_mode = pub_mode
        self.max_connections = max_connections
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    @classmethod
    def version(cls) -> str:
        import subprocess as sp
        root = Path(__file__).resolve().parents[2]
        try:
            rev = sp.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, sp.SubprocessError):
            rev = ""
        py = ".".join(map(str, sys.version_info[:3]))
        return f"gogin {rev or '?'}, Python {py}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def start(self, cpu: int | None = None) -> "GoginTarget":
        self._tmp = tempfile.TemporaryDirectory(prefix="gogin-bench-")
        tmp = Path(self._tmp.name)
        self.port = free_port()
        conf = tmp / "gogin.toml"
        conf.write_text(bench_config(self.port, self.max_connections))
        cmd = [sys.executable, "-m", "gogin", "-c", str(conf)]
        if cpu is not None:
            cmd = ["taskset", "-c", str(int(cpu))] + cmd       # taskset execs: same pid
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self._log = open(tmp / "server.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=str(tmp))
        try:
            wait_port(HOST, self.port, STARTUP_TIMEOUT, self.proc)
        except Exception:
            self.stop()
            raise
        return self

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (Path(self._tmp.name) / "server.log").read_text(errors="replace")[-n:]
        except Exception:
            return ""

    def stop(self) -> int | None:
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
            self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return rc

    def sub_url(self, channel: str) -> str:
        return f"ws://{HOST}:{self.port}/bws/{channel}"

    def sse_url(self, channel: str) -> str:
        return f"http://{HOST}:{self.port}/bev/{channel}"

    def pub(self, channel: str) -> tuple[str, str]:
        if self.pub_mode == "ws":
            # the publisher location's WebSocket: the core publishes each frame itself
            return "ws", f"ws://{HOST}:{self.port}/bpub?id={channel}"
        return "http", f"http://{HOST}:{self.port}/bpub?id={channel}"

    def pub_multi(self) -> tuple[str, str]:
        """The publisher location's WebSocket without ?id=: JSON {"id", "text"} items."""
        return "ws-json", f"ws://{HOST}:{self.port}/bpub"


class UrlTarget:
    """A server already running at `url` (http://host:port), push-stream style paths:
    subscribers on ``sub_path`` and publishes to ``pub_path`` ('{channel}' is replaced).  Its
    CPU and RSS are reported only if `pid` is given."""

    def __init__(self, url: str, sub_path: str = "/ws/{channel}",
                 pub_path: str = "/pub?id={channel}", pid: int | None = None,
                 pub_url: str | None = None) -> None:
        u = urlsplit(url)
        if u.scheme not in ("http", "ws") or not u.hostname:
            raise ValueError(f"target URL must be http://host:port, not {url!r}")
        self.name = url
        self.host, self.port = u.hostname, u.port or 80
        self.sub_path, self.pub_path = sub_path, pub_path
        self._pid = pid
        # publishes to another server (a node sharing the broker), else to this one
        p = urlsplit(pub_url) if pub_url else u
        self.pub_host, self.pub_port = p.hostname, p.port or 80

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return True, ""

    @property
    def pid(self) -> int | None:
        return self._pid

    def pids(self) -> list[int]:
        return [self._pid] if self._pid else []

    def start(self, cpu: int | None = None) -> "UrlTarget":
        wait_port(self.host, self.port, 2.0)
        return self

    def stop(self) -> None:
        return None

    def sub_url(self, channel: str) -> str:
        # '{token}' stays for the caller: one token per subscriber (gogin-bench --tokens)
        path = self.sub_path.format(channel=channel, token="{token}")
        return f"ws://{self.host}:{self.port}{path}"

    def pub(self, channel: str) -> tuple[str, str]:
        return "http", (f"http://{self.pub_host}:{self.pub_port}"
                        f"{self.pub_path.format(channel=channel)}")

    def pub_multi(self) -> None:
        return None
