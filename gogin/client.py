"""gogin.client: an asyncio client for gogin (WebSocket through picows, EventSource and HTTP
publishing through aiohttp).

    from gogin.client import Client, Gap

    async with Client("http://127.0.0.1:9080") as client:
        await client.publish("room", "hello")
        async for item in client.subscribe(["room", "news"]):
            if isinstance(item, Gap):
                print("lost messages on", item.channel)
            else:
                print(item.channel, item.id, item.text)

A subscription reconnects by itself (exponential backoff, full jitter) and resumes every
channel from the last message it delivered, so a message published while it was away comes
once, in order; when gogin no longer stores that far back it yields a Gap first.  An HTTP 4xx
refusal (or WebSocket close 1008 with gogin's JSON reason) ends the iteration with Refused:
retrying would not change the answer.  Documented in docs/clients.md; the resume rules are
gogin.js's (gogin/static/gogin.js), and docs/protocol.md says what the server does.

Signed tokens (a `channels = "token"` location): ``Client(..., token=get_token)``, where
get_token() returns the JWT (or an awaitable of it) - asked for each connect (``?token=``)
and, on a WebSocket, again ``refresh_margin`` seconds before the token's exp (read from the
token without verifying it: gogin verifies), sent as ``{"token": "<jwt>"}``, so that gogin
does not close the connection when the first token ends.  An EventSource stream cannot take
a new token: it ends at the token's exp and reconnects with a new one, from its position.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import inspect
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, Optional, Sequence, Union
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

try:
    import picows
except ImportError:     # the EventSource and HTTP parts work without it: pip install gogin[client]
    picows = None

__all__ = ["Client", "Subscription", "Publisher", "Message", "Gap", "Position", "Refused",
           "PublishError", "retry_delay", "token_exp"]

GAP_ID = -4
CLOCK_SKEW = 5.0          # s our clock may be ahead of gogin's, until a live message tells
STABLE = 5.0              # s a connection lasted: it worked, the backoff starts over
TOKEN_EXPIRED = "Token expired."            # gogin's explain when a token ended
TOKEN_LASTED = 1.0        # s a token connection lasted: its end is not a refusal at connect
TokenSource = Union[str, Callable[[], Union[str, Awaitable[str]]]]


def token_exp(token: str) -> Optional[float]:
    """The `exp` claim of a JWT, read without verifying anything (only to know when to ask
    for the next one: gogin does the verifying); None when there is none to read."""
    try:
        payload = token.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = doc.get("exp") if isinstance(doc, dict) else None
        return float(exp) if isinstance(exp, (int, float)) else None
    except (IndexError, ValueError, binascii.Error, UnicodeDecodeError):
        return None


def refresh_at(exp: float, now: float, margin: float) -> float:
    """When to send the next token: `margin` s before exp, but never later than 3/4 of the
    way there (a token of 8 s is renewed after 6 s, not 30 s before its end)."""
    return exp - min(margin, max(0.0, exp - now) / 4)


@dataclass(frozen=True)
class Message:
    """A message as the default template renders it (binary WebSocket frames: ``data`` only)."""
    channel: Optional[str]
    id: Optional[int]
    text: Optional[str]
    data: bytes                     # the payload as received (the text, UTF-8 encoded)
    time: Optional[str]             # HTTP date of the publish, gogin's clock
    tag: Optional[int]              # 0 for the channel's first message of that second, then 1...
    event_id: Optional[str] = None
    event_type: Optional[str] = None

    @property
    def timestamp(self) -> Optional[int]:
        return _seconds(self.time)


@dataclass(frozen=True)
class Gap:
    """gogin's gap signal (id -4): messages of ``channel`` after our position are lost."""
    channel: str
    time: Optional[str]
    tag: Optional[int]
    text: str


@dataclass(frozen=True)
class Position:
    """Where a channel was left: the last message delivered (or gap seen)."""
    id: Optional[int]
    time: Optional[int]             # Unix seconds
    tag: int = -1
    event_id: Optional[str] = None

    def key(self) -> tuple[int, int]:
        return (self.time or 0, self.tag)


class Refused(Exception):
    """gogin (or the main server) refused the subscription: 4xx, or close 1008 + JSON."""

    def __init__(self, status: int, explain: Optional[str] = None, body: str = ""):
        super().__init__(f"refused: {status} {explain or body}".strip())
        self.status, self.explain, self.body = status, explain, body


