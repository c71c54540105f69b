"""Signed session cookies for the demo main server.

A session is a cookie ``<user>.<session id>.<issued at>.<signature>`` signed with HMAC-SHA256.
Nothing is kept in memory, so sessions survive a restart of ``gogin-server --demo`` as long as
the secret is the same: it is generated once and kept in a file (mode 0600), or passed in
``GOGIN_DEMO_SECRET``.  A new secret (delete the file) ends every session: the page is then
refused and asks to log in again.

Logging out revokes that one session id: stateless cookies would otherwise stay valid until
they expire, and a copied cookie must not outlive the logout.  Revoked ids are kept, with
their expiry, in a JSON file next to the secret.

Files live in ``GOGIN_DEMO_STATE_DIR``, else ``$XDG_STATE_HOME/gogin-demo``
(``~/.local/state/gogin-demo``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from typing import Optional

MAX_AGE = 7 * 86400                 # seconds a session lasts

log = logging.getLogger("gogin.demo")


def state_dir() -> str:
    d = os.environ.get("GOGIN_DEMO_STATE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return os.path.join(base, "gogin-demo")


def _load_or_create_secret(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            secret = fh.read().strip()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret + b"\n")
    try:
        # two demos starting at once: the first secret written wins, both use it
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path, "rb") as fh:
        return fh.read().strip()


class Sessions:
    def __init__(self, directory: Optional[str] = None, secret: Optional[bytes] = None,
                 max_age: float = MAX_AGE):
        self.dir = directory or state_dir()
        if secret is None and os.environ.get("GOGIN_DEMO_SECRET"):
            secret = os.environ["GOGIN_DEMO_SECRET"].encode()
        self.secret_source = "given" if secret else os.path.join(self.dir, "secret")
        if secret is None:
            try:
                secret = _load_or_create_secret(self.secret_source)
            except OSError as e:
                # a read-only home should not stop the demo: sessions then end with the process
                log.warning("demo: cannot keep the session secret in %s (%s): sessions will "
                            "not survive a restart", self.secret_source, e.strerror)
                secret = secrets.token_hex(32).encode()
                self.secret_source = "kept in memory only"
        self.secret = secret
        self.max_age = max_age
        self.revoked_path = os.path.join(self.dir, "revoked.json")
        self.revoked: dict[str, float] = self._load_revoked()

    def _sign(self, payload: str) -> str:
        mac = hmac.new(self.secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def issue(self, user: str) -> str:
        payload = f"{user}.{secrets.token_urlsafe(12)}.{int(time.time())}"
        return f"{payload}.{self._sign(payload)}"

    def parse(self, token: Optional[str]) -> Optional[tuple[str, str]]:
        """(user, session id) of a valid, unexpired, unrevoked token, else None."""
        if not token or token.count(".") != 3:
            return None
        payload, _, sig = token.rpartition(".")
        if not hmac.compare_digest(sig, self._sign(payload)):
            return None
        user, sid, issued = payload.split(".")
        if not issued.isdigit() or time.time() - int(issued) > self.max_age:
            return None
        if sid in self.revoked:
            return None
        return user, sid

    def revoke(self, token: Optional[str]) -> Optional[str]:
        """Ends the session of a valid token; returns its user."""
        found = self.parse(token)
        if found is None:
            return None
        user, sid = found
        now = time.time()
        self.revoked = {s: exp for s, exp in self._load_revoked().items() if exp > now}
        self.revoked[sid] = now + self.max_age
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            tmp = f"{self.revoked_path}.{os.getpid()}.tmp"
            with open(tmp, "w") as fh:
                json.dump(self.revoked, fh)
            os.replace(tmp, self.revoked_path)
        except OSError as e:           # still revoked for this process
            log.warning("demo: cannot write %s (%s)", self.revoked_path, e.strerror)
        return user

    def _load_revoked(self) -> dict[str, float]:
        try:
            with open(self.revoked_path) as fh:
                doc = json.load(fh)
            return {str(k): float(v) for k, v in doc.items()}
        except (OSError, ValueError, AttributeError):
            return {}
