"""A shared broker's receive path in the core (sans-I/O where it can be): the envelope codec,
Hub.deliver_batch (next id delivered, old dropped, anything else held), Hub.deliver_fill
(history first, duplicates dropped, gaps signalled) and Hub.sync_position."""

import pytest

from gogin._core.envelope import build_envelope, parse_envelope
from gogin._core.hub import Hub

PREFIX = b"p:c:"
EPOCH = 1_733_000_000_123_456


def env(i, text=None, epoch=EPOCH, t=1_800_000_000, tag=None, flags=0, eid=b"", etype=b""):
    return build_envelope(flags, epoch, i, t, i if tag is None else tag, eid, etype,
                          (text or f"m{i}").encode())


def push(name, e):
    return [b"message", PREFIX + name.encode(), e]


def ids(hub, name):
    return [s[0] for s in hub.stored(name)]


def _hub(*names):
    hub = Hub()
    hub.set_history(100)
    for n in names:
        hub.ensure_channel(n)
    return hub


def test_envelope_round_trip_and_refusals():
    e = build_envelope(1, EPOCH, 7, 1_800_000_000, 3, b"ev", b"type", b"\x00payload")
    assert parse_envelope(e) == (1, EPOCH, 7, 1_800_000_000, 3, b"ev", b"type", b"\x00payload")
    assert len(e) == 36 + 2 + 4 + 8
    assert parse_envelope(e[:35]) is None                   # shorter than the header
    assert parse_envelope(b"\x02" + e[1:]) is None           # another version
    assert parse_envelope(env(0)) is None                    # id 0 is no message
    big = e[:16] + (1 << 53).to_bytes(8, "big") + e[24:]
    assert parse_envelope(big) is None                       # not from a Lua number
    bad_len = e[:2] + (60000).to_bytes(2, "big") + e[4:]
    assert parse_envelope(bad_len) is None                   # lengths past the end


def test_fill_adopts_then_batch_delivers_next_and_drops_old():
    hub = _hub("a")
    assert hub.deliver_fill("a", [env(5), env(6)]) == 2      # a channel new here: adopted
    ch = hub.channel("a")
    assert (ch.epoch, ch.last_id) == (EPOCH, 6)
    held = hub.deliver_batch([push("a", env(7)), push("a", env(6)), push("a", env(8))],
                             len(PREFIX))
    assert held is None
    assert ids(hub, "a") == [5, 6, 7, 8]
    c = hub.broker_counters()
    assert (c["delivered"], c["duplicates"], c["held"], c["gaps"]) == (4, 1, 0, 0)
    assert ch.last_time == 1_800_000_000 and ch.last_tag == 8


def test_batch_holds_jumps_new_epochs_deletions_and_skips_unknown_or_bad():
    hub = _hub("a")
    hub.deliver_fill("a", [env(1)])
    jump, other_epoch = env(3), env(1, epoch=EPOCH + 1)
    deleted = build_envelope(2, 0, 1, 1_800_000_000, 0, b"", b"", b"bye")
    held = hub.deliver_batch([push("a", jump), push("a", other_epoch), push("a", deleted),
                              push("zz", env(1)), [b"message", PREFIX + b"\xff", env(2)],
                              push("a", b"junk")], len(PREFIX))
    assert held == [("a", jump), ("a", other_epoch), ("a", deleted)]
    c = hub.broker_counters()
    assert (c["held"], c["unknown"], c["malformed"]) == (3, 1, 2)
    assert ids(hub, "a") == [1]                              # nothing held was delivered


def test_fill_drops_duplicates_and_signals_a_real_gap_once():
    hub = _hub("a")
    hub.deliver_fill("a", [env(1), env(2)])
    # history read after a jump: 2 again, then 5.. (3 and 4 were trimmed), then held live 6
    assert hub.deliver_fill("a", [env(2), env(5), env(6), env(6)]) == 2
    assert ids(hub, "a") == [1, 2, 5, 6]
    assert hub.broker_counters()["gaps"] == 1
    # a client resuming from message 2 is told of the gap, then gets 5 and 6
    fmt = hub.format("stream", "~id~|", chunked=False)
    t = 1_800_000_000
    got = hub.render_stored("a", fmt, since_time=t, since_tag=2, gap_text=b"lost")
    assert [m[2] for m in got] == [b"-4|", b"5|", b"6|"]


