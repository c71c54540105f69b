"""Channel ids and publishing: validation (docs/protocol.md, Channels and Publisher) and the
push-stream info formats."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from gogin._core import Hub, channel_id_problem

BACKTRACK = re.compile(r"^(.*)\.b(\d+)$")     # 'room.b5' -> ('room', 5); only a trailing .bN

DELETED_ID = -2                  # id of the "channel deleted" message (docs/protocol.md)
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
    """One channel id, as every location and the main server's grants must give it (the
    rules are the core's, which checks the publisher WebSocket's ids with them too)."""
    problem = channel_id_problem(name, limits.max_channel_id_length)
    if problem is not None:
        raise HttpError(*problem)


def event_field_error(label: str, value) -> Optional[str]:
    """Why an event id or type cannot be published, or None.  A CR or LF would end the
    EventSource field it is written into and forge the lines after it (an `id: x\ndata: ...`
    of the publisher's choosing); JSON templates escape them with ~event-id-json~."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{label} must be a string."
    if "\r" in value or "\n" in value:
        return f"{label} must not contain CR or LF."
    return None


GRANT_EXPLAIN = "Main server granted an invalid channel id."


def parse_granted(ids, limits) -> list[ChannelRef]:
    """The channels a main server granted: each item is one channel id, exactly (a trailing
    .bN asks for backtrack, as on a path).  Nothing is split again: a grant of "a/b" is not
    "a" and "b".  Any item that is no valid id fails the whole grant with a 502."""
    if not isinstance(ids, (list, tuple)):
        raise HttpError(502, GRANT_EXPLAIN)
    refs = []
    for item in ids:
        if not isinstance(item, str):
            raise HttpError(502, GRANT_EXPLAIN)
        name, backtrack = item, 0
        m = BACKTRACK.match(item)
        if m:
            name, backtrack = m.group(1), int(m.group(2))
        try:
            check_channel_id(name, limits)
        except HttpError:
            raise HttpError(502, GRANT_EXPLAIN) from None
        refs.append(ChannelRef(name, backtrack))
    if not refs:
        raise HttpError(403, "Main server gave no channels.")
    return refs


def check_subscription(hub: Hub, names: list[str], limits) -> None:
    """The per-request channel rules of docs/protocol.md, Channels for subscribers."""
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
