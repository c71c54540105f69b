"""Configuration: msgspec Structs read from TOML, then the environment, then CLI flags.

Every key has a default, so an empty file (or none) gives the defaults of
docs/configuration.md.
A bad value stops startup with a ConfigError that names the key (``limits.max_head_size``).

Environment: ``GOGIN_<SECTION>_<KEY>`` for the scalar keys of server, limits, auth, broker and
nats (``GOGIN_SERVER_LISTEN=127.0.0.1:9000,[::1]:9000``, ``GOGIN_LIMITS_MAX_BACKPRESSURE=65536``),
``GOGIN_AUTH_TOKEN_<KEY>`` for auth.token (``GOGIN_AUTH_TOKEN_KEY``: a secret kept out of files),
plus the short forms ``GOGIN_AUTH_URL`` and ``GOGIN_AUTH_PUBLISH_URL`` (docs/protocol.md,
Main-server callbacks).
"""

from __future__ import annotations

import ipaddress
import math
import os
from typing import Literal, Optional

import msgspec

DEFAULT_TEMPLATE = ('{"id":~id~,"channel":"~channel-json~","text":"~text-json~",'
                    '"tag":"~tag~","time":"~time~","eventid":"~event-id-json~"}')

# The forever-iframe ("stream" mode of pushstream.js), as the module's example configuration
# serves it on /sub/ (misc/nginx.conf): a page whose script registers the frame with the parent
# page's PushStream, then one script per message calling p(id, channel, text, eventid, time,
# tag), the function pushstream.js gives the frame (StreamWrapper.register / process).  The
# frame relaxes document.domain the way pushstream.js relaxes the parent's (extract_xss_domain:
# an IP stays as it is, else the last labels of the host name), or the two could not talk where
# browsers still honour document.domain.  Strings are JSON-escaped, so quotes, backslashes and
# newlines stay inside them; a "</script" in a text still ends the script (docs/protocol.md).
IFRAME_HEADER = (
    '<html><head><meta charset="utf-8"><script>\n'
    'try { var h = location.hostname, parts = h.split(".");\n'
    '  document.domain = /^(\\d{1,3}\\.){3}\\d{1,3}$/.test(h) ? h : parts.slice(-Math.max('
    'parts.length - 1, /(\\w{4,}\\.\\w{2}|\\.\\w{3,})$/.test(h) ? 2 : 3)).join(".");\n'
    '} catch (e) {}\n'
    'parent.PushStream.register(this);\n'
    '</script></head><body>')
IFRAME_TEMPLATE = ('<script>p(~id~,"~channel-json~","~text-json~","~event-id-json~",'
                   '"~time~","~tag~");</script>')
IFRAME_FOOTER = "</body></html>"


MAX_WORKERS = 256       # server.workers: a typo (--workers 4000) should not fork a host to death


class ConfigError(Exception):
    """A configuration problem; the message names the key."""


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class Server(_Section):
    listen: list[str] = msgspec.field(default_factory=lambda: ["127.0.0.1:9080"])
    backlog: int = 511
    reuse_port: bool = False
    workers: int = 1              # processes on the same port (gogin/supervisor.py); 1: this one
    max_connections: int = 10000
    allowed_networks: list[str] = msgspec.field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    api_key: Optional[str] = None
    push_stream_explain_header: bool = False     # also send X-Nginx-PushStream-Explain
    allowed_origins: list[str] = msgspec.field(default_factory=list)   # CORS; ["*"]: any
    shutdown_timeout: float = 5.0
    log_level: str = "info"
    tick: float = 0.1
    flush_pacing: float = 1.0     # an expensive write pass delays the next by this x its cost


class Limits(_Section):
    max_head_size: int = 8192
    max_headers: int = 100
    max_body_size: int = 1 << 20
    max_message_size: int = 1 << 20
    max_backpressure: int = 1 << 20
    backpressure_policy: Literal["close", "drop"] = "close"
    header_timeout: float = 10.0
    keepalive_timeout: float = 60.0
    max_channel_id_length: int = 1024
    max_number_of_channels: int = 100            # per subscribe request
    max_subscribers_per_channel: int = 0         # 0: no limit
    wildcard_channel_prefix: str = "broad_"
    wildcard_channel_max_qtd: int = 3
    authorized_channels_only: bool = False
    channel_inactivity_time: float = 30.0        # a channel nobody uses is forgotten after it
    max_messages_stored_per_channel: int = 100   # message storage per channel; 0: off
    message_ttl: float = 1800.0                  # stored messages expire after it; 0: never
    max_stored_bytes: int = 64 << 20             # all stored messages, all channels; 0: no cap
    events_channel_id: str = ""                  # channel of channel/client events; "": off


