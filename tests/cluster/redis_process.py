"""A redis-server process of a test: on a free port, in its own directory, stoppable and
restartable (the same port and data directory), with or without AOF persistence."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from gogin_e2e import free_port


class RedisProcess:
    def __init__(self, workdir: Path, appendonly: bool = False):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisProcess":
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.workdir), "--save", "", "--logfile", "redis.log",
                "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, down_for: float = 0.0):
        self.stop()
        time.sleep(down_for)
        return self.start()
