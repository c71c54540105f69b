"""WebSocket extension negotiation: permessage-deflate (RFC 7692), as a server.

gogin always answers server_no_context_takeover and client_no_context_takeover: every message
is compressed on its own, so the core compresses a message once for every subscriber that
negotiated the same window (instead of once per subscriber), and no connection keeps a zlib
window (32 KiB and more each) for the client's messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

NAME = "permessage-deflate"
MIN_BITS, MAX_BITS = 9, 15     # RFC 7692 §7.1.2: 8..15; zlib has no 8-bit raw deflate window
# RFC 7230 §3.2.6 token / quoted-string, as RFC 6455 §9.1 uses them for extension params
_PARAM = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]+))?\s*$')


@dataclass(frozen=True)
class Deflate:
    """An accepted offer: the answer header and the window the server compresses with."""
    response: str
    server_bits: int


def negotiate_deflate(header: Optional[str]) -> Optional[Deflate]:
    """The first acceptable permessage-deflate offer of a Sec-WebSocket-Extensions header
    (offers are listed by preference, RFC 7692 §5), or None: no offer, or none acceptable (an
    unknown or repeated parameter, a bad value, a server window of 8)."""
    if not header:
        return None
    for offer in _split(header, ","):
        name, *params = _split(offer, ";")
        if name.strip().lower() != NAME:
            continue
        accepted = _accept(params)
        if accepted is not None:
            return accepted
    return None


def _accept(params: list[str]) -> Optional[Deflate]:
    seen: dict[str, Optional[str]] = {}
    for raw in params:
        m = _PARAM.match(raw)
        if m is None:
            return None
        key, value = m.group(1).lower(), m.group(2)
        if key in seen:
            return None                       # §7: a parameter given twice declines the offer
        if value is not None and value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        seen[key] = value
    bits = MAX_BITS
    for key, value in seen.items():
        if key in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                return None                   # §7.1.1: these take no value
        elif key == "server_max_window_bits":
            if not _window(value):
                return None
            bits = int(value)
            if bits < MIN_BITS:
                return None                   # 8: declined, see MIN_BITS
        elif key == "client_max_window_bits":
            if value is not None and not _window(value):
                return None                   # §7.1.2.2: no value, or 8..15
        else:
            return None                       # an unknown parameter declines the offer
    response = f"{NAME}; server_no_context_takeover; client_no_context_takeover"
    if "server_max_window_bits" in seen:
        response += f"; server_max_window_bits={bits}"
    return Deflate(response, bits)


def _window(value: Optional[str]) -> bool:
    # §7.1.2: a decimal integer 8..15, no leading zero
    return value is not None and value.isdigit() and value[0] != "0" and 8 <= int(value) <= 15


def _split(text: str, sep: str) -> list[str]:
    """Split on sep outside quoted strings."""
    out, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out
