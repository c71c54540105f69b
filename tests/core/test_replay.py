"""replay.pyx without sockets: where a catch-up starts in a channel's stored messages, and
whether messages after the client's position were lost."""

import pytest

from gogin._core import Hub, Opcode
from gogin._core.frames import FrameParser
from gogin._core.replay import replay_from


@pytest.fixture
def channel():
    """A channel that kept its last 3 of 5 messages (ids 3, 4, 5; event ids e1..e5)."""
    hub = Hub()
    hub.set_history(3)
    ch = hub.ensure_channel("ch")
    for i in range(1, 6):
        hub.publish("ch", b"m%d" % i, event_id=f"e{i}")
    yield hub, ch
    hub.close()


def test_no_position_is_no_replay(channel):
    _, ch = channel
    assert replay_from(ch) is None


def test_the_last_n(channel):
    _, ch = channel
    assert replay_from(ch, last=2) == ([4, 5], False)
    assert replay_from(ch, last=3) == ([3, 4, 5], False)
    assert replay_from(ch, last=5) == ([3, 4, 5], True)      # asked for more than was kept


def test_after_an_id(channel):
    _, ch = channel
    assert replay_from(ch, since_id=4) == ([5], False)
    assert replay_from(ch, since_id=5) == ([], False)        # up to date
    assert replay_from(ch, since_id=2) == ([3, 4, 5], False)  # 1 and 2 were lost, not 3
    assert replay_from(ch, since_id=1) == ([3, 4, 5], True)   # 2 was lost after it


def test_after_an_event_id(channel):
    _, ch = channel
    assert replay_from(ch, event_id="e4") == ([5], False)
    assert replay_from(ch, event_id=b"e3") == ([4, 5], False)
    assert replay_from(ch, event_id="e1") == ([3, 4, 5], True)  # not stored any more: all, lost


def test_after_a_time_and_tag(channel):
    _, ch = channel
    t, tag = ch.last_time, ch.last_tag
    assert replay_from(ch, since_time=t, since_tag=tag) == ([], False)
    assert replay_from(ch, since_time=0, since_tag=0) == ([3, 4, 5], True)


def test_a_stored_message_renders_like_a_live_one(channel):
    hub, ch = channel
    fmt = hub.format("websocket", "~id~:~text~:~event-id~")
    frames = hub.render_stored("ch", fmt, last=2)
    parsed = [FrameParser(require_mask=False).feed(f) for _, _, f in frames]
    assert parsed == [[("message", Opcode.TEXT, b"4:m4:e4")],
                      [("message", Opcode.TEXT, b"5:m5:e5")]]