class TokenAuth(_Section):
    """[auth.token]: signed-token (JWT) auth of the `channels = "token"` locations."""
    algorithms: list[str] = msgspec.field(default_factory=lambda: ["HS256"])
    key: Optional[str] = None                    # HMAC secret, or a PEM public key
    key_file: Optional[str] = None               # ... read from a file
    jwks_file: Optional[str] = None              # a JWKS document (public keys by kid)
    audience: Optional[str] = None               # required `aud`, if set
    issuer: Optional[str] = None                 # required `iss`, if set
    cookie: str = "gogin_token"                  # cookie holding the token
    leeway: float = 0.0                          # seconds of clock skew allowed on exp/nbf
    cache_bytes: int = 32 << 20                  # verified tokens kept (memory bound); 0: off


class Auth(_Section):
    url: Optional[str] = None                    # subscribe callback
    publish_url: Optional[str] = None            # client-publish callback
    timeout: float = 5.0
    cache_ttl: float = 0.0                       # 0: no decision cache
    cache_size: int = 10000
    max_answer_size: int = 65536                 # bytes of a subscribe answer (and of a
                                                 # denial's body); read past it: 502
    forward_headers: list[str] = msgspec.field(default_factory=lambda: [
        "cookie", "authorization", "user-agent", "origin", "x-forwarded-for", "x-real-ip"])
    token: Optional[TokenAuth] = None            # signed-token auth, off without the section


