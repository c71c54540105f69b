"""native/compat.h as the hub uses it: what every platform's spelling must give.

An accepted connection is non-blocking and close-on-exec (accept4's flags, or accept + fcntl),
and a write to a peer that is gone fails with EPIPE instead of raising SIGPIPE (MSG_NOSIGNAL on
each send, or SO_NOSIGPIPE on each socket) - checked in a process where SIGPIPE kills, as in a
program that embeds gogin and restored the default action (CPython itself ignores it).
Run on the Linux build and on the portable one (CFLAGS=-DGG_COMPAT_POSIX, macOS's branch).
"""

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from gogin._core.fanout import _SIGPIPE_SAFE

from gogin._core import Hub, backends


@pytest.mark.parametrize("backend", backends())
def test_accepted_socket_is_nonblocking_and_cloexec(backend):
    seen = []

    def on_request(conn, req):
        fd = conn.fileno
        seen.append((os.get_blocking(fd), bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)))
        conn.respond(204)

    hub = Hub(on_request, backend=backend)
    host, port = hub.listen("127.0.0.1", 0)
    client = socket.create_connection((host, port), timeout=5)
    try:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            hub.poll()
            time.sleep(0.002)
        assert seen == [(False, True)]
        assert client.recv(100).startswith(b"HTTP/1.1 204 ")
    finally:
        client.close()
        hub.close()


CHILD = r"""
import signal, socket, sys
signal.signal(signal.SIGPIPE, signal.SIG_DFL)        # a SIGPIPE now ends this process
from gogin._core import Hub

hub = Hub()
a, b = socket.socketpair()
conn = hub.adopt_pending(a.detach())
conn.upgrade(["c"])                                  # key None: the handshake is elsewhere
b.close()                                            # the peer is gone
for _ in range(3):                                   # sendmsg (the fanout) on a dead peer
    hub.publish("c", "x" * 1000)
    hub.flush()
c, d = socket.socketpair()
conn = hub.adopt_pending(c.detach())
conn.upgrade(["c"])
d.close()
hub.close()                                          # send (the close 1001) on a dead peer
print("alive")
"""


@pytest.mark.skipif(not _SIGPIPE_SAFE, reason="this build has neither MSG_NOSIGNAL nor "
                    "SO_NOSIGPIPE (-DGG_COMPAT_POSIX on Linux)")
def test_a_dead_peer_is_no_sigpipe():
    r = subprocess.run([sys.executable, "-c", CHILD], check=False, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != -signal.SIGPIPE, "killed by SIGPIPE"
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["alive"]
