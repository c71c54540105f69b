"""The subscriber location in each mode: WebSocket, EventSource, streaming, long-polling and
polling (docs/protocol.md, Subscribers); channels from the path, the query, the main server
(auth front) or a signed token; resume and catch-up from history; client messages (client
publish policy, token refresh)."""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections import deque
from typing import Optional

import msgspec

from gogin import tokens
from gogin._core import Opcode, build_head_start, format_http_date
from gogin.auth import PublishRequest, SubscribeRequest
from gogin.brokers import BrokerUnavailable
from gogin.expiry import ExpiryWheel
from gogin.extensions import negotiate_deflate
from gogin.locations.base import (
    ALLOW_GET,
    WS_HEADERS_EXPLAIN,
    ClientState,
    Location,
    TokenState,
    jsonp_callback,
    position_headers,
    resume_position,
    websocket_key,
)
from gogin.locations.http import NO_CACHE
from gogin.publish import (
    GAP_TEXT,
    HttpError,
    check_channel_id,
    check_subscription,
    parse_channel_path,
    parse_granted,
)

log = logging.getLogger("gogin.server")

MAX_PENDING_PUBLISHES = 64     # client messages waiting for the main server, per connection


class TokenRefresh(msgspec.Struct, forbid_unknown_fields=True):
    token: str


_refresh_decoder = msgspec.json.Decoder(TokenRefresh)
STREAMING = ("websocket", "eventsource", "stream")     # modes whose connections stay open


def _refresh_message(data) -> Optional[str]:
    """The token of a {"token": "..."} message, None for any other message."""
    if not data.lstrip()[:1] == b"{":
        return None
    try:
        return _refresh_decoder.decode(data).token
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None



