"""A private nats-server (JetStream on) per test module: its own port and store directory,
never the system one on 4222.  Loopback only; every wait is bounded."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

from gogin_e2e import free_port

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
MAX_PAYLOAD = 16 << 20       # a 10 MB message must reach gogin (to be refused there)


class NatsServer:
    def __init__(self, workdir: Path, port: Optional[int] = None):
        self.workdir = workdir
        self.port = port or free_port()
        self.store = workdir / "js"
        self.conf = workdir / "nats.conf"
        self.conf.write_text(f"listen: 127.0.0.1:{self.port}\n"
                             f"max_payload: {MAX_PAYLOAD}\n"
                             f"jetstream {{ store_dir: \"{self.store}\" }}\n")
        self.log_path = workdir / "nats.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> "NatsServer":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([NATS_SERVER, "-js", "-c", str(self.conf)],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("nats-server did not listen within 10 s")
                time.sleep(0.05)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