class Broker(_Section):
    """[broker]: how nodes share channels.  "memory": this process only (the default, nothing
    to run); "redis": every node with the same url and key_prefix shares channels, history
    and resume; "nats": nodes share channels over core NATS subjects, history and resume stay
    per node (docs/deployment.md)."""
    type: Literal["memory", "redis", "nats"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"        # redis:// or rediss:// (TLS), password, db;
                                                 # nats:// or tls:// (type nats; this default
                                                 # then means nats://127.0.0.1:4222)
    key_prefix: str = "gogin"                    # every key and PUB/SUB channel starts so
    pubsub_connections: int = 4                  # SUBSCRIBE connections, channels by hash
    publish_connections: int = 2                 # connections publishes are pipelined over
    connect_timeout: float = 5.0                 # seconds to connect (and to wait at start)
    reconnect_max_delay: float = 10.0            # backoff cap between reconnect attempts
    ping_interval: float = 10.0                  # idle probe of each connection
    node_ttl: float = 15.0                       # a node's subscriber counts outlive it so long


class Nats(_Section):
    """[nats]: gogin takes notifications from a NATS subject and publishes them into its
    channels (docs/deployment.md, Ingest from NATS).  Off while url is unset."""
    url: Optional[str] = None                    # nats:// or tls:// (comma-separated: a cluster)
    ingest_subject: str = "notify.>"             # subject subscribed to (wildcards allowed)
    ingest_channel: Literal["subject", "message"] = "subject"   # where the channel comes from
    ingest_subject_prefix: str = "notify."       # "subject": channel = subject minus this
    ingest_durable: str = ""                     # JetStream durable pull consumer; "": core NATS
    ingest_stream: str = ""                      # the stream holding ingest_subject (JetStream)
    ingest_batch: int = 1024                     # messages per JetStream pull request
    ingest_ack_wait: float = 30.0                # AckWait of a consumer gogin creates
    ingest_replay: int = 10000                   # at start: the stream's last N messages stored
    ingest_required: bool = True                 # NATS down at start: refuse to start
    queue_group: str = ""                        # core NATS queue group (one node per message)
    user: Optional[str] = None
    password: Optional[str] = None               # never logged
    token: Optional[str] = None                  # never logged
    creds_file: Optional[str] = None             # NATS .creds (JWT + nkey; needs nkeys)
    nkeys_seed_file: Optional[str] = None        # an nkey seed file (needs nkeys)
    tls_ca_file: Optional[str] = None            # CA bundle that signed the server certificate
    tls_cert_file: Optional[str] = None          # client certificate (mutual TLS) ...
    tls_key_file: Optional[str] = None           # ... and its key
    tls_hostname: Optional[str] = None           # name checked in the server certificate
    connect_timeout: float = 5.0                 # seconds per connection attempt
    reconnect_time_wait: float = 2.0             # seconds between reconnect attempts (+ jitter)


Role = Literal["publisher", "subscriber", "stats", "health", "metrics", "static"]
Mode = Literal["websocket", "eventsource", "longpoll", "polling", "stream"]


class Location(_Section):
    path: str
    role: Role
    mode: Mode = "websocket"
    channels: Literal["path", "query", "main_server", "token"] = "path"
    template: str = DEFAULT_TEMPLATE
    public: bool = False              # open to every address (else allowed networks + api key)
    client_publish: Literal["off", "main_server", "open"] = "off"
    ping_interval: float = 30.0       # 0: no pings
    ttl: float = 0.0                  # subscriber_connection_ttl; 0: none
    max_message_size: Optional[int] = None     # client messages on this location
    compression: bool = False                  # websocket: accept permessage-deflate offers
    compression_min_size: int = 128            # ... and compress messages from this size
    channel_info_on_publish: bool = True       # publisher: answer with the channel info
    root: Optional[str] = None                 # static: directory served
    header_template: str = ""                  # stream: sent first (as a chunk)
    footer_template: str = ""                  # stream: sent last, before the final chunk
    content_type: str = "text/plain; charset=utf-8"   # stream: Content-Type of the answer
    timeout_with_body: bool = False            # long-poll timeout: 200 + message id -3, not 304


def default_locations() -> list[Location]:
    L = Location
    return [
        L(path="/pub", role="publisher", channels="query"),
        L(path="/ws/", role="subscriber", mode="websocket"),
        L(path="/sub/", role="subscriber", mode="stream"),
        # pushstream.js's "stream" mode (urlPrefixStream: "/iframe"); pings more often than
        # its default pingtimeout (30 s) so that a quiet channel does not look dead
        L(path="/iframe/", role="subscriber", mode="stream", template=IFRAME_TEMPLATE,
          header_template=IFRAME_HEADER, footer_template=IFRAME_FOOTER,
          content_type="text/html; charset=utf-8", ping_interval=10.0),
        L(path="/ev/", role="subscriber", mode="eventsource"),
        L(path="/lp/", role="subscriber", mode="longpoll"),
        L(path="/poll/", role="subscriber", mode="polling"),
        L(path="/channels-stats", role="stats", channels="query"),
        L(path="/subscribe/", role="subscriber", mode="websocket", channels="main_server",
          public=True, client_publish="main_server"),
        L(path="/subscribe-ev/", role="subscriber", mode="eventsource", channels="main_server",
          public=True),
        L(path="/subscribe-lp/", role="subscriber", mode="longpoll", channels="main_server",
          public=True),
        L(path="/subscribe-stream/", role="subscriber", mode="stream", channels="main_server",
          public=True),
        L(path="/metrics", role="metrics"),
        L(path="/healthz", role="health", public=True),
    ]


class Config(_Section):
    server: Server = msgspec.field(default_factory=Server)
    limits: Limits = msgspec.field(default_factory=Limits)
    auth: Auth = msgspec.field(default_factory=Auth)
    broker: Broker = msgspec.field(default_factory=Broker)
    nats: Nats = msgspec.field(default_factory=Nats)
    locations: list[Location] = msgspec.field(default_factory=default_locations)
    demo: bool = False

    def validate(self) -> "Config":
        """Checks msgspec's types can't express; raises ConfigError naming the key."""
        # TOML has nan and inf; nan passes every "<= 0" / "> 10" test below: refuse it first.
        sections = [("server", self.server), ("limits", self.limits), ("auth", self.auth),
                    ("broker", self.broker), ("nats", self.nats)]
        sections += [(f"locations[{i}]", loc) for i, loc in enumerate(self.locations)]
        for where, section in sections:
            for name in section.__struct_fields__:
                value = getattr(section, name)
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"{where}.{name}: must be a finite number, not {value}")
        for i, addr in enumerate(self.server.listen):
            parse_listen(addr, f"server.listen[{i}]")
        for i, net in enumerate(self.server.allowed_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as e:
                raise ConfigError(f"server.allowed_networks[{i}]: {e}") from None
        positive = [("server.backlog", self.server.backlog),
                    ("server.workers", self.server.workers),
                    ("server.max_connections", self.server.max_connections),
                    ("server.tick", self.server.tick)]
        positive += [(f"limits.{k}", getattr(self.limits, k)) for k in (
            "max_head_size", "max_headers", "max_body_size", "max_message_size",
            "max_backpressure", "header_timeout", "keepalive_timeout", "max_channel_id_length",
            "max_number_of_channels")]
        positive += [("auth.timeout", self.auth.timeout),
                     ("auth.max_answer_size", self.auth.max_answer_size)]
        if not 0 <= self.server.flush_pacing <= 10:
            raise ConfigError("server.flush_pacing: must be in [0, 10], not "
                              f"{self.server.flush_pacing!r}")
        if self.server.workers > MAX_WORKERS:
            raise ConfigError(f"server.workers: at most {MAX_WORKERS}, not "
                              f"{self.server.workers!r}")
        if self.server.tick > 10:
            raise ConfigError(f"server.tick: at most 10 seconds, not {self.server.tick!r}")
        for key, value in positive:
            if value <= 0:
                raise ConfigError(f"{key}: must be positive, not {value!r}")
        for key in ("max_subscribers_per_channel", "wildcard_channel_max_qtd",
                    "channel_inactivity_time", "max_messages_stored_per_channel",
                    "message_ttl", "max_stored_bytes"):
            if getattr(self.limits, key) < 0:
                raise ConfigError(f"limits.{key}: must be >= 0")
        if self.server.log_level.lower() not in ("debug", "info", "warning", "error", "critical"):
            raise ConfigError(f"server.log_level: unknown level {self.server.log_level!r}")
        for key in ("url", "publish_url"):
            url = getattr(self.auth, key)
            if url is not None and not url.startswith(("http://", "https://")):
                raise ConfigError(f"auth.{key}: must be an http:// or https:// URL, not {url!r}")
        b = self.broker
        if b.type == "redis" and not b.url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"broker.url: must be a redis://, rediss:// or unix:// URL, "
                              f"not {_shown_url(b.url)!r}")
        if b.type == "nats" and b.url != "redis://127.0.0.1:6379/0":   # that default: NATS's
            for u in b.url.split(","):
                if not u.strip().startswith(("nats://", "tls://")):
                    raise ConfigError(f"broker.url: must be nats:// or tls:// URLs (comma-"
                                      f"separated), not {_shown_url(b.url)!r}")
        for key in ("pubsub_connections", "publish_connections", "connect_timeout",
                    "reconnect_max_delay", "ping_interval", "node_ttl"):
            if getattr(b, key) <= 0:
                raise ConfigError(f"broker.{key}: must be positive, not {getattr(b, key)!r}")
        if not b.key_prefix or any(c in b.key_prefix for c in "{}* \r\n"):
            raise ConfigError(f"broker.key_prefix: must be a non-empty word, not "
                              f"{b.key_prefix!r}")
        _check_nats(self.nats)
        if self.auth.token is not None:
            from gogin.tokens import TokenVerifier     # loads the keys: a bad one stops here
            TokenVerifier(self.auth.token, self.limits)
        seen = set()
        for i, loc in enumerate(self.locations):
            where = f"locations[{i}]"
            if not loc.path.startswith("/"):
                raise ConfigError(f"{where}.path: must start with '/', not {loc.path!r}")
            if loc.path in seen:
                raise ConfigError(f"{where}.path: {loc.path!r} is configured twice")
            seen.add(loc.path)
            if loc.ping_interval < 0 or loc.ttl < 0:
                raise ConfigError(f"{where}: ping_interval and ttl must be >= 0")
            if "\r" in loc.content_type or "\n" in loc.content_type:
                raise ConfigError(f"{where}.content_type: must not contain CR or LF")
            if loc.channels == "token":
                if loc.role != "subscriber":
                    raise ConfigError(f"{where}.channels: \"token\" is for subscriber locations")
                if self.auth.token is None:
                    raise ConfigError(f"{where}.channels: \"token\" needs an [auth.token] "
                                      "section (algorithms and key)")
            if loc.role == "static" and not loc.root:
                raise ConfigError(f"{where}.root: a static location needs a directory")
            if loc.client_publish != "off" and (loc.role != "subscriber"
                                                 or loc.mode != "websocket"):
                raise ConfigError(f"{where}.client_publish: only websocket subscriber "
                                  "locations take client messages")
            if loc.compression and (loc.role != "subscriber" or loc.mode != "websocket"):
                raise ConfigError(f"{where}.compression: only websocket subscriber locations "
                                  "compress (permessage-deflate)")
            if loc.compression_min_size < 0:
                raise ConfigError(f"{where}.compression_min_size: must be >= 0")
            if loc.max_message_size is not None and loc.max_message_size <= 0:
                raise ConfigError(f"{where}.max_message_size: must be positive")
        return self


