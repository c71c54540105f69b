"""Peer servers for gogin-bench: the same pub/sub workload served by other WebSocket stacks.

Every peer is started as its own process on 127.0.0.1 (a free port), optionally pinned to one
core with ``taskset -c CPU``, and exposes the same surface as the gogin target:

* ``sub_url(channel)``: ``ws://127.0.0.1:PORT/sub/<channel>`` (subscriber WebSocket; every
  frame payload is a published message, byte-exact, as a Text frame);
* ``pub(channel)``: ``("ws", url)``, a publisher WebSocket where each message is published to
  the channel, or ``("http", url)``, an HTTP POST endpoint (keep-alive) whose body is the
  message;
* ``pub_multi()``: ``("ws-json", "ws://127.0.0.1:PORT/pub")``, one publisher WebSocket for
  any number of channels (the "1:1 routing" workload), in the format of gogin's publisher
  WebSocket without ``?id=``: each message is ``{"id": "<channel>", "text": "<message>"}`` or a
  JSON array of such objects, published in order (``id`` may also be a list of channels;
  ``text`` reaches subscribers UTF-8 encoded, as a Text frame).  ``None`` when the peer has
  no such endpoint: Nchan, where routing publishes each message with an HTTP POST to
  ``pub(channel)``.

Peers (``PEERS``): ``websockets`` (``broadcast()``), ``picows`` (naive send loop),
``nchan`` (nginx + Nchan, one worker), ``node-ws`` (Node.js ``ws``, naive send loop) and
``c-server`` (a C reference: epoll, one send per delivery, HTTP keep-alive POST publishing).  The
server programs live in ``benchmarks/peers/`` of a source checkout (override with the
``GOGIN_BENCH_PEERS_DIR`` environment variable).

Quirks the load client must know:

* ``nchan`` publishes with HTTP POST; send ``Content-Type: text/plain`` or subscribers get
  Binary frames (payload still byte-exact).  With ``NchanPeer(pub_mode="ws")`` publishing is
  over a WebSocket instead, and Nchan answers *every* published message with a Text frame of
  channel info on the publisher connection: the client must read and discard those.
* the three other peers send nothing back on a publisher connection, except on the
  ``pub_multi()`` one: an invalid JSON message or item is skipped and answered with a Text
  frame ``{"error": "...", "index": N}`` (as gogin does); a load client that sends only
  valid items may ignore that connection's input.
* the nginx peer is two processes (an idle master and the one worker); ``pids()`` lists both.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"

__all__ = ["PEERS", "Peer", "WebsocketsPeer", "PicowsPeer", "NchanPeer", "NodeWsPeer",
           "CServerPeer", "peers_dir"]


def peers_dir() -> Path:
    """The directory holding the peer server programs (benchmarks/peers of the checkout)."""
    env = os.environ.get("GOGIN_BENCH_PEERS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "benchmarks" / "peers"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class Peer:
    """Base class: one server process on 127.0.0.1:<free port>."""

    name = "peer"
    #: how pub() publishes: "ws" or "http"
    pub_mode = "ws"

    def __init__(self) -> None:
        self.host = HOST
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log_path: Path | None = None

    # -- to override -------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        raise NotImplementedError

    @classmethod
    def version(cls) -> str:
        """Human-readable versions of the server stack (for result reports)."""
        return "?"

    def _command(self, tmpdir: Path) -> list[str]:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def pids(self) -> list[int]:
        """The server process and its descendants (e.g. the nginx worker)."""
        if self._proc is None:
            return []
        out = [self._proc.pid]
        children: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            ppid = int(stat[stat.rfind(b")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(d))
        i = 0
        while i < len(out):
            out.extend(children.get(out[i], ()))
            i += 1
        return out

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        """The last n characters of the server's stdout/stderr (and error log)."""
        text = ""
        for p in (self._log_path, self._extra_log()):
            if p is not None and p.exists():
                text += p.read_text(errors="replace")[-n:]
        return text

    def _extra_log(self) -> Path | None:
        return None

    def start(self, cpu: int | None = None, timeout: float = 20.0) -> "Peer":
        if self._proc is not None:
            raise RuntimeError(f"{self.name}: already started")
        ok, why = self.available()
        if not ok:
            raise RuntimeError(f"{self.name}: not available: {why}")
        self._tmp = tempfile.TemporaryDirectory(prefix=f"gogin-bench-{self.name}-")
        tmpdir = Path(self._tmp.name)
        self.port = _free_port()
        cmd = self._command(tmpdir)
        preexec = None
        if cpu is not None:
            taskset = shutil.which("taskset")
            if taskset:
                cmd = [taskset, "-c", str(int(cpu))] + cmd
            else:
                def preexec(cpu=int(cpu)):  # noqa: E306
                    os.sched_setaffinity(0, {cpu})
        self._log_path = tmpdir / "server.log"
        with open(self._log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=str(tmpdir), start_new_session=True, preexec_fn=preexec,
                env=self._env(),
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            rc = self._proc.poll()
            if rc is not None:
                raise RuntimeError(f"{self.name}: server exited with {rc} during start-up:\n"
                                   f"{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: not accepting connections on "
                                   f"{self.host}:{self.port} after {timeout}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL (the whole process group) after ``timeout``; returns the
        exit code."""
        proc, self._proc = self._proc, None
        rc = None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            # The process group is the server's own (start_new_session): reap leftovers
            # such as an orphaned nginx worker.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
            rc = proc.returncode
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return rc

    def __enter__(self) -> "Peer":
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} pid={self.pid}>"

    # -- URLs ----------------------------------------------------------------------------
    def _need_port(self) -> int:
        if self.port is None:
            raise RuntimeError(f"{self.name}: not started")
        return self.port

    def sub_url(self, channel: str) -> str:
        return f"ws://{self.host}:{self._need_port()}/sub/{channel}"

    def pub(self, channel: str) -> tuple[str, str]:
        port = self._need_port()
        if self.pub_mode == "http":
            return ("http", f"http://{self.host}:{port}/pub/{channel}")
        return ("ws", f"ws://{self.host}:{port}/pub/{channel}")

    def pub_multi(self) -> tuple[str, str] | None:
        """``("ws-json", url)``: the multi-channel JSON publisher WebSocket (see the module
        docstring), or ``None`` when the peer has none (then publish per channel with
        ``pub(channel)``)."""
        return ("ws-json", f"ws://{self.host}:{self._need_port()}/pub")


# ---------------------------------------------------------------------------------------
class _PythonPeer(Peer):
    module = ""
    script = ""

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            __import__(cls.module)
        except ImportError as e:
            return False, (f"the {cls.module} package is not installed ({e}): "
                           f"pip install {cls.module}")
        script = peers_dir() / cls.script
        if not script.is_file():
            return False, f"{script} not found (needs a gogin source checkout)"
        return True, ""

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version
        return (f"{cls.module} {version(cls.module)}, Python "
                f"{'.'.join(map(str, sys.version_info[:3]))}, {cls._loop_version()}")

    @classmethod
    def _loop_version(cls) -> str:
        try:
            import uvloop
            return f"uvloop {uvloop.__version__}"
        except ImportError:
            return "asyncio"

    def _command(self, tmpdir: Path) -> list[str]:
        return [sys.executable, str(peers_dir() / self.script),
                "--host", self.host, "--port", str(self.port)]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env


class WebsocketsPeer(_PythonPeer):
    """Python ``websockets`` (asyncio API) fanning out with ``websockets.broadcast()``."""

    name = "websockets"
    module = "websockets"
    script = "websockets_server.py"


class PicowsPeer(_PythonPeer):
    """``picows`` with a naive ``for t in subscribers: t.send(...)`` loop."""

    name = "picows"
    module = "picows"
    script = "picows_server.py"



# ---------------------------------------------------------------------------------------
_NCHAN_HINT = "apt-get install nginx libnginx-mod-nchan"


def _nginx_bin() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(p, os.X_OK):
            return p
    return None


def _nchan_module() -> str | None:
    env = os.environ.get("GOGIN_BENCH_NCHAN_MODULE")
    if env:
        return env if os.path.isfile(env) else None
    if shutil.which("dpkg"):
        try:
            r = _run(["dpkg", "-L", "libnginx-mod-nchan"])
            for line in r.stdout.splitlines():
                if line.endswith("/ngx_nchan_module.so") and os.path.isfile(line):
                    return line
        except (OSError, subprocess.SubprocessError):
            pass
    for p in ("/usr/lib/nginx/modules/ngx_nchan_module.so",
              "/usr/lib64/nginx/modules/ngx_nchan_module.so",
              "/usr/share/nginx/modules/ngx_nchan_module.so"):
        if os.path.isfile(p):
            return p
    return None


class NchanPeer(Peer):
    """nginx + Nchan, ``worker_processes 1``: WebSocket subscribers, HTTP POST publisher
    (``pub_mode="ws"``: WebSocket publisher, which gets one status frame per message)."""

    name = "nchan"
    pub_mode = "http"
    _checked: tuple[bool, str] | None = None

    def __init__(self, pub_mode: str = "http") -> None:
        super().__init__()
        if pub_mode not in ("http", "ws"):
            raise ValueError("pub_mode must be 'http' or 'ws'")
        self.pub_mode = pub_mode

    def sse_url(self, channel: str) -> str:
        """EventSource subscriber (the same location: ``nchan_subscriber websocket
        eventsource``)."""
        return f"http://{self.host}:{self._need_port()}/sub/{channel}"

    @classmethod
    def _render(cls, tmpdir: Path, port: int, module: str) -> Path:
        template = (peers_dir() / "nchan.conf").read_text()
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmpdir / d).mkdir(exist_ok=True)
        conf = (template
                .replace("@USER@", "user root;" if os.geteuid() == 0 else "")
                .replace("@NCHAN_MODULE@", module)
                .replace("@TMPDIR@", str(tmpdir))
                .replace("@PORT@", str(port)))
        path = tmpdir / "nginx.conf"
        path.write_text(conf)
        return path

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if cls._checked is not None:
            return cls._checked
        nginx = _nginx_bin()
        module = _nchan_module()
        if nginx is None or module is None:
            what = "nginx" if nginx is None else "the nginx nchan module"
            return False, f"{what} is not installed: {_NCHAN_HINT}"
        if not (peers_dir() / "nchan.conf").is_file():
            return False, f"{peers_dir() / 'nchan.conf'} not found (needs a gogin source checkout)"
        with tempfile.TemporaryDirectory(prefix="gogin-bench-nchan-check-") as td:
            conf = cls._render(Path(td), _free_port(), module)
            try:
                r = _run([nginx, "-t", "-q", "-c", str(conf), "-p", td, "-e", f"{td}/error.log"])
            except (OSError, subprocess.SubprocessError) as e:
                return False, f"nginx -t failed: {e}"
            if r.returncode != 0:
                cls._checked = (False, "nginx cannot load the nchan config (version mismatch "
                                       f"of nginx and libnginx-mod-nchan?): {r.stderr.strip()}")
                return cls._checked
        cls._checked = (True, "")
        return cls._checked

    @classmethod
    def version(cls) -> str:
        nginx = _nginx_bin()
        v = "nginx ?"
        if nginx:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                v = _run([nginx, "-v"]).stderr.strip().replace("nginx version: ", "")
        nchan = "?"
        if shutil.which("dpkg-query"):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                r = _run(["dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan"])
                if r.returncode == 0:
                    nchan = r.stdout.strip()
        return f"{v}, nchan {nchan}"

    def _command(self, tmpdir: Path) -> list[str]:
        conf = self._render(tmpdir, self.port, _nchan_module())
        return [_nginx_bin(), "-c", str(conf), "-p", str(tmpdir), "-e", str(tmpdir / "error.log")]

    def pub_multi(self) -> tuple[str, str] | None:
        """``None``: Nchan has no multi-channel JSON publisher.  Routing to many channels
        (the "1:1 routing" workload) publishes each message with an HTTP POST to
        ``pub(channel)`` of its channel (keep-alive connections)."""
        return None

    def _extra_log(self) -> Path | None:
        return Path(self._tmp.name) / "error.log" if self._tmp is not None else None


# ---------------------------------------------------------------------------------------
class NodeWsPeer(Peer):
    """Node.js ``ws`` with a naive ``for (c of subs) c.send(data)`` loop.  ``ws`` is installed
    with ``npm install --prefix benchmarks/peers`` on first use."""

    name = "node-ws"
    script = "node_ws_server.js"
    _checked: tuple[bool, str] | None = None

    @classmethod
    def _ws_installed(cls) -> bool:
        return (peers_dir() / "node_modules" / "ws" / "package.json").is_file()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if cls._checked is not None:
            return cls._checked
        node = shutil.which("node")
        if node is None:
            return False, ("node is not installed (Node.js >= 18 with npm): "
                           "apt-get install nodejs npm")
        d = peers_dir()
        if not (d / cls.script).is_file():
            return False, f"{d / cls.script} not found (needs a gogin source checkout)"
        if not cls._ws_installed():
            npm = shutil.which("npm")
            if npm is None:
                return False, (f"the ws package is not installed in {d}/node_modules and npm is "
                               f"missing: apt-get install npm")
            # serialise concurrent installs
            with open(d / ".npm-install.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not cls._ws_installed():
                    try:
                        r = _run([npm, "install", "--prefix", str(d), "--no-audit", "--no-fund",
                                  "--loglevel=error"], timeout=300)
                    except (OSError, subprocess.SubprocessError) as e:
                        return False, f"npm install --prefix {d} failed: {e}"
                    if r.returncode != 0 or not cls._ws_installed():
                        return False, (f"npm install --prefix {d} failed: "
                                       f"{(r.stderr or r.stdout).strip()[-500:]}")
        cls._checked = (True, "")
        return cls._checked

    @classmethod
    def version(cls) -> str:
        node = "?"
        with contextlib.suppress(OSError, subprocess.SubprocessError, TypeError):
            node = _run([shutil.which("node"), "--version"]).stdout.strip()
        ws = "?"
        with contextlib.suppress(OSError, ValueError):
            ws = json.loads((peers_dir() / "node_modules" / "ws" / "package.json")
                            .read_text())["version"]
        return f"ws {ws}, Node.js {node}"

    def _command(self, tmpdir: Path) -> list[str]:
        return [shutil.which("node"), str(peers_dir() / self.script),
                "--host", self.host, "--port", str(self.port)]


class CServerPeer(Peer):
    """A reference server in C (``benchmarks/peers/c_server.c``): epoll, one thread, one
    ``send()`` per delivery (no corking), HTTP/1.1 keep-alive POST publishing
    (``POST /pub/<ch>`` answered ``200`` with no body) and the multi-channel JSON publisher
    WebSocket.  Built with the system C compiler on first use (needs OpenSSL's libcrypto for
    the handshake's SHA-1), into ``build/`` next to the source."""

    name = "c-server"
    pub_mode = "http"
    source = "c_server.c"
    _checked: tuple[bool, str] | None = None

    @classmethod
    def binary(cls) -> Path:
        return peers_dir() / "build" / "c_server"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if cls._checked is not None:
            return cls._checked
        src, out = peers_dir() / cls.source, cls.binary()
        if not src.is_file():
            return False, f"{src} not found (needs a gogin source checkout)"
        cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if cc is None:
            return False, "no C compiler (cc) to build the c-server peer"
        if not out.is_file() or out.stat().st_mtime < src.stat().st_mtime:
            out.parent.mkdir(exist_ok=True)
            try:
                r = _run([cc, "-O2", "-o", str(out), str(src), "-lcrypto"], timeout=120)
            except (OSError, subprocess.SubprocessError) as e:
                return False, f"building {src} failed: {e}"
            if r.returncode != 0:
                return False, f"building {src} failed: {(r.stderr or r.stdout).strip()[-500:]}"
        cls._checked = (True, "")
        return cls._checked

    @classmethod
    def version(cls) -> str:
        return "c_server.c (epoll, one send per delivery)"

    def _command(self, tmpdir: Path) -> list[str]:
        return [str(self.binary()), str(self.port)]


PEERS: dict[str, type[Peer]] = {
    "websockets": WebsocketsPeer,
    "picows": PicowsPeer,
    "nchan": NchanPeer,
    "node-ws": NodeWsPeer,
    "c-server": CServerPeer,
}
