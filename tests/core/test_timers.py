"""The timing wheel (gogin/_core/timers.pyx) without sockets or a loop: arm, move, cancel,
fire, later laps, a stalled loop."""

from gogin._core.timers import TimerTester

SLOTS = 1024


def test_fires_at_its_tick_and_not_before():
    w = TimerTester(3)
    w.set(0, 5)
    w.set(1, 7)
    w.set(2, 5)
    assert w.advance(4) == []
    assert w.advance(5) == [0, 2]
    assert (w.deadline(0), w.deadline(2), w.deadline(1)) == (0, 0, 7)
    assert w.advance(6) == []
    assert w.advance(7) == [1]
    assert w.advance(100) == []
    assert w.now == 100


def test_moved_and_cancelled_deadlines():
    w = TimerTester(2)
    w.set(0, 10)
    w.set(1, 10)
    w.set(0, 20)                # moved: not at 10 any more
    w.set(1, 0)                 # cancelled
    assert w.advance(15) == []
    assert w.deadline(1) == 0
    assert w.advance(20) == [0]


def test_a_tick_not_after_now_is_the_next_tick():
    w = TimerTester(1)
    w.advance(50)
    w.set(0, 3)                 # in the past
    assert w.deadline(0) == 51
    assert w.advance(50) == []
    assert w.advance(51) == [0]


def test_a_later_lap_waits_for_its_own_turn_of_the_wheel():
    w = TimerTester(2)
    w.set(0, 5)
    w.set(1, 5 + SLOTS)         # same slot, one lap later
    assert w.advance(5) == [0]
    assert w.advance(5 + SLOTS - 1) == []
    assert w.advance(5 + SLOTS) == [1]


def test_a_stalled_loop_fires_everything_due_at_once():
    """The loop came back after more than a lap: one advance fires every passed deadline and
    keeps the rest."""
    n = 300
    w = TimerTester(n)
    for i in range(n):
        w.set(i, 1 + i * 10)    # ticks 1 .. 2991, nearly three laps
    due = w.advance(1500)
    assert due == [i for i in range(n) if 1 + i * 10 <= 1500]
    assert all(w.deadline(i) == (0 if 1 + i * 10 <= 1500 else 1 + i * 10) for i in range(n))
    assert w.advance(3000) == [i for i in range(n) if 1 + i * 10 > 1500]