class PublishError(Exception):
    def __init__(self, status: int, explain: Optional[str]):
        super().__init__(f"publish failed: {status} {explain or ''}".strip())
        self.status, self.explain = status, explain


def retry_delay(failures: int, min_delay: float, max_delay: float) -> float:
    """Full jitter: uniform in [0, min(max_delay, min_delay * 2**failures)] - clients dropped
    together (a restart) come back spread over the whole window."""
    return random.uniform(0, min(max_delay, min_delay * 2 ** min(failures, 30)))


def is_refusal(status: int) -> bool:
    # 408 and 429 are about timing and 5xx about the server: those are retried
    return 400 <= status < 500 and status not in (408, 429)


def _seconds(http_date: Optional[str]) -> Optional[int]:
    if not http_date:
        return None
    try:
        return int(email.utils.parsedate_to_datetime(http_date).timestamp())
    except (TypeError, ValueError, IndexError):
        return None


def parse(payload: Union[str, bytes], event_id: Optional[str] = None,
          event_type: Optional[str] = None) -> Union[Message, dict]:
    """A rendered message -> Message; gogin's own documents ({"error": ...}) -> dict."""
    data = payload.encode() if isinstance(payload, str) else payload
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict) or "channel" not in doc:
        if isinstance(doc, dict) and "error" in doc:
            return doc
        text = data.decode("utf-8", "replace")
        return Message(None, None, text, data, None, None, event_id, event_type)
    tag = doc.get("tag")
    text = doc.get("text")
    return Message(
        channel=doc["channel"], id=int(doc["id"]) if doc.get("id") is not None else None,
        text=text, data=(text or "").encode(), time=doc.get("time") or None,
        tag=int(tag) if str(tag).lstrip("-").isdigit() else None,
        event_id=doc.get("eventid") or event_id, event_type=event_type)


class Resume:
    """Per-channel positions and what to deliver.  gogin takes one position per request for
    all its channels (docs/protocol.md, catch-up), so the oldest is sent and what a channel
    already had is dropped on arrival; a gap about messages we had is dropped too."""

    def __init__(self, channels: Sequence[str], positions: Optional[Mapping[str, Position]] = None):
        self.channels = list(channels)
        self.positions: dict[str, Position] = dict(positions or {})
        self.opened_at: Optional[float] = None
        self.clock_ahead: Optional[float] = None
        self._pending: dict[str, Gap] = {}

    def query(self) -> Optional[dict[str, str]]:
        known = [p for c in self.channels if (p := self.positions.get(c)) and p.time is not None]
        best = min(known, key=Position.key, default=None)
        if self.opened_at is not None and len(known) < len(self.channels):
            # a channel without position had nothing while we were connected: what it may
            # have missed is newer than our last open (by gogin's clock)
            ahead = max(self.clock_ahead, 0.0) if self.clock_ahead is not None else CLOCK_SKEW
            t = int(self.opened_at - ahead) - 1
            if best is None or t < best.time:
                best = Position(None, t, -1)
        if best is not None:
            q = {"time": str(best.time)}
            if best.tag >= 0:
                q["tag"] = str(best.tag)
            return q
        with_event = [p.event_id for c in self.channels
                      if (p := self.positions.get(c)) and p.event_id]
        return {"last_event_id": with_event[-1]} if with_event else None

    def connected(self) -> None:
        self.opened_at = time.time()
        self._pending.clear()        # an undecided gap is sent again on the next connect

    def accept(self, msg: Message) -> list[Union[Message, Gap]]:
        """What to deliver for one received message (possibly nothing)."""
        if msg.id in (-1, -3):
            return []                             # ping, long-poll timeout
        if msg.channel is None:
            return [msg]                          # a custom template: no position to keep
        ch = msg.channel
        pos = self.positions.get(ch)
        here = Position(msg.id, msg.timestamp, msg.tag if msg.tag is not None else -1,
                        msg.event_id)
        if msg.id == GAP_ID:
            return self._gap(msg, here, pos)
        if msg.id == -2:                          # channel deleted: its ids start again
            self.positions.pop(ch, None)
            return [msg]
        if pos is not None and here.time is not None and pos.time is not None:
            if here.key() <= pos.key():
                return []                         # had it: the position was shared
        elif pos is not None and here.id is not None and pos.id is not None and here.id <= pos.id:
            return []
        out: list[Union[Message, Gap]] = []
        gap = self._pending.pop(ch, None)
        if gap is not None and not (pos and pos.id is not None and here.id == pos.id + 1):
            out.append(gap)
        self.positions[ch] = here
        if here.time is not None:
            ahead = time.time() - here.time      # >= the skew (latency, second truncation)
            if self.clock_ahead is None or ahead < self.clock_ahead:
                self.clock_ahead = ahead
        out.append(msg)
        return out

    def _gap(self, msg: Message, here: Position, pos: Optional[Position]) -> list:
        # dated just before the oldest stored message that follows: at or before our own
        # position it is about messages we had; with tag -1 the lost one may be our last:
        # the next message's id decides
        gap = Gap(msg.channel, msg.time, msg.tag, msg.text or "")
        if pos is not None and pos.time is not None and here.time is not None \
                and pos.key() >= here.key():
            return []
        if here.time is not None:
            self.positions[msg.channel] = Position(pos.id if pos else None, here.time, here.tag,
                                                   pos.event_id if pos else None)
        if pos is not None and pos.id is not None and here.tag == -1:
            self._pending[msg.channel] = gap
            return []
        return [gap]


