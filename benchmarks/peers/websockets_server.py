"""gogin-bench peer: a pub/sub server on the Python ``websockets`` library (asyncio API).

    python websockets_server.py --port 8080 [--host 127.0.0.1]

* ``ws://HOST:PORT/sub/<channel>``: subscriber; receives every message of the channel.
* ``ws://HOST:PORT/pub/<channel>``: publisher; each message it sends is published to the
  channel as is (raw bytes, re-sent as a Text frame) with ``websockets.broadcast()``.
  Nothing is sent back to the publisher.

One process, one event loop (uvloop when installed).  SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
import signal

from websockets.asyncio.server import broadcast, serve

CHANNELS: dict[str, set] = {}


async def handler(ws) -> None:
    path = ws.request.path.split("?", 1)[0]
    kind, _, channel = path.strip("/").partition("/")
    if not channel or "/" in channel or kind not in ("sub", "pub"):
        await ws.close(1008, "use /sub/<channel> or /pub/<channel>")
        return
    if kind == "sub":
        subs = CHANNELS.setdefault(channel, set())
        subs.add(ws)
        try:
            await ws.wait_closed()
        finally:
            subs.discard(ws)
            if not subs and CHANNELS.get(channel) is subs:
                del CHANNELS[channel]
        return
    # publisher
    try:
        while True:
            data = await ws.recv(decode=False)
            subs = CHANNELS.get(channel)
            if subs:
                broadcast(subs, data, text=True)
    except Exception:  # ConnectionClosed*
        return


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    async with serve(
        handler, host, port,
        compression=None, ping_interval=None, max_size=1 << 20, backlog=4096,
        write_limit=1 << 20,
    ):
        print(f"websockets_server listening on {host}:{port}", flush=True)
        await stop


if __name__ == "__main__":
    from _run import run   # this folder: the script's own directory is on sys.path

    run(main)
