"""The publisher location: POST/PUT publish, GET channel info, DELETE, and the publisher
WebSocket (docs/protocol.md, Publisher).  The common POST never reaches it: the core answers
it (Hub.publish_route, registered by the server for each publisher location)."""

from __future__ import annotations

import asyncio
import json
from typing import Optional, Union

import msgspec

from gogin import stats
from gogin._core import Opcode
from gogin.locations.base import (
    ChannelRow,
    ClientState,
    Location,
    answer_channels_info,
    broker_answer,
    websocket_key,
)
from gogin.locations.http import NO_CACHE
from gogin.publish import DELETED_TEXT, HttpError, check_channel_id, event_field_error, is_text

# Allow: of a 405, as the module sends it (ngx_http_push_stream_module.h): OPTIONS is answered
# (200, no Allow) but not listed
PUBLISHER_METHODS = "GET, POST, PUT, DELETE"


class PublisherLocation(Location):
    """POST/PUT publish, GET info, DELETE, and the publisher WebSocket (docs/protocol.md,
    Publisher)."""

    def body_limit(self, req) -> int:
        # a POST/PUT body is the message; a DELETE body the text of the deleted message
        if req.method in ("POST", "PUT", "DELETE"):
            return self.ctx.config.limits.max_message_size
        return 0

    def handle(self, conn, req):
        self.check_access(conn, req)
        key = websocket_key(req)
        params = req.query_params()
        ids = params.get("id")
        if key is not None:
            return self._websocket(conn, req, key, ids)
        if req.method == "OPTIONS":     # a CORS preflight (publisher.c: 200, no Allow)
            return self.http.respond(conn, 200, NO_CACHE)
        if req.method not in ("GET", "POST", "PUT", "DELETE"):
            raise HttpError(405, "Method not allowed.", [("Allow", PUBLISHER_METHODS)])
        if not ids:
            raise HttpError(400, "No channel id provided.")
        names = [n for n in ids.split("/") if n]
        if not names:
            raise HttpError(400, "No channel id provided.")
        for n in names:
            check_channel_id(n, self.ctx.config.limits)
        if len(names) != len(set(names)):
            names = list(dict.fromkeys(names))
        if req.method in ("POST", "PUT"):
            return self._publish(conn, req, names)
        if req.method == "GET":
            return self._info(conn, req, names)
        return self._delete(conn, req, names)

    def _publish(self, conn, req, names):
        body = req.body
        if not body:
            raise HttpError(400, "Empty post requests are not allowed.")
        if len(body) > self.ctx.config.limits.max_message_size:
            raise HttpError(413, "Message is too large.")
        if self.ctx.channels.is_events_channel(names):
            raise HttpError(403, "Channel id not authorized for this method.")
        # octet-stream is binary; anything else is text if UTF-8, decided in the core (publish)
        binary = True if _octet_stream(req.get("content-type")) else None
        event_id, event_type = req.get("event-id"), req.get("event-type")
        err = event_field_error("Event-Id", event_id) or \
            event_field_error("Event-Type", event_type)
        if err:
            raise HttpError(400, err)
        if self.ctx.broker.shared:
            binary = binary or not is_text(body, None)
            fut = self.ctx.broker.publish(names, body, event_id, event_type, binary)
            fut.add_done_callback(lambda f: self._published(conn, req, f))
            return
        rows = self.ctx.channels.publish_rows(names, body, event_id, event_type, binary)
        if not self.cfg.channel_info_on_publish:
            return self.http.respond(conn, 200, NO_CACHE)
        fmt = stats.negotiate(req.get("accept"))
        self.http.respond(conn, 200, [("Content-Type", fmt.content_type)] + NO_CACHE,
                          stats.channels_info(self.ctx, fmt, [ch for ch, _, _ in rows]))

    def _published(self, conn, req, fut):
        """A shared broker numbered and stored the message (or did not: 503); only now 200."""
        ctx, http = self.ctx, self.http
        exc = fut.exception()
        if exc is not None:
            if not conn.closed:
                http.error(conn, HttpError(503, "Broker unavailable."))
            return
        results = fut.result()
        if conn.closed:
            return
        if not self.cfg.channel_info_on_publish:
            return http.respond(conn, 200, NO_CACHE)
        rows = []
        for r in results:
            ch = ctx.hub.channel(r.channel)
            rows.append(ChannelRow(r.channel, r.published, r.stored,
                                   ch.subscribers if ch is not None else 0))
        fmt = stats.negotiate(req.get("accept"))
        http.respond(conn, 200, [("Content-Type", fmt.content_type)] + NO_CACHE,
                     stats.channels_info(ctx, fmt, rows))

    def _info(self, conn, req, names):
        answer_channels_info(self.ctx, conn, req, names)

    def _delete(self, conn, req, names):
        if self.ctx.channels.is_events_channel(names):
            raise HttpError(403, "Channel id not authorized for this method.")
        if self.ctx.broker.shared:
            task = asyncio.ensure_future(self._delete_shared(conn, req, names))
            self.ctx.track(task)
            return
        existing = [n for n in names if self.ctx.hub.channel(n) is not None]
        if not existing:
            raise HttpError(404, "Channel not found.")
        text = req.body or DELETED_TEXT
        for n in existing:
            self.ctx.channels.delete(n, text)
        self.http.respond(conn, 200, self.http.explain("Channel deleted.") + NO_CACHE)

    async def _delete_shared(self, conn, req, names):
        """Every node deletes it when the broker tells them (this one too)."""
        ctx, http = self.ctx, self.http
        text = req.body or DELETED_TEXT
        existed = await broker_answer(ctx, conn, asyncio.gather(
            *[ctx.broker.delete(n, text) for n in names]))
        if existed is None:
            return
        if not any(existed) and all(ctx.hub.channel(n) is None for n in names):
            return http.error(conn, HttpError(404, "Channel not found."))
        http.respond(conn, 200, http.explain("Channel deleted.") + NO_CACHE)

    def _websocket(self, conn, req, key, ids):
        names = None
        if ids:
            names = [n for n in ids.split("/") if n]
            for n in names:
                check_channel_id(n, self.ctx.config.limits)
            if self.ctx.channels.is_events_channel(names):
                raise HttpError(403, "Channel id not authorized for this method.")
            for n in names:
                self.ctx.hub.ensure_channel(n)
        conn.data = ClientState(self)
        if names and self.ctx.broker.shared:
            # each message goes to the broker first (on_message), like a POST
            conn.data.publish_to = names
            names = None
        # with ?id= the core publishes every message itself (no Python per message)
        conn.upgrade((), None, key=key, publish_to=names,
                     max_message_size=self.ctx.config.limits.max_message_size)

    def on_message(self, conn, opcode, data):
        """Publisher WebSocket without ?id=: JSON {"id", "text", "event_id", "event_type"}
        objects (or arrays of them), published in order; errors answer {"error", "index"}.
        With ?id= and a shared broker: each message is a message to those channels."""
        targets = getattr(conn.data, "publish_to", None)
        if targets:
            self.ctx.channels.publish_nowait(targets, data, binary=opcode == Opcode.BINARY,
                                             on_error=lambda e: _send_error(conn, e, 0))
            return
        try:
            items = _decode_publish_items(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            items = None
        if items is not None:
            # fast path: every item is well formed; only the channel rules are left to check
            if not self.ctx.broker.shared and not self.ctx.config.limits.events_channel_id:
                # all of it in the core, one call for the frame (no channel_created events
                # to interleave, no broker to hand each item to)
                errors = self.ctx.hub.publish_items(
                    items, self.ctx.config.limits.max_channel_id_length)
                if errors:
                    for i, err in errors:
                        conn.send(json.dumps({"error": err, "index": i}))
                return
            for i, item in enumerate(items):
                err = self._publish_checked(item.id, item.text, item.event_id, item.event_type,
                                            i, conn)
                if err:
                    conn.send(json.dumps({"error": err, "index": i}))
            return
        # slow path: find and report the bad items one by one
        try:
            doc = json.loads(data)
        except ValueError:
            conn.send(json.dumps({"error": "message is not JSON", "index": 0}))
            return
        items = doc if isinstance(doc, list) else [doc]
        for i, item in enumerate(items):
            err = self._publish_item(item, i, conn)
            if err:
                conn.send(json.dumps({"error": err, "index": i}))

    def _publish_item(self, item, index=0, conn=None) -> Optional[str]:
        if not isinstance(item, dict):
            return "each message is a JSON object"
        ids = item.get("id")
        text = item.get("text")
        return self._publish_checked(ids, text, item.get("event_id"), item.get("event_type"),
                                     index, conn)

    def _publish_checked(self, ids, text, event_id, event_type, index=0,
                         conn=None) -> Optional[str]:
        names = [ids] if isinstance(ids, str) else ids
        if not names or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return "id must be a channel id or a list of them"
        if not isinstance(text, str) or not text:
            return "text must be a non-empty string"
        err = event_field_error("event_id", event_id) or \
            event_field_error("event_type", event_type)
        if err:
            return err
        for n in names:
            try:
                check_channel_id(n, self.ctx.config.limits)
            except HttpError as e:
                return e.explain
        if self.ctx.channels.is_events_channel(names):
            return "Channel id not authorized for this method."
        try:
            payload = text.encode("utf-8")       # text from JSON: UTF-8, a text frame
        except UnicodeEncodeError:               # a lone surrogate escape ("\ud800")
            return "text is not valid Unicode"
        if self.ctx.broker.shared:
            self.ctx.broker.publish_nowait(names, payload, event_id, event_type, False,
                                           lambda e: _send_error(conn, e, index))
            return None
        self.ctx.channels.publish_rows(names, payload, event_id, event_type, False)
        return None



def _octet_stream(content_type: Optional[str]) -> bool:
    return bool(content_type) and \
        content_type.split(";")[0].strip().lower() == "application/octet-stream"


def _send_error(conn, text: str, index: int) -> None:
    if not conn.closed:
        conn.send(json.dumps({"error": text, "index": index}))


class PublishItem(msgspec.Struct, forbid_unknown_fields=False):
    """One item of the multi-channel publisher WebSocket (docs/protocol.md, Publisher)."""
    id: Union[str, list[str]]
    text: str
    event_id: Optional[str] = None
    event_type: Optional[str] = None


_item_decoder = msgspec.json.Decoder(Union[PublishItem, list[PublishItem]])


def _decode_publish_items(data) -> list:
    doc = _item_decoder.decode(data)
    return doc if isinstance(doc, list) else [doc]