def test_new_epoch_clears_the_copy_and_signals_once():
    hub = _hub("a")
    hub.deliver_fill("a", [env(i) for i in range(1, 4)])
    assert hub.deliver_fill("a", [env(1, epoch=EPOCH + 9, tag=10), env(2, epoch=EPOCH + 9,
                                                                        tag=11)]) == 2
    ch = hub.channel("a")
    assert (ch.epoch, ch.last_id) == (EPOCH + 9, 2)
    assert ids(hub, "a") == [1, 2]                          # the old numbering's copies went
    assert hub.broker_counters()["gaps"] == 1


def test_sync_position_new_channel_silent_known_channel_gap():
    hub = _hub("a", "b")
    hub.sync_position("a", EPOCH, 40)                       # new here, nothing stored in Redis
    ch = hub.channel("a")
    assert (ch.epoch, ch.last_id, ch.published) == (EPOCH, 40, 40)
    assert hub.broker_counters()["gaps"] == 0
    held = hub.deliver_batch([push("a", env(41))], len(PREFIX))
    assert held is None and ids(hub, "a") == [41]
    hub.sync_position("a", EPOCH, 45)                       # 42..45 never came: lost here
    assert hub.broker_counters()["gaps"] == 1 and hub.channel("a").last_id == 45
    hub.sync_position("a", EPOCH, 44)                       # behind: nothing
    hub.sync_position("b", 0, 0)                            # no numbering in Redis: nothing
    assert hub.channel("b").epoch == -1                     # synced: nothing existed
    assert hub.broker_counters()["gaps"] == 1


def test_message_fields_survive_into_history():
    hub = _hub("a")
    hub.deliver_fill("a", [env(1, text="hello", eid=b"e-1", flags=1)])
    (mid, t, tag, eid, payload), = hub.stored("a")
    assert (mid, t, tag, eid, payload) == (1, 1_800_000_000, 1, "e-1", b"hello")


@pytest.mark.parametrize("n", [1, 1000])
def test_batch_of_many(n):
    hub = _hub("a")
    hub.sync_position("a", EPOCH, 0)
    hub.deliver_fill("a", [env(1)])
    held = hub.deliver_batch([push("a", env(i)) for i in range(2, n + 2)], len(PREFIX))
    assert held is None
    assert hub.channel("a").last_id == n + 1


async def test_subscribers_get_next_messages_and_one_gap_signal(make_server):
    """Over a real socket: what deliver_batch/deliver_fill fan out, in order, with the gap
    signal (id -4) before the message after a gap."""
    import asyncio
    import json

    from websockets.asyncio.client import connect as ws_connect

    s = make_server()
    s.hub.set_history(100)
    s.hub.set_gap_text(b"lost")
    async with ws_connect(s.ws + "/ws?ch=a", open_timeout=5) as sub:
        s.hub.deliver_fill("a", [env(10)])
        s.hub.deliver_batch([push("a", env(11)), push("a", env(11))], len(PREFIX))
        held = s.hub.deliver_batch([push("a", env(14))], len(PREFIX))
        assert held == [("a", env(14))]
        s.hub.deliver_fill("a", [env(13), env(14)])         # 12 is gone
        got = [json.loads(await asyncio.wait_for(sub.recv(), 5)) for _ in range(5)]
        assert [(m["id"], m["text"]) for m in got] == [
            (10, "m10"), (11, "m11"), (-4, "lost"), (13, "m13"), (14, "m14")]


def test_a_channel_new_in_redis_counts_every_id_from_one():
    """Synced when Redis had no numbering (epoch -1): a fill that starts past id 1 (a burst
    trimmed out of the history before this node read it) is a gap, not a silent start."""
    hub = _hub("a", "b")
    hub.sync_position("a", 0, 0)
    assert hub.channel("a").epoch == -1
    hub.deliver_fill("a", [env(i) for i in range(201, 301)])
    assert hub.broker_counters()["gaps"] == 1
    assert ids(hub, "a")[0] == 201 and hub.channel("a").epoch == EPOCH
    hub.sync_position("b", 0, 0)
    hub.deliver_fill("b", [env(1), env(2)])                 # from 1: nothing missed
    assert hub.broker_counters()["gaps"] == 1
    assert ids(hub, "b") == [1, 2]
