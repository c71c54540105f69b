"""The hub's callbacks into Python (Hub.on_request, on_body, on_message, on_close): the first
matching location of the ordered list answers; what a connection leaves behind at close (its
CORS origin, its token's expiry bucket, the events of its channels) is forgotten here."""

from __future__ import annotations

from typing import Optional

from gogin.locations.base import Location, LocationContext
from gogin.publish import HttpError


class Router:
    def __init__(self, ctx: LocationContext, locations: list):
        self.ctx = ctx
        self.http = ctx.http
        self.locations = locations        # longest path first (build): the most specific wins
        # read once per request: set attributes, not a call into Answers (nothing more per
        # request than the server did before the locations had their own rooms)
        self._cors = ctx.http.origins
        self._origins = ctx.http.allowed
        self._any_origin = ctx.http.any_origin

    def route(self, path: str) -> Optional[Location]:
        # A scan of the ordered locations (the core's publish routes are a dict of exact
        # paths).  A per-path cache of this result was tried and taken out while the Redis
        # restart tests (tests/cluster) failed on a loaded machine; they later failed and
        # passed without it too, so whether it was the cause is not settled.
        for loc in self.locations:
            if loc.matches(path):
                return loc
        return None

    def on_request(self, conn, req):
        if self._origins:
            origin = req.get("origin")
            if origin and (self._any_origin or origin in self._origins):
                self._cors[conn.id] = origin
        loc = self.route(req.path)
        if loc is None:
            return self.http.error(conn, HttpError(404, "No location for this path."))
        try:
            loc.handle(conn, req)
        except HttpError as e:
            self.http.error(conn, e)

    def on_body(self, conn, req):
        """A request whose body is still arriving: the most bytes it may send (its location's
        limit, after the location's access check), or the answer that refuses it, so that
        nobody makes gogin hold a body it would not take."""
        loc = self.route(req.path)
        try:
            if loc is None:
                raise HttpError(404, "No location for this path.")
            loc.check_access(conn, req)
            return loc.body_limit(req)
        except HttpError as e:
            return self.http.refusal(e)

    def on_message(self, conn, opcode, data):
        state = conn.data
        if state is None:
            conn.close(1008, "unexpected message")
            return
        state.location.on_message(conn, opcode, data)

    def on_close(self, conn, reason):
        self._cors.pop(conn.id, None)
        state = conn.data
        expiry = getattr(state, "expiry", None)    # a token connection's end (TokenState):
        if expiry is not None:                     # its bucket of the location's ExpiryWheel
            expiry.pop(conn, None)
        if state is not None and getattr(state, "channels", None):
            self.ctx.channels.note_unsubscribed(state.channels)
        conn.data = None

    def close(self):
        """The token locations' expiry timers (at Server.stop)."""
        for loc in self.locations:
            wheel = getattr(loc, "expiry_wheel", None)
            if wheel is not None:
                wheel.close()
