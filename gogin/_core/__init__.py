"""The compiled data plane of gogin.

Python code outside this package imports from ``gogin._core`` only, never from its submodules.
Names are resolved lazily (PEP 562) so that one compiled module can be rebuilt and tested on
its own while the others are being worked on.
"""

_EXPORTS = {
    "Hub": "hub", "Connection": "hub", "CoreError": "hub", "Format": "hub",
    "Opcode": "frames", "CloseCode": "frames",
    "Selector": "selector", "backends": "selector", "default_backend": "selector",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'gogin._core' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"gogin._core.{mod}"), name)
    globals()[name] = value
    return value
