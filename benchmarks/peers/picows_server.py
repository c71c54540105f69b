"""gogin-bench peer: a pub/sub server on ``picows`` with a naive fan-out loop.

    python picows_server.py --port 8080 [--host 127.0.0.1]

* ``ws://HOST:PORT/sub/<channel>``: subscriber; receives every message of the channel.
* ``ws://HOST:PORT/pub/<channel>``: publisher; each message it sends is published to the
  channel as is (raw bytes, Text frame): ``for t in subscribers: t.send(TEXT, payload)``.
  Nothing is sent back to the publisher.
* ``ws://HOST:PORT/pub`` (or ``/pub/``): multi-channel JSON publisher, the format of gogin's
  publisher WebSocket without ``?id=``: each message is ``{"id": "<channel>", "text": "<msg>"}``
  or an array of such objects, published in order; ``id`` may be a list of channels.  Each
  item's ``text`` is UTF-8 encoded once and sent with the same naive loop to each of its
  channels.  An invalid item is skipped and answered with ``{"error": ..., "index": N}``;
  nothing else is sent back.

One process, one event loop (uvloop when installed).  SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
import signal

from _jsonpub import error_text, publish_items  # this folder (on sys.path)
from picows import WSListener, WSMsgType, WSTransport, ws_create_server

CHANNELS: dict[bytes, set[WSTransport]] = {}


class Subscriber(WSListener):
    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self.subs = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.subs = CHANNELS.setdefault(self.channel, set())
        self.subs.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        subs = self.subs
        if subs is not None:
            subs.discard(transport)
            if not subs and CHANNELS.get(self.channel) is subs:
                del CHANNELS[self.channel]


class Publisher(WSListener):
    def __init__(self, channel: bytes) -> None:
        self.channel = channel

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        mt = frame.msg_type
        if mt == WSMsgType.TEXT or mt == WSMsgType.BINARY:
            # Messages are assumed unfragmented (small benchmark payloads).
            subs = CHANNELS.get(self.channel)
            if subs:
                payload = frame.get_payload_as_bytes()
                for t in subs:
                    t.send(WSMsgType.TEXT, payload)
        elif mt == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class JsonPublisher(WSListener):
    """The multi-channel JSON publisher (``/pub``)."""

    def on_ws_frame(self, transport: WSTransport, frame) -> None:
        mt = frame.msg_type
        if mt == WSMsgType.TEXT or mt == WSMsgType.BINARY:
            # Messages are assumed unfragmented (small benchmark payloads).
            for i, err, names, data in publish_items(frame.get_payload_as_bytes()):
                if err is not None:
                    transport.send(WSMsgType.TEXT, error_text(err, i).encode())
                    continue
                for name in names:
                    subs = CHANNELS.get(name.encode("utf-8", "surrogatepass"))
                    if subs:
                        for t in subs:
                            t.send(WSMsgType.TEXT, data)
        elif mt == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


def listener_factory(request):
    path = request.path.split(b"?", 1)[0]
    kind, _, channel = path.strip(b"/").partition(b"/")
    if kind == b"pub" and not channel:
        return JsonPublisher()
    if not channel or b"/" in channel:
        return None
    if kind == b"sub":
        return Subscriber(channel)
    if kind == b"pub":
        return Publisher(channel)
    return None


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await ws_create_server(listener_factory, host, port, backlog=4096)
    print(f"picows_server listening on {host}:{port}", flush=True)
    try:
        await stop
    finally:
        server.close()


if __name__ == "__main__":
    from _run import run   # this folder: the script's own directory is on sys.path

    run(main)
