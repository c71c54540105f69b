# The timing wheel: every connection with a deadline (header / keep-alive timeout, linger,
# ping, TTL, long-poll timeout) sits in one slot of a ring of WHEEL_SLOTS ticks, so arming,
# moving and firing a deadline are O(1) whatever the number of connections (redis's ae keeps
# a list of timers; one per connection would make every turn O(n)).  What a deadline means
# is the connection machine's (connection.conn_on_timer); the wheel only keeps time.

from libc.stdint cimport int64_t

from gogin._core.connection cimport Conn

cdef enum:
    WHEEL_SLOTS = 1024         # ticks in one lap of the wheel (a power of two)
    WHEEL_MASK = 1023

cdef struct Wheel:
    Conn *slots[WHEEL_SLOTS]   # doubly linked through Conn.wnext / wprev
    int64_t now                # the last tick the wheel advanced to

cdef void wheel_init(Wheel *w) noexcept nogil
# Put c at tick `at` (0: take it off the wheel); a tick not after now is now + 1.
cdef void wheel_set(Wheel *w, Conn *c, int64_t at) noexcept nogil
# Advance to tick `now`: the connections whose deadline passed, off the wheel (deadline 0),
# linked through wnext; those of a later lap stay.  At most one lap is walked (a loop that
# stalled longer fires everything due at once).
cdef Conn *wheel_advance(Wheel *w, int64_t now) noexcept nogil
