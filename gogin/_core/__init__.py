"""The compiled data plane of gogin.

Python code outside this package imports from ``gogin._core`` only, never from its submodules
(tests excepted): the names below are the whole surface, typed in ``__init__.pyi``.  Names are
resolved lazily (PEP 562) so that one compiled module can be rebuilt and tested on its own
while the others are being worked on.
"""

_EXPORTS = {
    # the hub: sockets, connections, the loop turn, the callbacks into Python
    "Hub": "hub", "Connection": "hub", "CoreError": "hub",
    # HTTP/1.1 response heads, as the core writes them
    "build_head": "responses", "build_head_start": "responses", "NO_CACHE_HEADERS": "responses",
    # what the hub hands to Python or takes from it
    "Format": "formats",                # a wire format (Hub.format)
    "format_http_date": "formats",      # the Last-Modified date the long-poll format writes
    "Channel": "registry",              # Hub.channel / Hub.ensure_channel
    "channel_id_problem": "pubroute",   # the channel id rules of every location
    "Request": "http",                  # the parsed request head given to on_request
    # RFC 6455
    "Opcode": "frames", "CloseCode": "frames",
    # the selector backends (native/selector.h)
    "Selector": "selector", "backends": "selector", "default_backend": "selector",
    "READABLE": "selector", "WRITABLE": "selector",
}

__all__ = [  # a literal (static tools read it); tests/core/test_surface.py checks it is _EXPORTS
    "NO_CACHE_HEADERS", "READABLE", "WRITABLE", "Channel", "CloseCode", "Connection", "CoreError",
    "Format", "Hub", "Opcode", "Request", "Selector", "backends", "build_head",
    "build_head_start", "channel_id_problem", "default_backend", "format_http_date",
]


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'gogin._core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"gogin._core.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
