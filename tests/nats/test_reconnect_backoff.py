"""Reconnects back off (gogin.natstap.backoff, used by the ingest and the NATS broker): a real
nats-server is killed under a connected client, and a listener on its port that closes every
connection at once counts the client's attempts: the waits between them grow, doubling, up to
the cap, each within [half, all] of its backoff.  Then a nats-server on the port again: the
client is connected again."""

from __future__ import annotations

import asyncio
import socket
import time

from gogin.natstap import TapClient, backoff
from natsd import NatsServer

FIRST = 0.1
CAP = 0.8


def test_waits_double_up_to_the_cap_with_jitter(tmp_path):
    srv = NatsServer(tmp_path).start()

    async def run():
        reconnected = asyncio.Event()

        async def on_reconnected():
            reconnected.set()

        async def quiet(e):
            pass

        nc = TapClient()
        await nc.connect(servers=[srv.url], allow_reconnect=True, max_reconnect_attempts=-1,
                         reconnect_to_server_handler=backoff(FIRST, CAP), connect_timeout=1,
                         reconnected_cb=on_reconnected, error_cb=quiet)
        srv.stop()
        # the port, refusing in the protocol's way: accept, then close before INFO
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(("127.0.0.1", srv.port))
        lsock.listen(16)
        lsock.setblocking(False)
        loop = asyncio.get_running_loop()
        stamps = []
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            try:
                c, _ = await asyncio.wait_for(loop.sock_accept(lsock), 0.5)
            except asyncio.TimeoutError:
                continue
            stamps.append(time.monotonic())
            c.close()
        lsock.close()
        srv.start()
        await asyncio.wait_for(reconnected.wait(), 2 * CAP + 3)
        assert nc.is_connected
        await nc.close()
        return stamps

    try:
        stamps = asyncio.run(run())
    finally:
        srv.stop()
    waits = [b - a for a, b in zip(stamps, stamps[1:])]
    # attempt n+1 waits within [d/2, d] of d = min(CAP, FIRST * 2**n), n failures so far
    # (plus a little for the connect and the loop: 50 ms)
    assert len(waits) >= 5, waits
    for n, w in enumerate(waits, start=1):
        d = min(CAP, FIRST * 2 ** n)
        assert d / 2 - 0.01 <= w <= d + 0.05, (n, w, waits)
    # a fixed wait (nats-py's own reconnect_time_wait) would have made many more attempts
    assert len(waits) <= 4.5 / (CAP / 2) + 3, waits
