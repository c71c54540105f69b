"""Giving memory back after a crowd leaves.

After thousands of connections close, glibc's allocator keeps the freed pages of their
buffers (read buffers, queue rings, parser state are malloc'ed by the core): RSS stays
where the crowd left it.  malloc_trim(0) returns every free page to the kernel (glibc >= 2.8
trims inside the heap too, not only its top).  It costs a walk of the heap, so it runs only
when many connections went away since it last ran, from the server's sweep (every few seconds).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Callable, Optional

TRIM_AFTER_CLOSED = 1000        # connections closed since the last trim before one is worth it


def _malloc_trim() -> Optional[Callable[[int], int]]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim          # glibc only; musl and macOS have none
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class Trimmer:
    """Calls malloc_trim once TRIM_AFTER_CLOSED connections closed since it last ran.  The
    closed count comes from the hub's counters (accepted, open), so a crowd that came and went
    between two sweeps is seen too."""

    def __init__(self):
        self._trim = _malloc_trim()
        self._accepted = 0
        self._open = 0
        self._closed = 0
        self.trims = 0

    def observe(self, accepted: int, connections: int) -> bool:
        """Note the hub's counters now; trims (returns True) after enough closes."""
        self._closed += (accepted - self._accepted) - (connections - self._open)
        self._accepted, self._open = accepted, connections
        if self._trim is None or self._closed < TRIM_AFTER_CLOSED:
            return False
        self._trim(0)
        self._closed = 0
        self.trims += 1
        return True
