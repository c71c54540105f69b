"""gogin: a WebSocket notification server with a Cython core."""

__version__ = "0.1.0.dev0"
