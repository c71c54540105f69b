"""When signed-token connections end: one timing structure for all of them.

A token's end is a whole second in practice (`exp` is an integer, the leeway usually one too),
so connections are kept in one dict per second of their end, and one asyncio timer is set for
the earliest second.  Arming costs a dict insert (no TimerHandle, no heap entry per
connection), a close or a refresh removes the connection from its second's dict, and the
timer's callback ends every connection of the seconds that have passed.  An end that is not a
whole second goes to the next one: a connection is never ended early, and at most 1 s late.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from typing import Callable, Optional

log = logging.getLogger("gogin.server")

class ExpiryWheel:
    def __init__(self, on_expired: Callable) -> None:
        self._on_expired = on_expired      # on_expired(conn, state), for each one that ends
        self._buckets: dict = {}           # second (Unix) -> {conn: state}
        self._seconds: list = []           # heap of the seconds that have a bucket
        self._timer: Optional[asyncio.TimerHandle] = None
        self._due: Optional[int] = None    # the second the timer is set for

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def add(self, conn, state, end: float) -> dict:
        """Ends conn at `end` (Unix s); the bucket returned is what remove() takes."""
        second = math.ceil(end)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = {}
            heapq.heappush(self._seconds, second)
            if self._due is None or second < self._due:
                self._arm(second)
        bucket[conn] = state
        return bucket

    @staticmethod
    def remove(bucket: Optional[dict], conn) -> None:
        if bucket is not None:
            bucket.pop(conn, None)

    def _arm(self, second: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._due = second
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, second - time.time()), self._sweep)

    def _sweep(self) -> None:
        self._timer = self._due = None
        now = time.time()
        ended = []
        while self._seconds and self._seconds[0] <= now:
            ended.append(self._buckets.pop(heapq.heappop(self._seconds)))
        for bucket in ended:
            for conn, state in list(bucket.items()):
                bucket.pop(conn, None)
                try:
                    self._on_expired(conn, state)
                except Exception:           # one failing close must not spare the others
                    log.exception("ending a connection whose token expired")
        if self._seconds and self._due is None:
            # the loop's clock and the wall clock may differ by a little: too early, try again
            self._arm(self._seconds[0])

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._due = None
        self._buckets.clear()
        self._seconds.clear()