NATS_SCHEMES = ("nats://", "tls://", "ws://", "wss://")


def _check_subject(subject: str, key: str, wildcards: bool) -> None:
    tokens = subject.split(".")
    bad = not subject or any(not t or any(c in t for c in " \t\r\n") for t in tokens)
    if not bad and wildcards:
        bad = any(("*" in t and t != "*") or (">" in t and (t != ">" or i != len(tokens) - 1))
                  for i, t in enumerate(tokens))
    elif not bad:
        bad = "*" in subject or ">" in subject
    if bad:
        raise ConfigError(f"{key}: {subject!r} is not a NATS subject")


def _check_nats(n: Nats) -> None:
    if n.url is None:
        return
    for url in n.url.split(","):
        if not url.strip().startswith(NATS_SCHEMES):
            raise ConfigError(f"nats.url: must be nats://, tls://, ws:// or wss:// URLs, not "
                              f"{_shown_url(url.strip())!r}")
    _check_subject(n.ingest_subject, "nats.ingest_subject", wildcards=True)
    p = n.ingest_subject_prefix
    if n.ingest_channel == "subject" and p:
        if not p.endswith(".") or not n.ingest_subject.startswith(p):
            raise ConfigError(f"nats.ingest_subject_prefix: {p!r} must end with '.' and begin "
                              f"nats.ingest_subject ({n.ingest_subject!r})")
    for key in ("ingest_batch", "ingest_ack_wait", "connect_timeout", "reconnect_time_wait"):
        if getattr(n, key) <= 0:
            raise ConfigError(f"nats.{key}: must be positive, not {getattr(n, key)!r}")
    if n.ingest_replay < 0:
        raise ConfigError(f"nats.ingest_replay: must be >= 0, not {n.ingest_replay!r}")
    if n.ingest_batch > 10000:
        raise ConfigError(f"nats.ingest_batch: at most 10000, not {n.ingest_batch!r}")
    for key in ("ingest_durable", "ingest_stream", "queue_group"):
        value = getattr(n, key)
        if value and any(c in value for c in " \t\r\n.*>"):
            raise ConfigError(f"nats.{key}: {value!r} must be a name without spaces, '.', "
                              "'*' or '>'")
    if n.ingest_durable and not n.ingest_stream:
        raise ConfigError("nats.ingest_stream: a durable consumer (nats.ingest_durable) needs "
                          "the name of its stream")
    if n.ingest_durable and n.queue_group:
        raise ConfigError("nats.queue_group: core NATS only; with nats.ingest_durable every "
                          "node shares the durable consumer instead")
    if (n.creds_file or n.nkeys_seed_file):
        try:
            import nkeys  # noqa: F401
        except ImportError:
            key = "creds_file" if n.creds_file else "nkeys_seed_file"
            raise ConfigError(f"nats.{key}: needs the nkeys package (pip install nkeys)"
                              ) from None
    for key in ("creds_file", "nkeys_seed_file", "tls_ca_file", "tls_cert_file",
                "tls_key_file"):
        path = getattr(n, key)
        if path is not None and not os.path.isfile(path):
            raise ConfigError(f"nats.{key}: no such file: {path!r}")
    if (n.tls_cert_file is None) != (n.tls_key_file is None):
        raise ConfigError("nats.tls_key_file: a client certificate needs both tls_cert_file "
                          "and tls_key_file")