class _End:
    def __init__(self, exc: Optional[BaseException] = None):
        self.exc = exc


def _need_picows() -> None:
    if picows is None:
        raise RuntimeError("gogin.client's WebSocket needs picows: pip install 'gogin[client]'")


class _Frames(picows.WSListener if picows is not None else object):
    """picows listener: text frames to a callback, the close frame's code and reason kept."""

    def __init__(self, on_text, on_binary=None):
        self.on_text, self.on_binary = on_text, on_binary
        self.close_code: Optional[int] = None
        self.close_reason = ""
        self.texts: asyncio.Queue = asyncio.Queue()

    def on_ws_frame(self, transport, frame):
        t = frame.msg_type
        if t == picows.WSMsgType.TEXT:
            self.on_text(frame.get_payload_as_bytes())
        elif t == picows.WSMsgType.BINARY and self.on_binary:
            self.on_binary(frame.get_payload_as_bytes())
        elif t == picows.WSMsgType.CLOSE:
            self.close_code = int(frame.get_close_code())
            self.close_reason = frame.get_close_message().decode("utf-8", "replace")
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class Subscription(AsyncIterator[Union[Message, Gap]]):
    """``async for item in subscription``: Message and Gap items, until close() or Refused."""

    def __init__(self, client: "Client", channels: Sequence[str], transport: str,
                 history: int, positions: Optional[Mapping[str, Position]]):
        if transport not in ("websocket", "eventsource"):
            raise ValueError("transport is 'websocket' or 'eventsource'")
        if not channels:
            raise ValueError("no channel")
        self.client = client
        self.transport = transport
        self.history = history
        self.resume = Resume(channels, positions)
        self.state = "idle"        # connecting | open | waiting | refused | closed
        self.next_retry_at: Optional[float] = None     # time.time() of the next try
        self.failures = 0
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task: Optional[asyncio.Task] = None
        self._ws: Optional["picows.WSTransport"] = None
        self._opened = asyncio.Event()
        self.token_exp: Optional[float] = None    # exp of the token gogin holds for us
        self.refreshes = 0                        # tokens gogin accepted on an open socket
        self._answers: Optional[asyncio.Queue] = None   # set while a refresh is awaited

    @property
    def positions(self) -> dict[str, Position]:
        """Per channel: where it was left (keep it to resume a later subscription)."""
        return self.resume.positions

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Union[Message, Gap]:
        self.start()
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)          # stays ended
            if item.exc is not None:
                raise item.exc
            raise StopAsyncIteration
        return item

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def wait_open(self, timeout: float = 10.0) -> None:
        self.start()
        await asyncio.wait_for(self._opened.wait(), timeout)

    async def __aenter__(self) -> "Subscription":
        self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.state = "closed"
        self._queue.put_nowait(_End())

    # -- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        c = self.client
        try:
            while True:
                self.state, self.next_retry_at = "connecting", None
                opened = False
                try:
                    if self.transport == "websocket":
                        opened = await self._websocket()
                    else:
                        opened = await self._eventsource()
                except Refused as e:
                    self.state = "refused"
                    self._queue.put_nowait(_End(e))
                    return
                except (OSError, asyncio.TimeoutError, aiohttp.ClientError, ConnectionError,
                        *((picows.WSError,) if picows is not None else ())):
                    opened = self._opened.is_set()   # a network failure: retried
                finally:
                    self._ws = None
                    self._opened.clear()
                # a server that accepts and drops at once is not working: back off anyway
                if opened and time.time() - (self.resume.opened_at or 0) >= STABLE:
                    self.failures = 0
                delay = retry_delay(self.failures, c.min_delay, c.max_delay)
                self.failures += 1
                self.state, self.next_retry_at = "waiting", time.time() + delay
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            if self._ws is not None:
                self._ws.disconnect(graceful=False)
            raise
        except Exception as e:                    # a bug, not a network failure: say so
            self.state = "closed"
            self._queue.put_nowait(_End(e))

    def _url(self, base_path: str, scheme: str, token: Optional[str] = None) -> str:
        query = self.resume.query()
        suffix = f".b{self.history}" if self.history and query is None else ""
        path = base_path.rstrip("/") + "/" + "/".join(ch + suffix for ch in self.resume.channels)
        if token is not None:
            query = {**(query or {}), "token": token}
        return self.client.url(path, query, scheme)

    async def _token(self) -> Optional[str]:
        """A token for this connect (None without a token source), and its exp."""
        token = await self.client.get_token()
        self.token_exp = token_exp(token) if token is not None else None
        return token

    def _token_ended(self, e: Refused, token: Optional[str], exp: Optional[float]) -> bool:
        """A refusal because the token we connected with has ended since: not final when a
        token source can give a new one.  A token refused at connect is final (gogin's
        refusal comes with the 101, a token's end after the connection lasted)."""
        opened = self.resume.opened_at
        return (token is not None and callable(self.client.token_source)
                and e.status == 401 and e.explain == TOKEN_EXPIRED
                and exp is not None and opened is not None and exp > opened
                and time.time() - opened >= TOKEN_LASTED)

    def _on_text(self, payload: bytes) -> None:
        if self._answers is not None and payload.startswith(b'{"token"'):
            try:
                doc = json.loads(payload)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and doc.get("token") in ("accepted", "refused"):
                self._answers.put_nowait(doc)
                return
        self._deliver(parse(payload))

    async def _refresh_loop(self, transport) -> None:
        """Sends a new token before gogin's copy ends; a refused one is asked for again (a
        little later) until the old one ends - gogin then closes with 1008 and the next
        connect asks for a token again."""
        c = self.client
        while self.token_exp is not None:
            now = time.time()
            await asyncio.sleep(max(0.0, refresh_at(self.token_exp, now, c.refresh_margin) - now))
            answer = None
            try:
                token = await c.get_token()
                if transport.is_disconnected:
                    return
                self._answers = asyncio.Queue()
                transport.send(picows.WSMsgType.TEXT, json.dumps({"token": token}).encode())
                answer = await asyncio.wait_for(self._answers.get(), c.timeout)
            except asyncio.CancelledError:
                raise
            except Exception:                     # no token now, or no answer: try again
                pass
            finally:
                self._answers = None
            if answer is not None and answer["token"] == "accepted":
                self.token_exp = float(answer["exp"])
                self.refreshes += 1
                continue
            left = self.token_exp - time.time()
            if left <= 0:
                return                            # gogin closes; the reconnect asks again
            await asyncio.sleep(min(max(1.0, left / 4), left))

    def _deliver(self, msg: Union[Message, dict]) -> None:
        if isinstance(msg, dict):
            return                                # gogin's own documents: publish errors
        for item in self.resume.accept(msg):
            self._queue.put_nowait(item)

    def _connected(self) -> None:
        self.resume.connected()
        self.state = "open"
        self._opened.set()

    async def _websocket(self) -> bool:
        _need_picows()
        c = self.client
        token = await self._token()
        exp = self.token_exp
        url = self._url(c.ws_path, "ws", token)
        try:
            transport, frames = await asyncio.wait_for(picows.ws_connect(
                lambda: _Frames(self._on_text,
                                lambda b: self._queue.put_nowait(
                                    Message(None, None, None, b, None, None))),
                url, extra_headers=c.headers(), websocket_handshake_timeout=c.timeout,
                enable_auto_ping=True, auto_ping_idle_timeout=c.ping_timeout,
                auto_ping_reply_timeout=c.ping_timeout), c.timeout + 1)
        except picows.WSInvalidStatusError as e:
            status = int(e.response.status) if e.response is not None else 0
            if is_refusal(status):
                headers = e.response.headers if e.response is not None else {}
                raise Refused(status, headers.get("X-Gogin-Explain"),
                              (e.raw_body or b"").decode("utf-8", "replace")) from None
            raise ConnectionError(str(e)) from None
        if frames is None:
            # picows reports a connection lost before the 101 as a handshake without listener
            raise ConnectionError("connection lost during the handshake")
        self._ws = transport
        self._connected()
        refresher = asyncio.ensure_future(self._refresh_loop(transport)) \
            if callable(c.token_source) and self.token_exp is not None else None
        try:
            if not transport.is_disconnected:     # a 1008 may come with the 101 already
                await transport.wait_disconnected()
        finally:
            if refresher is not None:
                refresher.cancel()
        if frames.close_code == 1008:
            try:
                doc = json.loads(frames.close_reason)
            except ValueError:
                doc = None                        # 1008 "slow consumer" & co: retried
            if isinstance(doc, dict) and doc.get("http_status"):
                e = Refused(int(doc["http_status"]), doc.get("explain"))
                if self._token_ended(e, token, exp):
                    return True                   # reconnect, with a new token
                raise e
        return True

    async def _eventsource(self) -> bool:
        c = self.client
        token = await self._token()
        exp = self.token_exp
        url = self._url(c.ev_path, "http", token)
        # no total timeout: the stream lasts; a silent one (gogin pings every 30 s) is dead
        timeout = aiohttp.ClientTimeout(total=None, connect=c.timeout, sock_read=c.read_timeout)
        headers = {**c.headers(), "Accept": "text/event-stream"}
        async with c.session().get(url, headers=headers, timeout=timeout) as r:
            if r.status != 200:
                body = await r.text(errors="replace")
                if is_refusal(r.status):
                    e = Refused(r.status, r.headers.get("X-Gogin-Explain"), body)
                    if self._token_ended(e, token, exp):
                        return True               # ended between our read and gogin's
                    raise e
                raise ConnectionError(f"HTTP {r.status}")
            self._connected()
            buf = b""
            event = _SseEvent()
            async for chunk in r.content.iter_any():
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    done = event.feed(line.rstrip(b"\r"))
                    if done is not None:
                        self._deliver(parse(*done))
        return True


