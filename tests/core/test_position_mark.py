"""The core's side of a broker without shared numbering (NATS): Hub.deliver_local numbers what
arrives like a local publish, Hub.set_position_mark makes this node's (time, tag) positions
recognisable so a resume from another node's position gets the gap signal, Hub.mark_gap
(sans-I/O, through render_stored)."""

import pytest

from gogin._core.envelope import build_envelope
from gogin._core.hub import Hub

MOD, RES = 4096, 7


def _hub():
    hub = Hub()
    hub.set_history(10)
    hub.set_position_mark(MOD, RES)
    hub.ensure_channel("a")
    return hub


def env(text: bytes, flags=0, eid=b"") -> bytes:
    return build_envelope(flags, 0, 1, 0, 0, eid, b"", text)


def test_deliver_local_numbers_in_arrival_order():
    hub = _hub()
    held = hub.deliver_local(["a", env(b"m1", eid=b"e1"), "a", env(b"\x00\x01", flags=1),
                              "nochannel", env(b"x"), "a", b"junk",
                              "a", env(b"bye", flags=2)])
    assert held == [("a", env(b"bye", flags=2))]           # a deletion: the broker's job
    st = hub.stored("a")
    assert [(m[0], m[3], m[4]) for m in st] == [(1, "e1", b"m1"), (2, "", b"\x00\x01")]
    assert all(m[2] % MOD == RES for m in st)              # this node's mark
    assert (st[0][1], st[0][2]) < (st[1][1], st[1][2])
    c = hub.broker_counters()
    assert (c["received"], c["delivered"], c["unknown"], c["malformed"], c["held"]) == \
        (5, 2, 1, 1, 1)
    ch = hub.channel("a")
    assert (ch.last_id, ch.published) == (2, 2)
    with pytest.raises(ValueError):
        hub.deliver_local(["a"])


def test_a_position_of_another_node_gets_the_gap_signal_only():
    hub = _hub()
    fmt = hub.format("stream", "~id~:~text~:~tag~|", chunked=False)
    hub.deliver_local(["a", env(b"m1"), "a", env(b"m2")])
    (_, t1, g1, _, _), (_, t2, g2, _, _) = hub.stored("a")
    # this node's own position: its history after it
    got = hub.render_stored("a", fmt, since_time=t1, since_tag=g1, gap_text=b"lost")
    assert [m[2].split(b":")[1] for m in got] == [b"m2"]
    # another node's tag (another residue): the gap signal, dated after it, nothing stored
    foreign = g2 + 3 * MOD + 5
    got = hub.render_stored("a", fmt, since_time=t2, since_tag=foreign, gap_text=b"lost")
    assert len(got) == 1 and got[0][2].startswith(b"-4:lost:")
    gt, gtag = got[0][0], got[0][1]
    assert (gt, gtag) > (t2, foreign) and gtag % MOD == RES - 1
    # resuming from the gap answer is a position of this node: nothing more, no gap loop
    assert hub.render_stored("a", fmt, since_time=gt, since_tag=gtag, gap_text=b"lost") == []
    assert not hub.has_replay("a", since_time=gt, since_tag=gtag)
    assert hub.has_replay("a", since_time=t2, since_tag=foreign + MOD)
    # what this node numbers next comes after the gap
    hub.deliver_local(["a", env(b"m3")])
    _, t3, g3, _, _ = hub.stored("a")[-1]
    assert (t3, g3) > (gt, gtag) and g3 % MOD == RES


def test_mark_gap():
    hub = _hub()
    fmt = hub.format("stream", "~id~:~text~|", chunked=False)
    hub.deliver_local(["a", env(b"m1")])
    _, t1, g1, _, _ = hub.stored("a")[0]
    hub.mark_gap("a", False)                  # e.g. the connection was down: maybe lost
    hub.deliver_local(["a", env(b"m2")])
    got = hub.render_stored("a", fmt, since_time=t1, since_tag=g1, gap_text=b"lost")
    assert [m[2] for m in got] == [b"-4:lost|", b"2:m2|"]
    got = hub.render_stored("a", fmt, since_time=t1 - 1, since_tag=-1, gap_text=b"lost")
    assert got[0][2] == b"-4:lost|"
    hub.mark_gap("nochannel")                 # nothing to do
    assert hub.broker_counters()["gaps"] == 0  # signal=False sends nothing


def test_without_a_mark_tags_are_push_stream_ones():
    hub = Hub()
    hub.set_history(10)
    hub.ensure_channel("a")
    hub.publish("a", "x")
    hub.publish("a", "y")
    tags = [m[2] for m in hub.stored("a")]
    assert tags[1] == tags[0] + 1 or tags[1] == 1          # the next second starts at 1
    assert tags[0] < MOD
    with pytest.raises(ValueError):
        hub.set_position_mark(MOD, 0)
    with pytest.raises(ValueError):
        hub.set_position_mark(MOD, MOD)
