"""HTTP answers of the Python layer: heads, the explain header, CORS.  Pure functions of the
connection, the configuration and one piece of state, the allowed Origin of each connection's
request in flight, so they live here rather than on the Server (docs/architecture.md, The
rooms of the Python layer)."""

from __future__ import annotations

from typing import Optional

from gogin._core import NO_CACHE_HEADERS, build_head
from gogin.publish import HttpError

NO_CACHE = list(NO_CACHE_HEADERS)
CORS_REQUEST_HEADERS = ("If-Modified-Since, If-None-Match, Last-Event-ID, Event-Id, Event-Type, "
                        "Content-Type, X-Api-Key, Authorization")
CORS_EXPOSE_HEADERS = "Last-Modified, Etag, X-Gogin-Explain"


class Answers:
    """One per server.  ``origins`` (connection id -> allowed Origin of its request) is filled
    by the router when a request arrives and emptied by the answer (or the close): a later
    request on the same connection without Origin gets no CORS headers."""

    __slots__ = ("allowed", "any_origin", "config", "origins")

    def __init__(self, config):
        self.config = config
        self.origins: dict = {}
        allowed = config.server.allowed_origins
        self.any_origin = "*" in allowed
        self.allowed = set(allowed)       # empty: CORS off (the router looks at no Origin)

    def head(self, status: int, headers=(), content_length: int = -1, keep_alive=True) -> bytes:
        return build_head(status, headers, content_length, keep_alive)

    def stream_head(self, conn, status: int, headers=()) -> bytes:
        """Head of a stream answer (EventSource, streaming), with CORS if the request had it."""
        return self.head(status, list(headers) + self.cors_headers(self.origins.pop(conn.id, None)))

    def respond(self, conn, status: int, headers=(), body=b""):
        cors = self.cors_headers(self.origins.pop(conn.id, None))
        conn.respond(status, list(headers) + cors if cors else headers, body)

    def cors_done(self, conn) -> Optional[str]:
        """The allowed Origin of this connection's request, forgotten now (it is answered)."""
        return self.origins.pop(conn.id, None)

    def cors_headers(self, origin: Optional[str]) -> list:
        if not origin:
            return []
        allow = "*" if self.any_origin else origin
        hdrs = [("Access-Control-Allow-Origin", allow),
                ("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS"),
                ("Access-Control-Allow-Headers", CORS_REQUEST_HEADERS),
                ("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)]
        if not self.any_origin:
            hdrs.append(("Vary", "Origin"))
        return hdrs

    def explain(self, text: str) -> list:
        """The explain header(s) of an answer (push-stream's name too, if configured)."""
        hdrs = [("X-Gogin-Explain", text)]
        if self.config.server.push_stream_explain_header:
            hdrs.append(("X-Nginx-PushStream-Explain", text))
        return hdrs

    def error(self, conn, e: HttpError):
        self.respond(conn, e.status, self.explain(e.explain) + e.headers + NO_CACHE)

    def refusal(self, e: HttpError) -> bytes:
        """The whole answer to a body that is refused before it arrives (Hub.on_body): the
        connection closes after it, unread."""
        return self.head(e.status, self.explain(e.explain) + e.headers + NO_CACHE,
                         content_length=0, keep_alive=False)
