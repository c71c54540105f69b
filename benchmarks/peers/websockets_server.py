"""gogin-bench peer: a pub/sub server on the Python ``websockets`` library (asyncio API).

    python websockets_server.py --port 8080 [--host 127.0.0.1]

* ``ws://HOST:PORT/sub/<channel>``: subscriber; receives every message of the channel.
* ``ws://HOST:PORT/pub/<channel>``: publisher; each message it sends is published to the
  channel as is (raw bytes, re-sent as a Text frame) with ``websockets.broadcast()``.
  Nothing is sent back to the publisher.
* ``ws://HOST:PORT/pub`` (or ``/pub/``): multi-channel JSON publisher, the format of gogin's
  publisher WebSocket without ``?id=``: each message is ``{"id": "<channel>", "text": "<msg>"}``
  or an array of such objects, published in order; ``id`` may be a list of channels.  Each
  item's ``text`` is UTF-8 encoded once and sent as a Text frame with ``broadcast()`` to each
  of its channels.  An invalid item is skipped and answered with ``{"error": ..., "index": N}``;
  nothing else is sent back.

One process, one event loop (uvloop when installed).  SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
import signal

from _jsonpub import error_text, publish_items  # this folder (on sys.path)
from websockets.asyncio.server import broadcast, serve

CHANNELS: dict[str, set] = {}


async def handler(ws) -> None:
    path = ws.request.path.split("?", 1)[0]
    kind, _, channel = path.strip("/").partition("/")
    if kind == "pub" and not channel:
        await publish_json(ws)
        return
    if not channel or "/" in channel or kind not in ("sub", "pub"):
        await ws.close(1008, "use /sub/<channel>, /pub/<channel> or /pub")
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


async def publish_json(ws) -> None:
    """The multi-channel JSON publisher (``/pub``)."""
    try:
        while True:
            msg = await ws.recv(decode=False)
            for i, err, names, data in publish_items(msg):
                if err is not None:
                    await ws.send(error_text(err, i))
                    continue
                for name in names:
                    subs = CHANNELS.get(name)
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
