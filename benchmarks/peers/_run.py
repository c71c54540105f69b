"""The command line shared by the Python peer servers: --host/--port, uvloop when present."""

import argparse
import asyncio
import sys


def run(main) -> None:
    """Parse --host/--port and run the coroutine function main(host, port) to completion."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(main(a.host, a.port))
    else:
        uvloop.run(main(a.host, a.port))
    sys.exit(0)
