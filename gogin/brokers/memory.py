"""The memory broker: this node alone.  A publish goes straight into the hub."""

from __future__ import annotations

from gogin.brokers.base import PublishResult


class MemoryBroker:
    name = "memory"
    shared = False

    def __init__(self, server):
        self.server = server

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def publish(self, channels, payload, event_id, event_type, binary) -> list[PublishResult]:
        hub = self.server.hub
        out = []
        for name in channels:
            self.server.channels.publish_local(name, payload, event_id, event_type, binary)
            ch = hub.channel(name)
            out.append(PublishResult(name, ch.published, ch.stored))
        return out

    def publish_nowait(self, channels, payload, event_id, event_type, binary, on_error=None):
        self.publish(channels, payload, event_id, event_type, binary)

    def ready(self, channels):
        return None

    def forget(self, channel: str) -> None:
        pass

    def delete(self, channel: str, text: bytes = b"Channel deleted"):
        return None

    def state(self) -> dict:
        return {"broker": "memory", "state": "ok"}
