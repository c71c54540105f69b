"""nats-py's client with *tapped* subscriptions: a tapped subscription's messages go, raw, to a
plain function as the parser reads them, instead of nats-py building a Msg object and queueing
it for a per-subscription task (two allocations and a task switch per message).  The function
collects what one socket read brought; its owner handles the batch in one step (the NATS
broker's receive path, the JetStream ingest)."""

from __future__ import annotations

import random
from operator import attrgetter

from nats.aio.client import Client

BACKOFF_DOUBLINGS = 20          # 2 ** 20 times the first wait: past any cap that makes sense


class TapClient(Client):
    def __init__(self):
        super().__init__()
        self.taps: dict = {}        # sid -> (function, argument): function(argument, subject,
                                    # reply, data, headers); subject and reply are bytes,
                                    # headers a dict or None

    async def _process_msg(self, sid, subject, reply, data, headers):
        tap = self.taps.get(sid)
        if tap is None:
            return await super()._process_msg(sid, subject, reply, data, headers)
        if headers:                 # nats-py's own parser: status lines, folded headers
            headers = await self._process_headers(headers)
        tap[0](tap[1], subject, reply, data, headers)


def backoff(first: float, cap: float):
    """nats-py's reconnect_to_server_handler: reconnect attempts back off exponentially (nats-py
    itself waits a fixed reconnect_time_wait), so that a NATS that is down for long is not
    called every second by every node, and nodes cut off together do not come back together.

    The server tried is the one of the pool with the fewest failed attempts since it last
    connected (n); the wait before trying it is drawn from [d/2, d], d = min(cap, first * 2**n):
    jittered, never shorter than half the backoff."""
    def next_server(servers, info):
        server = min(servers, key=attrgetter("reconnects"))
        delay = min(cap, first * 2 ** min(server.reconnects, BACKOFF_DOUBLINGS))
        return server, random.uniform(delay / 2, delay)
    return next_server