class _SseEvent:
    """text/event-stream lines -> (data, id, type) at each blank line."""

    def __init__(self):
        self.data: list[bytes] = []
        self.id: Optional[str] = None
        self.type: Optional[str] = None

    def feed(self, line: bytes):
        if not line:
            if not self.data:
                return None
            out = (b"\n".join(self.data), self.id, self.type)
            self.data, self.id, self.type = [], None, None
            return out
        if line.startswith(b":"):
            return None                           # comment: gogin's ": -1" ping
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            self.data.append(value)
        elif name == b"id":
            self.id = value.decode("utf-8", "replace")
        elif name == b"event":
            self.type = value.decode("utf-8", "replace")
        return None


class Publisher:
    """The publisher WebSocket (``/pub`` without id): JSON items, published in order.  gogin
    answers only bad items: ``await publisher.errors.get()`` -> {"error": ..., "index": N}."""

    def __init__(self, transport: "picows.WSTransport", frames: _Frames):
        self._transport = transport
        self.errors = frames.texts

    def send(self, channels: Union[str, Sequence[str]], text: str, *,
             event_id: Optional[str] = None, event_type: Optional[str] = None) -> None:
        self.send_many([_item(channels, text, event_id, event_type)])

    def send_many(self, items: Sequence[dict]) -> None:
        """Items as {"id": ..., "text": ..., "event_id": ..., "event_type": ...}: one frame."""
        self._transport.send(picows.WSMsgType.TEXT, json.dumps(list(items)).encode())

    async def close(self) -> None:
        self._transport.send_close(picows.WSCloseCode.OK)
        self._transport.disconnect()
        await self._transport.wait_disconnected()


