"""Channel ids and publishing: validation (PROTOCOL.md §1–2) and the push-stream info formats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from gogin._core import Hub

BACKTRACK = re.compile(r"^(.*)\.b(\d+)$")     # 'room.b5' -> ('room', 5); only a trailing .bN

DELETED_ID = -2                  # PROTOCOL.md §3: id of the "channel deleted" message
DELETED_TEXT = b"Channel deleted"
GAP_ID = -4                      # gogin: messages after the client's position were lost
GAP_TEXT = b"Messages were lost."


class HttpError(Exception):
    """An answer to a bad request: status + explain header (X-Gogin-Explain)."""

    def __init__(self, status: int, explain: str, headers=()):
        super().__init__(f"{status} {explain}")
        self.status = status
        self.explain = explain
        self.headers = list(headers)


@dataclass
class ChannelRef:
    name: str
    backtrack: int = 0           # .bN suffix: stored messages wanted (history, issue 4)


def parse_channel_path(tail: str, limits, *, allow_backtrack=True) -> list[ChannelRef]:
    """'ch1/ch2.b5/ch3' -> channel refs, validated; raises HttpError."""
    refs = []
    for part in tail.split("/"):
        if not part:
            continue
        backtrack = 0
        m = BACKTRACK.match(part) if allow_backtrack else None
        if m:
            part, backtrack = m.group(1), int(m.group(2))
        refs.append(ChannelRef(part, backtrack))
    if not refs:
        raise HttpError(400, "No channel id provided.")
    for ref in refs:
        check_channel_id(ref.name, limits)
    return refs


def check_channel_id(name: str, limits) -> None:
    if not name:
        raise HttpError(400, "No channel id provided.")
    if name == "ALL" or "*" in name:
        raise HttpError(403, "Channel id not authorized for this method.")
    if len(name) > limits.max_channel_id_length:
        raise HttpError(400, "Channel id is too large.")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        raise HttpError(400, "Channel id has control characters.")


def check_subscription(hub: Hub, names: list[str], limits) -> None:
    """The per-request channel rules of PROTOCOL.md §1 for subscribers."""
    if len(names) > limits.max_number_of_channels:
        raise HttpError(403, "Number of channels were exceeded.")
    prefix = limits.wildcard_channel_prefix
    wildcards = sum(1 for n in names if prefix and n.startswith(prefix))
    if wildcards and (wildcards == len(names) or wildcards > limits.wildcard_channel_max_qtd):
        raise HttpError(403, "Subscribed too much wildcard channels.")
    for n in names:
        ch = hub.channel(n)
        if limits.authorized_channels_only and (ch is None or ch.published == 0):
            raise HttpError(403, "Subscriber could not create channels.")
        if (limits.max_subscribers_per_channel and ch is not None
                and ch.subscribers >= limits.max_subscribers_per_channel):
            raise HttpError(403, "Subscribers limit per channel has been exceeded.")


def is_text(payload: bytes, content_type: Optional[str]) -> bool:
    """Text frames must carry UTF-8 (RFC 6455 §5.6): anything else goes out as binary."""
    if content_type and content_type.split(";")[0].strip().lower() == "application/octet-stream":
        return False
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def json_str(s: str) -> str:
    import json
    return json.dumps(s, ensure_ascii=False)[1:-1]
