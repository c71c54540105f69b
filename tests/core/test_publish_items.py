"""Hub.publish_items and the channel id rules (no sockets: the registry's counts).

The publisher WebSocket's items are msgspec Structs whose fields the hub reads from their
slots; any other object with the same attributes must give the same result (read by name).
"""

import random
from types import SimpleNamespace
from typing import Optional, Union

import msgspec
import pytest

from gogin._core import Hub, channel_id_problem


def reference_problem(name: str, max_len: int):
    """The rules as gogin's Python check_channel_id wrote them before they moved to the core."""
    if not name:
        return 400, "No channel id provided."
    if name == "ALL" or "*" in name:
        return 403, "Channel id not authorized for this method."
    if len(name) > max_len:
        return 400, "Channel id is too large."
    if any(ord(c) < 0x20 or c == "\x7f" for c in name):
        return 400, "Channel id has control characters."
    if "/" in name or name in (".", ".."):
        return 400, "Invalid channel id."
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return 400, "Channel id is not valid UTF-8."
    return None


@pytest.mark.parametrize("name", [
    "", "ALL", "all", "a*", "*", "x" * 16, "x" * 17, "a\x00", "a\x1f", "a\x7f", "a\x80", "a/b",
    "/", ".", "..", "...", "\ud800", "a\udfff", "é", "日本", "\U0001F600", "x" * 17 + "*",
    "ALL/", "a\x01/b", "." * 17,
])
def test_channel_id_rules_are_the_old_ones(name):
    assert channel_id_problem(name, 16) == reference_problem(name, 16)


def test_channel_id_rules_on_random_names():
    rnd = random.Random(7)
    alphabet = ["a", "Z", "0", "-", ".", "/", "*", "\x00", "\x1f", "\x7f", "\x80", "é", "\u2028",
                "\ud800", "\udc00", "\U0001F600", "A", "L"]
    for _ in range(5000):
        name = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 8)))
        assert channel_id_problem(name, 5) == reference_problem(name, 5), repr(name)


class Item(msgspec.Struct):
    id: Union[str, list[str]]
    text: str
    event_id: Optional[str] = None
    event_type: Optional[str] = None


class Reordered(msgspec.Struct):
    # the same fields at other offsets: the hub must learn each class's own
    event_type: Optional[str]
    text: str
    id: Union[str, list[str]]
    event_id: Optional[str] = None


def ns(id, text, event_id=None, event_type=None):
    return SimpleNamespace(id=id, text=text, event_id=event_id, event_type=event_type)


CASES = [
    (("a", "one"), None),
    ((["b", "c"], "two"), None),
    (([], "x"), "id must be a channel id or a list of them"),
    ((["b", 3], "x"), "id must be a channel id or a list of them"),
    (("a", ""), "text must be a non-empty string"),
    (("a", "x", "e\n"), "event_id must not contain CR or LF."),
    (("a", "x", None, "t\r"), "event_type must not contain CR or LF."),
    (("a", "x", 5), "event_id must be a string."),
    ((["ok", "bad*"], "x"), "Channel id not authorized for this method."),
    (("x" * 20, "x"), "Channel id is too large."),
    (("a/b", "x"), "Invalid channel id."),
    (("a", "\ud800"), "text is not valid Unicode"),
    (("\ud800", "x"), "Channel id is not valid UTF-8."),
]


def make(kind, args):
    if kind == "struct":
        return Item(*args)
    if kind == "reordered":
        a = list(args) + [None] * (4 - len(args))
        return Reordered(event_type=a[3], text=a[1], id=a[0], event_id=a[2])
    return ns(*args)


@pytest.mark.parametrize("kind", ["struct", "reordered", "namespace", "mixed"])
def test_items_are_checked_and_published_in_order(kind):
    hub = Hub()
    hub.set_history(10)
    kinds = ["struct", "reordered", "namespace"]
    items = [make(kinds[i % 3] if kind == "mixed" else kind, args)
             for i, (args, _) in enumerate(CASES)]
    errors = hub.publish_items(items, 16)
    assert errors == [(i, err) for i, (_, err) in enumerate(CASES) if err is not None]
    # only the good items were published, each to its channels, created on first publish
    assert hub.channel("a").published == 1
    assert hub.channel("b").published == hub.channel("c").published == 1
    assert hub.channel("ok") is None               # its item was refused as a whole
    fmt = hub.format("websocket")
    assert hub.render_stored("c", fmt, last=1)[0][2][2:] == b"two"


def test_a_struct_with_a_missing_field_raises_as_getattr_would():
    class Odd(msgspec.Struct):
        text: str

    with pytest.raises(AttributeError):
        Hub().publish_items([Odd("x")], 16)


def test_none_published_returns_none():
    hub = Hub()
    assert hub.publish_items([Item("a", "x"), Item(["a", "b"], "y", "1", "t")], 16) is None
    assert hub.channel("a").last_id == 2
