"""A nats-server process of a test: on a free loopback port, stoppable and restartable on the
same port (never the machine's server on 4222)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from gogin_e2e import free_port

NATS_SERVER = shutil.which("nats-server")


class NatsProcess:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsProcess":
        log = open(self.workdir / "nats.log", "ab")
        self.proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    if s.recv(16).startswith(b"INFO"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
