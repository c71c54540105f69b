"""The broker interface: what the server asks of whatever shares its channels.

A node's core (the Hub) always holds the channels that have local subscribers, their local
history and the fanout.  A broker decides where a publish goes and where a node's messages come
from:
- ``memory``: the publish goes straight into this node's hub (no other node exists);
- ``redis``: the publish goes to Redis, which numbers and stores it; every node subscribed to
  the channel receives it back and hands it to its hub with the id Redis gave it;
- ``nats``: the publish goes to a core NATS subject; every node holding the channel receives it
  back and numbers it itself (history and resume per node).

The publish of a shared broker completes later (an awaitable) and may fail with
BrokerUnavailable: the publisher then answers 503, never 200 for a message nobody stored.
"""

from __future__ import annotations

from typing import Awaitable, Optional, Protocol, Sequence, Union

import msgspec


class BrokerUnavailable(Exception):
    """The shared broker cannot take a publish now (unreachable, or it answered an error)."""


class PublishResult(msgspec.Struct, frozen=True):
    """Per channel, what a publisher answer needs: the channel's published count (its last
    message id) and its stored count, after this publish."""
    channel: str
    published: int
    stored: int


def report_failure(fut, on_error) -> None:
    """on_error(text) when a shared broker's publish future fails (and the failure retrieved:
    a fire-and-forget publish leaves no 'exception never retrieved' behind)."""
    def done(f):
        exc = f.exception()
        if exc is not None and on_error is not None:
            on_error(str(exc))
    fut.add_done_callback(done)


class Broker(Protocol):
    name: str                # "memory", "redis", "nats"
    shared: bool             # False: this node alone (several workers need a shared broker)

    async def start(self) -> None:
        """Connect (a shared broker); raises with a clear message if it cannot."""

    async def close(self) -> None:
        ...

    def publish(self, channels: Sequence[str], payload: bytes, event_id: Optional[str],
                event_type: Optional[str], binary: bool
                ) -> Union[list[PublishResult], Awaitable[list[PublishResult]]]:
        """Publish one message to several channels.  The memory broker answers at once; a
        shared broker returns an awaitable that raises BrokerUnavailable on failure."""

    def publish_nowait(self, channels: Sequence[str], payload: bytes, event_id: Optional[str],
                       event_type: Optional[str], binary: bool, on_error=None) -> None:
        """publish() without an answer: on_error(text) is called if it was not stored."""

    def ready(self, channels: Sequence[str]) -> Optional[Awaitable[None]]:
        """None when every channel's messages already reach this node with its local history
        in step; else an awaitable that subscribes them (and loads their history) first.  A
        subscriber is started only after it, so a resume reads a complete history."""

    def forget(self, channel: str) -> None:
        """The node reclaimed the channel (no local subscriber, idle): stop receiving it."""

    def delete(self, channel: str, text: bytes = b"Channel deleted") -> Optional[Awaitable[None]]:
        """Delete the channel's shared state (history, counters), if any."""

    def state(self) -> dict:
        """For /healthz and stats: {"broker": name, "state": "ok" | "degraded", ...}."""
