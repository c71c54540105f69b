# Type stubs of gogin._core, the compiled surface (the names of __init__.py's __all__).
# Written from the .pyx signatures and docstrings; tests/core/test_surface.py checks that this
# file names exactly what the package exports, each class's public members included, and that
# every function's parameters match the compiled one's.

import asyncio
import enum
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeAlias, TypeVar, final, overload

__all__ = [
    "NO_CACHE_HEADERS", "READABLE", "WRITABLE", "Channel", "CloseCode", "Connection", "CoreError",
    "Format", "Hub", "Opcode", "Request", "Selector", "backends", "build_head",
    "build_head_start", "channel_id_problem", "default_backend", "format_http_date",
]

_T = TypeVar("_T")
# (name, value) pairs of a response head: each value is written with str()
_Headers: TypeAlias = Iterable[tuple[str, object]]
_Payload: TypeAlias = str | bytes | bytearray | memoryview  # str goes out as UTF-8
_EventField: TypeAlias = str | bytes                        # an event id or type (str: UTF-8)
_OnRequest: TypeAlias = Callable[[Connection, Request], object]
_OnMessage: TypeAlias = Callable[[Connection, int, bytes], object]  # (conn, opcode, payload)
_OnClose: TypeAlias = Callable[[Connection, str], object]           # (conn, reason)
_OnBody: TypeAlias = Callable[[Connection, Request], int | bytes]   # a body limit, or an answer

# -- hub.pyx ---------------------------------------------------------------------------------

class CoreError(Exception):
    """A call the connection's state does not allow (e.g. respond() after an upgrade)."""

@final
class Connection:
    """A client connection, as Python sees it.  Methods act on it; the hub does the I/O."""

    data: Any
    """The Python layer's per-connection state."""
    peer_allowed: bool
    """Its address passed the allowed networks (decided once per connection by Python)."""
    @property
    def id(self) -> int:
        """Unique per hub, never reused."""
    @property
    def fileno(self) -> int: ...
    @property
    def state(self) -> str:
        """head, body, pending, websocket, stream, longpoll, closing or closed."""
    @property
    def closed(self) -> bool: ...
    @property
    def format(self) -> Format | None:
        """The Format of this connection's subscriptions."""
    @property
    def queued_bytes(self) -> int: ...
    @property
    def channels(self) -> list[str]: ...
    @property
    def peer(self) -> tuple[str, int] | None:
        """(host, port) of the client, or None for a socket that is not TCP."""
    def respond(self, status: int, headers: _Headers = (), body: bytes | str = b"",
                keep_alive: bool | None = None) -> bool:
        """Answer the pending request.  Returns False if the client is already gone."""
    def upgrade(self, channels: Iterable[str] = (), format: Format | None = None,
                key: str | None = None, headers: _Headers = (), ping_interval: float = 0.0,
                ttl: float = 0.0, publish_to: Iterable[str] | None = None,
                max_message_size: int = 0, deflate: bool = False) -> bool:
        """Switch the pending request to WebSocket and subscribe it."""
    def start_stream(self, head: bytes, channels: Iterable[str] = (),
                     format: Format | None = None, ping_interval: float = 0.0,
                     ttl: float = 0.0, footer: bytes = b"") -> bool:
        """Answer the pending request with `head` and keep it open as a stream."""
    def hold(self, channels: Iterable[str], format: Format, timeout: float,
             timeout_response: bytes, head: bytes = b"", footer: bytes = b"") -> bool:
        """Long-poll: wait for the first message of `channels` or answer after `timeout`."""
    def end_hold(self) -> bool:
        """Answer a held long-poll now with its timeout response (polling: nothing new)."""
    def subscribe(self, channel: str, format: Format | None = None) -> bool:
        """Add a channel to an upgraded/streaming connection.  False if already on it."""
    def unsubscribe(self, channel: str) -> bool: ...
    def send(self, payload: _Payload, binary: bool = False) -> bool:
        """Send one message to this connection only: a WebSocket frame, or raw stream bytes."""
    def replay(self, channel: str, last: int = 0, since_id: int | None = None,
               since_time: int | None = None, since_tag: int = -1,
               event_id: _EventField | None = None,
               gap_text: bytes | None = None) -> tuple[int, bool]:
        """Queue stored messages of `channel` after a position; returns (sent, gap)."""
    def send_raw(self, data: bytes) -> bool:
        """Queue bytes exactly as given (a frame rendered by a Format, a prepared chunk)."""
    def close(self, code: int = 1000, reason: str | bytes = "") -> bool:
        """Close: WebSocket with a close frame, a stream with its footer, anything else now."""

