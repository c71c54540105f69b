"""gogin: a WebSocket notification server with a Cython core.

Public API: ``serve()`` / ``Server`` to run a node inside an asyncio application, ``Config`` and
``load_config`` for configuration, the auth types for Python auth hooks.
"""

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "Server": "gogin.server", "serve": "gogin.server",
    "Config": "gogin.config", "ConfigError": "gogin.config", "load_config": "gogin.config",
    "Decision": "gogin.auth", "PublishDecision": "gogin.auth",
    "SubscribeRequest": "gogin.auth", "PublishRequest": "gogin.auth",
    "CallableAuth": "gogin.auth",
    "Hub": "gogin._core",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    # lazy: `import gogin` stays cheap and never builds anything it doesn't need
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'gogin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(mod), "load" if name == "load_config" else name)
    globals()[name] = value
    return value
