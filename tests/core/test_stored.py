"""Hub.render_stored / Hub.event_position (sans-I/O): the stored messages of a channel after a
position, rendered for a polling answer, and the (time, tag) of an event id."""

from gogin._core.hub import Hub


def _hub(per_channel=10):
    hub = Hub()
    hub.set_history(per_channel)
    for name in ("a", "b"):
        hub.ensure_channel(name)
    return hub


def test_render_stored_after_each_kind_of_position():
    hub = _hub()
    fmt = hub.format("stream", "~channel~:~id~:~text~|", chunked=False)
    for i, ch in enumerate("abab"):
        hub.publish(ch, f"m{i}", event_id=f"e{i}")
    a = hub.stored("a")
    # backtrack, event id, time/tag: oldest first, as (time, tag, bytes)
    assert [m[2] for m in hub.render_stored("a", fmt, last=5)] == [b"a:1:m0|", b"a:2:m2|"]
    assert [m[2] for m in hub.render_stored("a", fmt, event_id="e0")] == [b"a:2:m2|"]
    _, t0, tag0, _, _ = a[0]
    got = hub.render_stored("a", fmt, since_time=t0, since_tag=tag0)
    assert [(m[0], m[1], m[2]) for m in got] == [(a[1][1], a[1][2], b"a:2:m2|")]
    assert hub.render_stored("a", fmt) == []                 # no position: nothing
    assert hub.render_stored("nochannel", fmt, last=3) == []


def test_render_stored_gap_first():
    hub = _hub(per_channel=2)
    fmt = hub.format("stream", "~id~:~text~|", chunked=False)
    for i in range(4):
        hub.publish("a", f"m{i}")
    got = hub.render_stored("a", fmt, last=3, gap_text=b"lost")
    assert [m[2] for m in got] == [b"-4:lost|", b"3:m2|", b"4:m3|"]
    # the gap is dated just before the message that follows it
    assert (got[0][0], got[0][1]) == (got[1][0], got[1][1] - 1)


def test_event_position_is_the_newest_with_that_id():
    hub = _hub()
    hub.publish("a", "x", event_id="same")
    hub.publish("b", "y", event_id="other")
    hub.publish("a", "z", event_id="same")
    _, t, tag, _, _ = hub.stored("a")[1]
    assert hub.event_position("a", "same") == (t, tag)
    assert hub.event_position("b", "same") is None
    assert hub.event_position("nochannel", "same") is None
