"""Hub.publish to several channels in one call (no sockets: the registry's counts)."""

import pytest

from gogin._core import Hub


def test_several_channels_one_call_reports_each():
    hub = Hub()
    hub.set_history(10)
    hub.ensure_channel("old")
    rows = hub.publish(["old", "new", "old"], b"x", create=True)
    assert [(ch.name, queued, created) for ch, queued, created in rows] == [
        ("old", 0, False), ("new", 0, True), ("old", 0, False)]
    assert (hub.channel("old").published, hub.channel("old").stored) == (2, 2)
    assert hub.channel("new").last_id == 1


def test_without_create_a_missing_channel_is_skipped():
    hub = Hub()
    rows = hub.publish(("nope",), b"x")
    assert rows == [(None, 0, False)]
    assert hub.channel("nope") is None
    assert hub.publish("nope", b"x") == 0


def test_binary_none_is_text_only_for_utf8():
    hub = Hub()
    hub.set_history(10)
    for name, payload in (("t", "é".encode()), ("b", b"\xc3\x28")):
        hub.publish([name], payload, create=True)
    fmt = hub.format("websocket")
    # stored messages keep their kind: a text frame is opcode 1, a binary one opcode 2
    assert hub.render_stored("t", fmt, last=1)[0][2][0] & 0x0F == 1
    assert hub.render_stored("b", fmt, last=1)[0][2][0] & 0x0F == 2


def test_channels_must_be_names():
    hub = Hub()
    with pytest.raises(TypeError):
        hub.publish([1], b"x")
    with pytest.raises(TypeError):
        hub.publish({"a"}, b"x")