def _item(channels, text, event_id, event_type) -> dict:
    item: dict = {"id": channels if isinstance(channels, str) else list(channels), "text": text}
    if event_id is not None:
        item["event_id"] = event_id
    if event_type is not None:
        item["event_type"] = event_type
    return item


class Client:
    """A gogin server.  ``headers`` go with every request (Cookie / Authorization for the
    public auth-front locations: ``ws_path="/subscribe/"``); ``api_key`` is sent as
    X-Api-Key (publisher and non-public locations when server.api_key is set).

    ``token``: a signed token for a `channels = "token"` location (``ws_path="/token/"``), or
    a function returning one (or an awaitable of one), asked for at each connect and, on a
    WebSocket, ``refresh_margin`` s before the current token's exp (module docstring)."""

    def __init__(self, base_url: str, *, headers: Optional[Mapping[str, str]] = None,
                 api_key: Optional[str] = None, ws_path: str = "/ws/", ev_path: str = "/ev/",
                 pub_path: str = "/pub", min_delay: float = 1.0, max_delay: float = 30.0,
                 timeout: float = 10.0, ping_timeout: float = 20.0, read_timeout: float = 75.0,
                 token: Optional[TokenSource] = None, refresh_margin: float = 30.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError("base_url is http(s)://host:port")
        self._base = parts
        self._headers = dict(headers or {})
        if api_key:
            self._headers["X-Api-Key"] = api_key
        self.ws_path, self.ev_path, self.pub_path = ws_path, ev_path, pub_path
        self.min_delay, self.max_delay = min_delay, max_delay
        self.timeout, self.ping_timeout, self.read_timeout = timeout, ping_timeout, read_timeout
        self._session: Optional[aiohttp.ClientSession] = None
        self._subscriptions: list[Subscription] = []
        self.token_source = token
        self.refresh_margin = refresh_margin

    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    async def get_token(self) -> Optional[str]:
        """The token to present now: the fixed one, or what the token function gives."""
        source = self.token_source
        if source is None or isinstance(source, str):
            return source
        token = source()
        if inspect.isawaitable(token):
            token = await token
        if not isinstance(token, str) or not token:
            raise TypeError("the token function must return a non-empty str")
        return token

    def url(self, path: str, query: Optional[Mapping[str, str]] = None,
            scheme: str = "http") -> str:
        s = self._base.scheme
        if scheme == "ws":
            s = "wss" if s == "https" else "ws"
        return urlunsplit((s, self._base.netloc, path, urlencode(query or {}), ""))

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def subscribe(self, channels: Sequence[str], *, transport: str = "websocket",
                  history: int = 0,
                  positions: Optional[Mapping[str, Position]] = None) -> Subscription:
        """Messages of these channels (``history``: the N newest stored ones first, on the
        first connect; ``positions``: resume from a former subscription's)."""
        sub = Subscription(self, list(channels), transport, history, positions)
        self._subscriptions.append(sub)
        return sub

    async def publish(self, channels: Union[str, Sequence[str]], message: Union[str, bytes], *,
                      event_id: Optional[str] = None,
                      event_type: Optional[str] = None) -> dict:
        """POST /pub?id=...: returns gogin's channel info (numbers as strings)."""
        ids = channels if isinstance(channels, str) else "/".join(channels)
        headers = self.headers()
        if isinstance(message, str):
            body = message.encode()
            headers["Content-Type"] = "text/plain; charset=utf-8"
        else:
            body = bytes(message)
            headers["Content-Type"] = "application/octet-stream"
        if event_id is not None:
            headers["Event-Id"] = event_id
        if event_type is not None:
            headers["Event-Type"] = event_type
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with self.session().post(self.url(self.pub_path, {"id": ids}), data=body,
                                       headers=headers, timeout=timeout) as r:
            text = await r.text(errors="replace")
            if r.status != 200:
                raise PublishError(r.status, r.headers.get("X-Gogin-Explain"))
            return json.loads(text) if text.strip() else {}

    async def publisher(self) -> Publisher:
        """Open the publisher WebSocket (many messages, many channels, one connection)."""
        _need_picows()
        def factory() -> _Frames:
            f = _Frames(lambda b: f.texts.put_nowait(json.loads(b)))
            return f
        transport, frames = await asyncio.wait_for(picows.ws_connect(
            factory, self.url(self.pub_path, None, "ws"), extra_headers=self.headers(),
            websocket_handshake_timeout=self.timeout), self.timeout + 1)
        if frames is None or transport.is_disconnected:
            raise ConnectionError("connection lost during the handshake")
        return Publisher(transport, frames)

    async def close(self) -> None:
        for sub in self._subscriptions:
            await sub.close()
        self._subscriptions.clear()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