@final
class Hub:
    """Sockets, the registry, the fanout and the timers of one gogin node (one thread)."""

    on_request: _OnRequest | None
    on_message: _OnMessage | None
    on_close: _OnClose | None
    on_body: _OnBody | None
    def __init__(self, on_request: _OnRequest | None = None,
                 on_message: _OnMessage | None = None, on_close: _OnClose | None = None, *,
                 max_connections: int = 10000, max_head_size: int = 8192,
                 max_headers: int = 100, max_body_size: int = 1 << 20,
                 max_message_size: int = 1 << 20, max_backpressure: int = 1 << 20,
                 backpressure_policy: str = "close", header_timeout: float = 10.0,
                 keepalive_timeout: float = 60.0, linger: float = 2.0, tick: float = 0.1,
                 flush_pacing: float = 1.0, backend: str | None = None) -> None: ...
    # limits, set once in __init__
    @property
    def max_connections(self) -> int: ...
    @property
    def max_head_size(self) -> int: ...
    @property
    def max_headers(self) -> int: ...
    @property
    def max_body_size(self) -> int: ...
    @property
    def max_message_size(self) -> int: ...
    @property
    def header_timeout(self) -> float: ...
    @property
    def keepalive_timeout(self) -> float: ...
    @property
    def linger(self) -> float: ...
    @property
    def tick(self) -> float: ...
    # counters
    @property
    def accepted(self) -> int: ...
    @property
    def rejected(self) -> int: ...
    @property
    def connections(self) -> int: ...
    @property
    def requests(self) -> int: ...
    @property
    def messages_in(self) -> int: ...
    @property
    def paced(self) -> int:
        """Write passes that waited (flush_pacing)."""
    # formats, listeners, loop integration
    def format(self, kind: str, template: str | bytes = "~text~", *, ping: bytes = b"",
               head: bytes = b"", chunked: bool = True, footer: bytes = b"", deflate: int = 0,
               deflate_min: int = 0) -> Format:
        """Register a wire format; subscribers of one format share every message's bytes."""
    @property
    def formats(self) -> list[Format]: ...
    def listen(self, host: str = "127.0.0.1", port: int = 0, *, backlog: int = 511,
               reuse_port: bool = False, sock: socket.socket | None = None) -> tuple[str, int]:
        """Listen on host:port (or take a bound socket); returns the bound (host, port)."""
    @property
    def sockets(self) -> list[socket.socket]: ...
    def fileno(self) -> int:
        """The selector's fd (-1 with the poll backend)."""
    @property
    def backend(self) -> str: ...
    def attach(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Run on an asyncio loop: the selector fd becomes a reader of the loop."""
    def detach(self) -> None: ...
    def poll(self, *args: object) -> int:
        """Handle every ready socket without blocking, then flush.  Called by the loop."""
    def flush(self) -> None:
        """End of a loop turn: parse pipelined bytes, post-publish work, write, report closes."""
    def adopt(self, fd: int) -> Connection:
        """Take over a connected socket fd as a new connection in the request-head state."""
    def adopt_pending(self, fd: int, keep_alive: bool = True) -> Connection:
        """adopt() straight into the pending state, as if a request had been read."""
    # publishing, channels, history
    @overload
    def publish(self, channels: str, payload: _Payload, event_id: _EventField | None = None,
                event_type: _EventField | None = None, binary: bool | None = None,
                create: bool = False) -> int: ...
    @overload
    def publish(self, channels: list[str] | tuple[str, ...], payload: _Payload,
                event_id: _EventField | None = None, event_type: _EventField | None = None,
                binary: bool | None = None,
                create: bool = False) -> list[tuple[Channel | None, int, bool]]: ...
    def publish(self, channels: Any, payload: _Payload, event_id: _EventField | None = None,
                event_type: _EventField | None = None, binary: bool | None = None,
                create: bool = False) -> Any:
        """Publish one message to one channel (returns the connections it was queued to) or to
        several in one call (returns (Channel, queued, created) per name); create: make a
        missing channel; binary None: text if the payload is UTF-8 (checked in the core)."""
    def publish_items(self, items: list[Any],
                      max_id_len: int) -> list[tuple[int, str]] | None:
        """The publisher WebSocket's JSON items (id, text, event_id, event_type) published in
        order in one call, as text, channels created on first publish, ids checked by the
        rules of channel_id_problem; None, or the (index, reason) of each item refused."""
    def publish_route(self, path: str, *, public: bool = False, api_key: str | None = None,
                      info: bool = True, events_channel: str | None = None,
                      max_channel_id_length: int = 1024, max_message_size: int = 1048576,
                      cors: bool = False) -> None:
        """Let the core answer the common publish to `path` (exact match) itself."""
    def clear_publish_routes(self) -> None: ...
    @property
    def publish_routes(self) -> dict[str, int]:
        """path -> requests the core answered there."""
    def channel(self, name: str) -> Channel | None:
        """The Channel object (subscribers, published, last_id, ...) or None."""
    def channel_names(self) -> list[str]: ...
    def ensure_channel(self, name: str, persistent: bool = True) -> Channel:
        """Create a channel with no subscribers (kept while persistent)."""
    def set_history(self, max_per_channel: int, ttl: float = 0.0, max_bytes: int = 0) -> None:
        """Store up to max_per_channel messages per channel for `ttl` seconds (0: no expiry)."""
    def has_replay(self, channel: str, last: int = 0, since_id: int | None = None,
                   since_time: int | None = None, since_tag: int = -1,
                   event_id: _EventField | None = None) -> bool:
        """Whether Connection.replay() with this position would send anything."""
    def render_stored(self, channel: str, fmt: Format, last: int = 0,
                      since_id: int | None = None, since_time: int | None = None,
                      since_tag: int = -1, event_id: _EventField | None = None,
                      gap_text: bytes | None = None) -> list[tuple[int, int, bytes]]:
        """The stored messages after a position rendered in `fmt`, as [(time, tag, bytes)]."""
    def event_position(self, channel: str, event_id: _EventField) -> tuple[int, int] | None:
        """(time, tag) of the newest stored message of `channel` with this event id, or None."""
    def clear_history(self, name: str) -> None:
        """Forget a channel's stored messages (the channel was deleted)."""
    def stored(self, name: str) -> list[tuple[int, int, int, str, bytes]]:
        """The stored messages of a channel as (id, time, tag, event_id, payload) tuples."""
    def drop_channel(self, name: str) -> None:
        """Forget a channel that is no longer wanted (kept only while it has subscribers)."""
    def subscribers(self, name: str) -> list[Connection]:
        """Connections subscribed to a channel (for admin, not hot paths)."""
    def stats(self) -> dict[str, int]:
        """Counters for /channels-stats and /metrics."""
    # a shared broker's receive path (gogin/brokers): envelopes numbered by the broker
    def deliver_batch(self, replies: list[list[bytes]],
                      prefix_len: int) -> list[tuple[str, bytes]] | None:
        """One PUB/SUB read's [kind, channel, envelope] messages (channel = prefix + id):
        each next one is stored and fanned out in the core; returns [(name, envelope)] of
        those the broker must handle (a jump, a new epoch, a deletion), or None."""
    def deliver_fill(self, name: str, envelopes: list[bytes]) -> int:
        """A channel's stored envelopes (oldest first), then those held meanwhile, delivered
        in id order with the gap signal (id -4) before a real gap.  Returns those delivered."""
    def sync_position(self, name: str, epoch: int, last_id: int) -> None:
        """After a fill: the broker's own (epoch, last id) for the channel; what no stored
        copy brought is a gap for this node's subscribers."""
    def set_gap_text(self, text: bytes) -> None:
        """The text of the gap signal (id -4) the broker path sends."""
    def broker_counters(self) -> dict[str, int]:
        """received, delivered, duplicates, unknown, malformed, held, gaps."""
    # a broker without shared numbering (NATS): this node numbers what it receives
    def set_position_mark(self, modulus: int, residue: int) -> None:
        """Tags are k * modulus + residue and times never go back; a resume from a tag
        that is not this node's gets the gap signal (0: plain push-stream tags)."""
    def deliver_local(self, items: list[Any]) -> list[tuple[str, bytes]] | None:
        """[name, envelope, ...] in arrival order, each numbered here and fanned out;
        returns the control envelopes (a deletion), or None."""
    def mark_gap(self, name: str, signal: bool = True) -> None:
        """What was published until now may be lost here: a replay from before reports
        it; signal: the gap signal (id -4) goes to the subscribers now."""
    # timers, shutdown
    def run_timers(self) -> None:
        """Advance the timing wheel to now and fire what is due."""
    def stop_listening(self) -> None: ...
    async def shutdown(self, timeout: float = 5.0) -> None:
        """Graceful stop: no more accepts, closes sent, wait up to `timeout`, then close()."""
    def close(self) -> None:
        """Close every socket now (WebSocket clients get a best-effort close 1001)."""

# -- responses.pyx ---------------------------------------------------------------------------

NO_CACHE_HEADERS: Final[tuple[tuple[str, str], ...]]
"""Cache-Control and Expires of every answer about now (the 101 included)."""

def build_head(status: int, headers: _Headers = (), content_length: int = -1,
               keep_alive: bool = True) -> bytes:
    """HTTP/1.1 response head as bytes (the body length, if given, adds Content-Length)."""

def build_head_start(status: int, headers: _Headers = ()) -> bytes:
    """The status line and header lines of an answer, without Content-Length, Connection or
    the blank line: the head of a long-poll format, which adds those per message."""

# -- pubroute.pyx ----------------------------------------------------------------------------

def channel_id_problem(name: str, max_len: int) -> tuple[int, str] | None:
    """None when `name` may be named as a channel id (not empty, not ALL, no '*', at most
    max_len code points, no control character, no '/', not '.' or '..', no lone surrogate),
    else (HTTP status, reason): the rules of every location."""

# -- formats.pyx -----------------------------------------------------------------------------

def format_http_date(t: int) -> str:
    """An HTTP date (RFC 9110 §5.6.7) of Unix time `t`, as the core writes Last-Modified."""

@final
class Format:
    """One wire format: a kind (websocket, eventsource, stream, longpoll) and a template.
    Made by Hub.format(); subscribers that share a Format share every message's bytes."""

    held: bool
    """Used by a long-poll hold(): each of its connections takes one message."""
    def __new__(cls, index: int, kind: str, template: str | bytes = b"~text~", *,
                ping: bytes = b"", head: bytes = b"", chunked: bool = True,
                footer: bytes = b"", deflate: int = 0, deflate_min: int = 0) -> Format: ...
    @property
    def index(self) -> int: ...
    @property
    def kind(self) -> int:
        """1 websocket, 2 eventsource, 3 stream, 4 longpoll."""
    @property
    def template(self) -> bytes: ...
    @property
    def head(self) -> bytes: ...
    @property
    def chunked(self) -> bool: ...
    @property
    def ping(self) -> bytes: ...
    @property
    def footer(self) -> bytes: ...
    @property
    def deflate(self) -> int: ...
    @property
    def deflate_min(self) -> int: ...
    def render_bytes(self, payload: bytes, *, id: int = 1, time: int = 0, tag: int = 0,
                     channel: str = "ch", event_id: bytes = b"", event_type: bytes = b"",
                     binary: bool = False) -> bytes:
        """Render one message as this format would send it (tests, the Python layer)."""

# -- registry.pyx ----------------------------------------------------------------------------

@final
class Channel:
    """A channel of the registry (Hub.channel, Hub.ensure_channel)."""

    persistent: bool
    """Kept in the registry while empty."""
    data: Any
    """The Python layer's per-channel state."""
    def __new__(cls, name: str) -> Channel: ...
    @property
    def name(self) -> str: ...
    @property
    def subscribers(self) -> int: ...
    @property
    def published(self) -> int:
        """Messages published to this channel."""
    @property
    def last_id(self) -> int:
        """Id of the last message (per-channel sequence)."""
    @property
    def epoch(self) -> int:
        """A shared broker's numbering of the ids (0: local)."""
    @property
    def last_time(self) -> int:
        """Seconds of the last message."""
    @property
    def last_tag(self) -> int:
        """Tag of the last message (count within last_time, per server)."""
    @property
    def created(self) -> float:
        """time.time() at creation."""
    @property
    def stored(self) -> int:
        """Messages stored for this channel."""
    @property
    def lost(self) -> int:
        """Messages evicted from this channel's storage (count, TTL or byte cap)."""

# -- http.pyx --------------------------------------------------------------------------------

class Request:
    """One parsed HTTP request head (given to on_request and on_body)."""

    body: bytes
    """Filled by the hub once the body arrived (b"" if none)."""
    peer: tuple[str, int] | None
    """(host, port), filled by the hub."""
    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str:
        """Raw request-target, e.g. "/ws/a/b?x=1"."""
    @property
    def path(self) -> str:
        """Percent-decoded path, e.g. "/ws/a/b"."""
    @property
    def query(self) -> str:
        """Raw query string without '?' ("" if none)."""
    @property
    def version(self) -> int:
        """10 or 11."""
    @property
    def headers(self) -> list[tuple[str, str]]:
        """[(lower-case name, value), ...] in arrival order, repeats kept."""
    @property
    def keep_alive(self) -> bool: ...
    @property
    def content_length(self) -> int:
        """-1 if no Content-Length header."""
    @overload
    def get(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
    @overload
    def get(self, name: str, default: _T) -> str | _T:
        """First value of header ``name`` (case-insensitive), or ``default``."""
    def get_all(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in arrival order."""
    def query_params(self) -> dict[str, str]:
        """Query string as a dict (percent-decoded, blank values kept, last value wins)."""

# -- frames.pyx ------------------------------------------------------------------------------

class Opcode(enum.IntEnum):
    """RFC 6455 §5.2 opcodes."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA

class CloseCode(enum.IntEnum):
    """RFC 6455 §7.4.1 close codes (and 1012/1013, IANA registry)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013

# -- selector.pyx ----------------------------------------------------------------------------

READABLE: Final[int]
"""Selector interest/event bit: readable, peer closed, or error."""
WRITABLE: Final[int]
"""Selector interest/event bit: writable."""

def backends() -> list[str]:
    """Names of the backends compiled in, most capable first (e.g. ['epoll', 'poll'])."""

def default_backend() -> str:
    """Name of the build's default backend (GOGIN_SELECTOR at build time, else the best)."""

@final
class Selector:
    """A thin class over the C backend contract in native/selector.h."""

    def __new__(cls, backend: str | None = None, maxfired: int = 1024) -> Selector: ...
    @property
    def name(self) -> str:
        """The backend's name: 'epoll', 'kqueue' or 'poll'."""
    @property
    def maxfired(self) -> int:
        """Most events one select() returns."""
    @property
    def closed(self) -> bool: ...
    def fileno(self) -> int:
        """The pollable fd of the kernel object (epoll/kqueue), or -1 for poll."""
    def register(self, fd: int, mask: int) -> None:
        """Add fd with interest mask (READABLE | WRITABLE, or 0). FileExistsError if present."""
    def modify(self, fd: int, mask: int) -> None:
        """Change fd's interest. FileNotFoundError (ENOENT) if fd is not registered."""
    def unregister(self, fd: int) -> None:
        """Remove fd; call before closing it. FileNotFoundError (ENOENT) if not registered."""
    def select(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """Wait up to timeout seconds (None: forever, <= 0: poll) and return [(fd, mask)]."""
    def close(self) -> None:
        """Release the kernel object (idempotent); registered fds are not closed."""
    def __enter__(self) -> Selector: ...
    def __exit__(self, *exc: object) -> bool: ...