class SubscriberLocation(Location):
    """websocket, eventsource, long-polling, polling, streaming subscribers (docs/protocol.md,
    Subscribers);
    channels from the path, the query, or the main server (public auth-front locations)."""

    def __init__(self, ctx, cfg):
        super().__init__(ctx, cfg)
        hub = ctx.hub
        mode = cfg.mode
        # one timing structure for the ends of all of this location's token connections
        self.expiry_wheel = ExpiryWheel(self._token_expired) \
            if cfg.channels == "token" and mode in STREAMING else None
        if mode == "websocket":
            self.format = hub.format("websocket", cfg.template)
            self._deflate_formats = {}
        elif mode == "eventsource":
            self.format = hub.format("eventsource", cfg.template, ping=b": -1\n\n")
        elif mode == "stream":
            # push-stream's streaming pings are the template with id -1 and no text
            probe = hub.format("stream", cfg.template + "\r\n", chunked=True)
            self.stream_header = _chunk(cfg.header_template.encode("utf-8"))
            self.stream_footer = _chunk(cfg.footer_template.encode("utf-8")) + b"0\r\n\r\n"
            self.format = hub.format("stream", cfg.template + "\r\n", chunked=True,
                                     ping=probe.render_bytes(b"", id=-1, channel=""),
                                     footer=self.stream_footer)
        else:   # longpoll, polling: the answer's head is part of the shared bytes
            self._lp_formats = {}
            self._jsonp = None
            self.format = self.longpoll_format(None)
            # the template alone, for answers of several stored messages (_answer_stored):
            # rendered at catch-up time only, it has no subscribers and costs publish nothing
            self._body = hub.format("stream", cfg.template, chunked=False)

    def deflate_format(self, bits: int):
        """The location's format compressed with this window (one per window size in use:
        each message is compressed once per window size, whatever the subscribers)."""
        fmt = self._deflate_formats.get(bits)
        if fmt is None:
            fmt = self.ctx.hub.format("websocket", self.cfg.template, deflate=bits,
                                      deflate_min=self.cfg.compression_min_size)
            self._deflate_formats[bits] = fmt
        return fmt

    def longpoll_format(self, origin):
        """One long-poll format per CORS origin: the Access-Control headers are in the shared
        answer bytes (origins come from server.allowed_origins: a bounded set)."""
        fmt = self._lp_formats.get(origin)
        if fmt is None:
            hdrs = [("Content-Type", "text/plain; charset=utf-8")] + NO_CACHE + \
                self.http.cors_headers(origin)
            fmt = self.ctx.hub.format("longpoll", self.cfg.template,
                                      head=build_head_start(200, hdrs))
            self._lp_formats[origin] = fmt
        return fmt

    def handle(self, conn, req):
        self.check_access(conn, req)
        key = None
        # subscriber.c / websocket.c: GET only (HEAD too is 405); OPTIONS, a CORS preflight,
        # is answered 200 without Allow, except on WebSocket locations
        if req.method == "OPTIONS" and self.cfg.mode != "websocket":
            return self.http.respond(conn, 200, NO_CACHE)
        if req.method != "GET":
            raise HttpError(405, "Method not allowed.", [("Allow", ALLOW_GET)])
        if self.cfg.mode == "websocket":
            key = websocket_key(req)
            if key is None:
                raise HttpError(400, WS_HEADERS_EXPLAIN)
        try:
            self._subscribe(conn, req, key)
        except HttpError as e:
            if key is None:
                raise
            self.refuse_websocket(conn, key, e)

    def _subscribe(self, conn, req, key):
        limits = self.ctx.config.limits
        if self.cfg.channels == "token":
            return self._subscribe_token(conn, req, key)
        if self.cfg.channels == "main_server":
            hint = {r.name: r.backtrack for r in parse_channel_path(self.tail(req.path), limits)} \
                if self.tail(req.path) else {}
            task = asyncio.ensure_future(self._authorize(conn, req, key, hint))
            self.ctx.track(task)
            return
        if self.cfg.channels == "query":
            tail = req.query_params().get("id", "")
        else:
            tail = self.tail(req.path)
        refs = parse_channel_path(tail, limits)
        self._start(conn, req, key, [r.name for r in refs], ClientState(self),
                    {r.name: r.backtrack for r in refs})

    def _subscribe_token(self, conn, req, key):
        """Signed-token auth (gogin/tokens.py): the token alone decides, no main-server call.
        Channels named in the path must all be granted (403); none named: every granted one."""
        tail = self.tail(req.path)
        asked = parse_channel_path(tail, self.ctx.config.limits) if tail else []
        verifier = self.ctx.tokens
        grant = verifier.verify(tokens.token_of(req, verifier.cfg.cookie))
        names, backtrack = grant.select(asked)
        state = TokenState(self, user=grant.user, grant=grant)
        self._start(conn, req, key, names, state, backtrack)
        if self.expiry_wheel is not None and not conn.closed and conn.data is state:
            self._arm_expiry(conn, state)

    def _arm_expiry(self, conn, state):
        ExpiryWheel.remove(state.expiry, conn)
        state.expiry = self.expiry_wheel.add(conn, state,
                                             state.grant.exp + self.ctx.tokens.cfg.leeway)

    def _token_expired(self, conn, state):
        state.expiry = None
        if conn.closed or conn.data is not state:
            return
        if self.cfg.mode == "websocket":
            conn.close(1008, json.dumps({"http_status": 401, "explain": tokens.EXPIRED}))
        else:
            conn.close()             # a stream ends with its footer

    def _refresh_token(self, conn, state, token: str):
        """{"token": "<jwt>"} on a WebSocket: the new token, checked like the first one, moves
        the connection's end.  It adds no channel (each channel of the connection must still
        be granted) and keeps the user; a refused one leaves the old end in place."""
        try:
            grant = self.ctx.tokens.verify(token)
            if grant.user != state.user:
                raise HttpError(403, "Token is for another user.")
            granted = {r.name for r in grant.refs}
            if not set(conn.channels) <= granted:
                raise HttpError(403, "Token does not grant every channel of this connection.")
        except HttpError as e:
            conn.send(json.dumps({"token": "refused", "http_status": e.status,
                                  "explain": e.explain}))
            return
        state.grant = grant
        self._arm_expiry(conn, state)
        conn.send(json.dumps({"token": "accepted", "exp": grant.exp}))

    def refuse_websocket(self, conn, key, e: HttpError):
        """Channel errors of a valid WebSocket handshake (docs/protocol.md, Subscribers): upgrade,
        then close
        1008 with the status and explain as JSON - a browser's WebSocket cannot read the
        status of a refused handshake, but it can read a close reason."""
        self.http.cors_done(conn)
        conn.upgrade((), self.format, key=key, ping_interval=0)
        conn.close(1008, json.dumps({"http_status": e.status, "explain": e.explain}))

    async def _authorize(self, conn, req, key, hint):
        headers = {}
        for name in self.ctx.config.auth.forward_headers:
            value = req.get(name)
            if value is not None:
                headers[name] = value
        sreq = SubscribeRequest(method=req.method, uri=req.target, path=req.path,
                                query=req.query, client=(req.peer or ("", 0))[0],
                                mode=self.cfg.mode, channels=list(hint), headers=headers)
        decision = await self.ctx.auth.subscribe(sreq)
        if conn.closed:
            return
        try:
            if not decision.allowed:
                if decision.explain:
                    raise HttpError(decision.status, decision.explain)
                hdrs = [("Content-Type", decision.content_type)] if decision.content_type else []
                return self.http.respond(conn, decision.status, hdrs + NO_CACHE, decision.body)
            try:
                refs = parse_granted(decision.channels, self.ctx.config.limits)
            except HttpError as e:   # a broken grant is a broken answer: no upgrade, as a 502
                return self.http.error(conn, e)
            # backtrack: the main server's .bN, else the one the client asked for
            self._start(conn, req, key, [r.name for r in refs],
                        ClientState(self, user=decision.user, credentials=headers),
                        {r.name: r.backtrack or hint.get(r.name, 0) for r in refs})
        except HttpError as e:
            if key is not None and decision.allowed:
                self.refuse_websocket(conn, key, e)
            else:
                self.http.error(conn, e)

    def _start(self, conn, req, key, names, state, backtrack=None):
        check_subscription(self.ctx.hub, names, self.ctx.config.limits)
        waiting = self.ctx.broker.ready(names)
        if waiting is not None:
            # a shared broker subscribes the channels (and loads their history) first, so that
            # a resume reads a complete history and no live message slips in between
            task = asyncio.ensure_future(self._start_when_ready(waiting, conn, req, key, names,
                                                                state, backtrack))
            self.ctx.track(task)
            return
        self._started(conn, req, key, names, state, backtrack)

    async def _start_when_ready(self, waiting, conn, req, key, names, state, backtrack):
        try:
            await waiting
        except BrokerUnavailable:
            if not conn.closed:
                e = HttpError(503, "Broker unavailable.")
                if key is not None:
                    self.refuse_websocket(conn, key, e)
                else:
                    self.http.error(conn, e)
            return
        if conn.closed:
            return
        try:
            check_subscription(self.ctx.hub, names, self.ctx.config.limits)
            self._started(conn, req, key, names, state, backtrack)
            if isinstance(state, TokenState) and conn.data is state and \
                    self.cfg.mode in STREAMING:
                self._arm_expiry(conn, state)
        except HttpError as e:
            if key is not None:
                self.refuse_websocket(conn, key, e)
            else:
                self.http.error(conn, e)

    def _started(self, conn, req, key, names, state, backtrack):
        self.ctx.channels.ensure(names)
        # the registry's own name strings: an idle connection holds no copies of its own
        hub = self.ctx.hub
        names = [hub.channel(n).name for n in names]
        state.channels = tuple(names)
        conn.data = state
        cfg = self.cfg
        mode = cfg.mode
        if mode == "websocket":
            self.http.cors_done(conn)
            deflate = negotiate_deflate(req.get("sec-websocket-extensions")) \
                if cfg.compression else None
            if deflate is None:
                fmt, hdrs = self.format, ()
            else:
                fmt = self.deflate_format(deflate.server_bits)
                hdrs = [("Sec-WebSocket-Extensions", deflate.response)]
            conn.upgrade(names, fmt, key=key, headers=hdrs, ping_interval=cfg.ping_interval,
                         ttl=cfg.ttl, max_message_size=cfg.max_message_size or 0,
                         deflate=deflate is not None)
        elif mode == "eventsource":
            head = self.http.stream_head(conn, 200, [
                ("Content-Type", "text/event-stream; charset=utf-8"),
                ("Connection", "close")] + NO_CACHE)
            conn.start_stream(head + b": \n\n", names, self.format,
                              ping_interval=cfg.ping_interval, ttl=cfg.ttl)
        elif mode == "stream":
            head = self.http.stream_head(conn, 200, [
                ("Content-Type", cfg.content_type),       # text/html for a forever-iframe
                ("Transfer-Encoding", "chunked")] + NO_CACHE)
            conn.start_stream(head + self.stream_header, names, self.format,
                              ping_interval=cfg.ping_interval, ttl=cfg.ttl,
                              footer=self.stream_footer)
        else:   # longpoll, polling: answered at once when something is stored after the
            # position, else a long-poll waits for the next live message and a poll is 304
            state.channels = ()
            pos = self.position(req, names)
            if not self._answer_stored(conn, req, names, pos, backtrack or {}):
                if mode == "longpoll":
                    self._hold(conn, req, names, pos)
                else:
                    # nothing newer than the position: 304 that gives it back (subscriber.c)
                    self.http.respond(conn, 304, NO_CACHE + position_headers(req))
            # one answer each: no client events for them (a subscribed event per request,
            # with no matching unsubscribed one, would not balance)
            self.ctx.channels.note_subscribed(names, events=False)
            return
        self._catch_up(conn, req, names, backtrack or {})
        self.ctx.channels.note_subscribed(names)

    def position(self, req, names) -> Optional[dict]:
        """The client's position (resume_position), with a Last-Event-ID turned into the
        (time, tag) of that event's message: tags count per server, so that pair places the
        client in every channel of the request, not only in the one that knows the event id.
        An event id that none of them stores stays as it is (everything stored, gap signal)."""
        pos = resume_position(req)
        if pos is not None and "event_id" in pos:
            hub = self.ctx.hub
            found = [p for p in (hub.event_position(n, pos["event_id"]) for n in names) if p]
            if found:
                t, tag = max(found)
                return {"since_time": t, "since_tag": tag}
        return pos

    def _answer_stored(self, conn, req, names, pos, backtrack) -> bool:
        """Polling and long-polling: every stored message after the position, of every channel,
        in one answer, as the module's polling handler collects them (subscriber.c,
        polling_handler + send_old_messages); Last-Modified / Etag are those of the newest
        channel, so the next request resumes after all of them. False: nothing to send.

        The module writes channel after channel; here the channels' messages are merged by
        (time, tag), the server's publish order, so the last message of the answer is the
        newest one too: pushstream.js with JSONP resumes from that message's time and tag."""
        callback = jsonp_callback(req)       # a bad callback name is refused, news or not
        hub = self.ctx.hub
        runs, newest = [], None
        for name in names:
            where = pos if pos is not None else \
                ({"last": backtrack[name]} if backtrack.get(name) else None)
            if where is None:
                continue
            msgs = hub.render_stored(name, self._body, gap_text=GAP_TEXT, **where)
            if msgs:
                runs.append(msgs)
                ch = hub.channel(name)
                newest = max(newest or (0, -1), (ch.last_time, ch.last_tag))
        if not runs:
            return False
        bodies = [m[2] for m in heapq.merge(*runs, key=lambda m: (m[0], m[1]))]
        # the answer's position: utils.c, add_polling_headers
        hdrs = NO_CACHE + [("Last-Modified", format_http_date(newest[0])),
                           ("Etag", f"W/{newest[1]}")]
        if callback is None:
            ctype, body = "text/plain; charset=utf-8", b"".join(bodies)
        else:
            # utils.h: CALLBACK_INIT_CHUNK "([", CALLBACK_MID_CHUNK "," between messages,
            # CALLBACK_END_CHUNK "]);" (older versions of the module ended with a CRLF)
            ctype = "application/javascript; charset=utf-8"
            body = callback.encode() + b"([" + b",".join(bodies) + b"]);"
        self.http.respond(conn, 200, [("Content-Type", ctype)] + hdrs, body)
        return True

    def _hold(self, conn, req, names, pos):
        """Long-polling with nothing stored after the position: the next live message of the
        channels answers. JSONP (?callback=): a chunked javascript answer whose head goes out
        now, the message as a chunk of it, then `]);` (utils.h, CALLBACK_END_CHUNK)."""
        cfg = self.cfg
        origin = self.http.cors_done(conn)
        cors = self.http.cors_headers(origin)
        timeout = cfg.ttl or 30.0
        state = conn.data
        if isinstance(state, TokenState):       # a held request never outlives its token
            timeout = max(0.001, min(timeout, self.ctx.tokens.remaining(state.grant)))
        callback = jsonp_callback(req)
        if callback is not None:
            head = self.http.head(200, [("Content-Type", "application/javascript; charset=utf-8"),
                                        ("Transfer-Encoding", "chunked")] + NO_CACHE + cors)
            end = _chunk(b"]);") + b"0\r\n\r\n"
            conn.hold(names, self.jsonp_format(), timeout, end,
                      head=head + _chunk(callback.encode() + b"(["), footer=end)
            return
        fmt = self.longpoll_format(origin)
        if cfg.timeout_with_body:
            # push-stream's timeout message (id -3), dated at the client's position so that
            # resuming from it neither skips nor repeats anything
            pos = pos or {}
            ch = self.ctx.hub.channel(names[0])
            t = pos.get("since_time", ch.last_time if ch else int(time.time()))
            tag = pos.get("since_tag", ch.last_tag if ch else 0)
            timeout_answer = fmt.render_bytes(b"", id=-3, channel=names[0], time=t, tag=tag)
        else:
            timeout_answer = self.http.head(304, NO_CACHE + cors, content_length=0)
        conn.hold(names, fmt, timeout, timeout_answer)

    def jsonp_format(self):
        if self._jsonp is None:
            self._jsonp = self.ctx.hub.format("stream", self.cfg.template, chunked=True)
        return self._jsonp

    def _catch_up(self, conn, req, names, backtrack):
        """Stored messages first, then live ones (docs/protocol.md, Message storage), one channel
        after the other:
        the replay happens in the same call as the subscription, so nothing published in
        between is missed or doubled."""
        pos = self.position(req, names)
        for name in names:
            if pos is not None:
                conn.replay(name, gap_text=GAP_TEXT, **pos)
            elif backtrack.get(name):
                conn.replay(name, last=backtrack[name], gap_text=GAP_TEXT)

    # -- client messages (docs/protocol.md: Subscribers, Main-server callbacks) -------------

    def on_message(self, conn, opcode, data):
        state = conn.data
        if isinstance(state, TokenState) and opcode == Opcode.TEXT:
            token = _refresh_message(data)
            if token is not None:
                return self._refresh_token(conn, state, token)
        policy = self.cfg.client_publish
        if policy == "off":
            conn.close(1008, "client messages are not accepted on this location")
            return
        binary = opcode == Opcode.BINARY
        if policy == "open":
            self.ctx.channels.publish_nowait(conn.channels, data, binary=binary)
            return
        if state.pending is None:
            state.pending = deque()
        if len(state.pending) >= MAX_PENDING_PUBLISHES:
            conn.close(1008, "too many messages waiting for authorization")
            return
        state.pending.append((data, binary))
        if not state.busy:
            state.busy = True
            self.ctx.track(asyncio.ensure_future(self._drain(conn, state)))

    async def _drain(self, conn, state):
        """One callback at a time per connection, so a client's messages keep their order."""
        try:
            while state.pending and not conn.closed:
                data, binary = state.pending.popleft()
                channels = conn.channels
                decision = await self.ctx.auth.publish(PublishRequest(
                    user=state.user, channels=channels, payload=data, binary=binary,
                    headers=state.credentials or {}, client=(conn.peer or ("", 0))[0]))
                if decision.action == "publish":
                    if decision.payload is None:
                        payload, as_binary = data, binary
                    else:     # a replacement body: binary only if it is not UTF-8
                        payload, as_binary = decision.payload, None
                    targets = channels if decision.channels is None else \
                        self._valid_targets(decision.channels)
                    if not targets or self.ctx.channels.is_events_channel(targets):
                        continue
                    self.ctx.channels.publish_nowait(targets, payload, binary=as_binary)
                elif decision.action == "reject" and not conn.closed:
                    conn.send(json.dumps({"error": "publish rejected",
                                          "status": decision.status}))
        finally:
            state.busy = False


    def _valid_targets(self, names):
        """Channels named by the main server's answer (X-Gogin-Channels), checked like any id."""
        out = []
        for n in names:
            try:
                check_channel_id(n, self.ctx.config.limits)
            except HttpError:
                log.warning("publish callback named an invalid channel %r; skipped", n)
                continue
            out.append(n)
        return out



def _chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (nothing for empty data: an empty chunk would end the stream)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