def _shown_url(url: str) -> str:
    """A URL as it may appear in an error or a log: without its password."""
    from gogin.auth import safe_url
    return safe_url(url)


def parse_listen(addr: str, key: str = "server.listen") -> tuple[str, int]:
    """'127.0.0.1:9080', '[::1]:9080', ':9080' (all IPv4 addresses) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    # ASCII digits only (str.isdigit() takes "²", which int() refuses), and at most 5 of them
    # (int() refuses more than 4300)
    if not sep or not (port.isascii() and port.isdigit()) or len(port) > 5 \
            or int(port) > 65535:
        raise ConfigError(f"{key}: {addr!r} is not host:port")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(f"{key}: {host!r} is not an IP address") from None
    return host, int(port)


def _error_key(err: msgspec.ValidationError) -> str:
    # msgspec says "... - at `$.limits.max_head_size`"; turn it into "limits.max_head_size: ..."
    text = str(err)
    msg, _, where = text.rpartition(" - at `")
    if not msg:
        return text
    key = where.rstrip("`").removeprefix("$.").removeprefix("$")
    return f"{key}: {msg}"


def load(path: Optional[str] = None, *, env: Optional[dict] = None,
         overrides: Optional[dict] = None) -> Config:
    """TOML file (optional) -> environment -> overrides ({"server.listen": [...], ...})."""
    raw: dict = {}
    if path:
        try:
            with open(path, "rb") as fh:
                raw = msgspec.toml.decode(fh.read())
        except OSError as e:
            raise ConfigError(f"config file {path}: {e.strerror}") from None
        except msgspec.DecodeError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    env = os.environ if env is None else env
    from_env: dict[str, str] = {}             # key -> the variable that set it
    for name, value in env.items():
        if not name.startswith("GOGIN_") or value == "":
            continue
        key = {"GOGIN_AUTH_URL": "auth.url",
               "GOGIN_AUTH_PUBLISH_URL": "auth.publish_url"}.get(name)
        if key is None:
            section, _, field = name[6:].lower().partition("_")
            if section not in ("server", "limits", "auth", "broker", "nats") or not field:
                continue
            key = f"{section}.{field}"
            if key.startswith("auth.token_"):    # GOGIN_AUTH_TOKEN_KEY: auth.token.key
                key = "auth.token." + key[len("auth.token_"):]
        try:
            _set(raw, key, value, from_env=True)
        except ConfigError as e:
            raise ConfigError(f"{e} (from {name})") from None
        from_env[key] = name
    for key, value in (overrides or {}).items():
        if value is not None:
            _set(raw, key, value)
            from_env.pop(key, None)           # a flag replaced the variable's value
    try:
        try:
            cfg = msgspec.convert(raw, Config, strict=False)
        except msgspec.ValidationError as e:
            raise ConfigError(_error_key(e)) from None
        return cfg.validate()
    except ConfigError as e:
        raise _name_variable(e, from_env) from None


def _name_variable(err: ConfigError, from_env: dict) -> ConfigError:
    """A bad value that came from the environment: the error names the variable too
    ("limits.max_head_size: must be positive, not -1 (from GOGIN_LIMITS_MAX_HEAD_SIZE)"),
    or a person looks for it in a file that does not have it."""
    text = str(err)
    key = text.partition(":")[0]
    name = from_env.get(key) or from_env.get(key.partition("[")[0])   # server.listen[0]
    return ConfigError(f"{text} (from {name})") if name else err


ENV_STRUCTS = {"server": Server, "limits": Limits, "auth": Auth, "auth.token": TokenAuth,
               "broker": Broker, "nats": Nats}


def _set(raw: dict, key: str, value, from_env: bool = False) -> None:
    *tables, field = key.split(".")
    sect = raw
    for i, name in enumerate(tables):
        sect = sect.setdefault(name, {})
        if not isinstance(sect, dict):
            raise ConfigError(f"{'.'.join(tables[:i + 1])}: must be a table")
    if from_env:
        struct = ENV_STRUCTS[".".join(tables)]
        ftype = struct.__annotations__.get(field)
        if ftype is None or "Token" in str(ftype):
            raise ConfigError(f"{key}: unknown key")      # load() adds the variable's name
        if "list[" in str(ftype):
            value = [v.strip() for v in value.split(",") if v.strip()]
    sect[field] = value
