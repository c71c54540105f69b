"""A node's channel operations beyond one core call: publish to several channels in one
``Hub.publish`` (the events channel hears of the new ones), delete with the subscribers'
notification, create on first subscriber, activity marks for the sweeper.  The server, its
locations (through their context) and the memory broker share one, so that no location needs
the Server itself (docs/architecture.md, The rooms of the Python layer)."""

from __future__ import annotations

import logging
import time

from gogin.publish import DELETED_ID, event_field_error, is_text, json_str

log = logging.getLogger("gogin.server")


class Channels:
    def __init__(self, hub, config):
        self.hub = hub
        self.config = config
        self.broker = None          # set by the server once the broker exists (it takes the server)

    # -- publishing --------------------------------------------------------------------------

    def publish(self, channel, payload, *, event_id=None, event_type=None, binary=None):
        """Server.publish (its docstring says what it returns)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        err = event_field_error("event_id", event_id) or \
            event_field_error("event_type", event_type)
        if err:
            raise ValueError(err)
        names = [channel] if isinstance(channel, str) else list(channel)
        if self.broker.shared:
            if binary is None:
                binary = not is_text(payload, None)
            return self.broker.publish(names, payload, event_id, event_type, binary)
        return sum(queued for _, queued, _ in self.publish_rows(names, payload, event_id,
                                                                event_type, binary))

    def publish_rows(self, names, payload: bytes, event_id, event_type, binary) -> list:
        """The memory broker's publish to several channels in one core call (channels made on
        first publish; the events channel hears of each new one): [(Channel, queued, created)].
        binary None: text if the payload is UTF-8 (decided in the core)."""
        rows = self.hub.publish(names, payload, event_id, event_type, binary, create=True)
        if self.config.limits.events_channel_id:
            for ch, _, created in rows:
                if created:
                    self.emit("channel_created", ch.name)
        return rows

    def publish_nowait(self, channels, payload, *, binary=None, on_error=None) -> None:
        """Publish without waiting for a shared broker's answer (client messages, the
        publisher WebSocket): a failure is counted by the broker and given to on_error(text)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        names = [channels] if isinstance(channels, str) else list(channels)
        if not self.broker.shared:
            self.publish_rows(names, payload, None, None, binary)
            return
        if binary is None:
            binary = not is_text(payload, None)
        self.broker.publish_nowait(names, payload, None, None, binary, on_error)

    def publish_local(self, channel, payload, event_id, event_type, binary) -> int:
        """Into this node's hub only (the memory broker; a shared broker's received messages
        take Hub.deliver instead)."""
        self.hub.ensure_channel(channel)
        return self.hub.publish(channel, payload, event_id=event_id, event_type=event_type,
                                binary=binary)

    def delete(self, name: str, text: bytes = b"Channel deleted", local: bool = False):
        """Subscribers get a message with id -2, then lose that channel (a connection with no
        channel left is closed: WebSocket with 1000, streams with their footer).  local: on
        this node only (a shared broker heard of the deletion)."""
        if local:
            self.broker.forget(name)
        now = int(time.time())
        for conn in self.hub.subscribers(name):
            fmt = conn.format
            try:
                if conn.state == "longpoll":
                    conn.send_raw(fmt.render_bytes(text, id=DELETED_ID, channel=name, time=now))
                    conn.close()
                    continue
                conn.send_raw(fmt.render_bytes(text, id=DELETED_ID, channel=name, time=now))
                conn.unsubscribe(name)
                if not conn.channels:
                    conn.close(1000, "Channel deleted")
            except Exception:
                log.exception("delete notification failed for %r", conn)
        self.hub.clear_history(name)
        self.hub.drop_channel(name)
        self.emit("channel_destroyed", name)

    # -- the events channel (docs/protocol.md, Events channel: channel_created, channel_destroyed,
    #    client_subscribed, client_unsubscribed as JSON on limits.events_channel_id) ---------

    def is_events_channel(self, names) -> bool:
        ev = self.config.limits.events_channel_id
        return bool(ev) and ev in names

    def emit(self, kind: str, channel: str):
        ev = self.config.limits.events_channel_id
        if ev and channel != ev:
            doc = f'{{"type": "{kind}", "channel": "{json_str(channel)}"}}'
            self.publish_local(ev, doc.encode("utf-8"), None, None, False)

    def ensure(self, names):
        """Channels exist from their first subscriber or publish until the sweeper reclaims
        them (channel_inactivity_time without subscribers or stored messages)."""
        for n in names:
            if self.hub.channel(n) is None:
                self.hub.ensure_channel(n)
                self.emit("channel_created", n)
            else:
                self.hub.ensure_channel(n)

    def note_subscribed(self, names, events: bool = True):
        now = time.time()
        for n in names:
            ch = self.hub.channel(n)
            if ch is not None:
                ch.data = now           # last activity, for the sweeper
            if events:
                self.emit("client_subscribed", n)

    def note_unsubscribed(self, names):
        now = time.time()
        for n in names:
            ch = self.hub.channel(n)
            if ch is not None:
                ch.data = now           # last activity, for the sweeper
            self.emit("client_unsubscribed", n)

    def count_wildcard(self) -> int:
        prefix = self.config.limits.wildcard_channel_prefix
        return sum(1 for n in self.hub.channel_names() if prefix and n.startswith(prefix))
