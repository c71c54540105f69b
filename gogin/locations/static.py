"""Static files under a root (the demo page, gogin.js)."""

from __future__ import annotations

import mimetypes
import os

from gogin.locations.base import Location
from gogin.publish import HttpError


class StaticLocation(Location):
    """Files under `root` (the demo page, gogin.js).  GET/HEAD only; no directory listing."""

    def handle(self, conn, req):
        self.check_access(conn, req)
        if req.method not in ("GET", "HEAD"):
            raise HttpError(405, "Method not allowed.", [("Allow", "GET, HEAD")])
        root = os.path.realpath(self.cfg.root)
        rel = self.tail(req.path)
        if not rel:     # a directory index (.htm too: the demo page is source, not built)
            rel = next((n for n in ("index.html", "index.htm")
                        if os.path.isfile(os.path.join(root, n))), "index.html")
        full = os.path.realpath(os.path.join(root, rel))
        if not full.startswith(root + os.sep) or not os.path.isfile(full):
            raise HttpError(404, "Not found.")
        with open(full, "rb") as fh:
            body = fh.read()
        ctype = mimetypes.guess_type(full)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript",):
            ctype += "; charset=utf-8"
        self.http.respond(conn, 200, [("Content-Type", ctype), ("Cache-Control", "no-cache")],
                          body)
