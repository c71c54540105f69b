"""gogin-server: the command line of the notification server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from gogin import __version__
from gogin.auth import safe_url
from gogin.brokers import BrokerUnavailable
from gogin.config import ConfigError, load

log = logging.getLogger("gogin")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gogin-server",
        description="WebSocket notification server (nginx-push-stream compatible) with "
                    "main-server auth callbacks.")
    p.add_argument("--config", "-c", metavar="FILE", help="TOML configuration file")
    p.add_argument("--listen", "-l", action="append", metavar="HOST:PORT",
                   help="address to listen on (repeatable; overrides server.listen)")
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration and exit (0 if valid)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="overrides server.log_level")
    p.add_argument("--auth-url", metavar="URL", help="main server's subscribe callback")
    p.add_argument("--auth-publish-url", metavar="URL", help="main server's publish callback")
    p.add_argument("--api-key", metavar="KEY", help="API key for the publisher and stats")
    p.add_argument("--demo", action="store_true",
                   help="also run the demo main server and serve the demo page at /")
    p.add_argument("--workers", "-w", type=int, metavar="N",
                   help="run N worker processes on the same port (SO_REUSEPORT) under a "
                        "supervisor that restarts them; N > 1 needs a shared broker "
                        "(broker.type = \"redis\"); overrides server.workers (default 1)")
    p.add_argument("--broker", metavar="URL",
                   help="share channels through this Redis (redis://[:password@]host:port/db, "
                        "rediss:// for TLS) or NATS (nats://host:port, tls://): sets "
                        "broker.type = \"redis\" or \"nats\" and broker.url")
    p.add_argument("--version", action="version", version=f"gogin {__version__}")
    return p


def config_from_args(args):
    overrides = {
        "server.listen": args.listen,
        "server.log_level": args.log_level,
        "server.api_key": args.api_key,
        "server.workers": args.workers,
        "auth.url": args.auth_url,
        "auth.publish_url": args.auth_publish_url,
    }
    if args.broker:
        nats = args.broker.startswith(("nats://", "tls://"))
        overrides["broker.type"] = "nats" if nats else "redis"
        overrides["broker.url"] = args.broker
    cfg = load(args.config, overrides=overrides)
    if args.demo:
        cfg.demo = True
    return cfg


LOG_FORMAT = "%(asctime)s %(levelname)s {worker}%(name)s: %(message)s"


async def run(cfg, ready=None, worker=None) -> int:
    """One gogin node until SIGTERM/SIGINT.  ready(): called once it listens (the supervisor
    waits for it); worker: its number under --workers (logs and /healthz say it)."""
    from gogin.server import Server

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    demo = None
    if cfg.demo:
        from gogin.demo import start_demo
        demo, cfg = await start_demo(cfg)
    server = Server(cfg)
    server.worker = worker
    try:
        await server.start()
    except (OSError, BrokerUnavailable) as e:
        # ListenError: "cannot listen on HOST:PORT: why"; "cannot connect to Redis at URL: why"
        log.error("%s", e)
        if demo is not None:
            await demo.cleanup()
        return 1
    for host, port in server.addresses:
        log.info("gogin %s listening on http://%s:%s (selector: %s)", __version__,
                 f"[{host}]" if ":" in host else host, port, server.hub.backend)
    for loc in sorted(server.locations, key=lambda l: l.path):
        c = loc.cfg
        what = c.role if c.role != "subscriber" else f"subscriber/{c.mode} channels from {c.channels}"
        log.info("  %-20s %s%s", c.path, what, "" if c.public else " (allowed networks only)")
    if cfg.auth.url:
        log.info("main server: subscribe callback %s", safe_url(cfg.auth.url))
    else:
        log.info("main server: none configured (public locations answer 503)")
    if demo is not None:
        host, port = server.addresses[0]
        log.info("demo: open http://%s:%s/ in a browser", host, port)
    if ready is not None:
        ready()

    await stop.wait()
    log.info("stopping: closing connections (WebSocket 1001), up to %.1f s",
             cfg.server.shutdown_timeout)
    await server.stop()
    if demo is not None:
        await demo.cleanup()
    log.info("stopped")
    return 0


def server_main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ConfigError as e:
        print(f"gogin-server: configuration error: {e}", file=sys.stderr)
        return 2
    from gogin import supervisor
    why = supervisor.refusal(cfg)
    if why:
        print(f"gogin-server: configuration error: {why}", file=sys.stderr)
        return 2
    if args.check_config:
        workers = f", {cfg.server.workers} workers" if cfg.server.workers > 1 else ""
        print(f"configuration OK ({args.config or 'defaults'}): "
              f"{len(cfg.locations)} locations, listen {', '.join(cfg.server.listen)}{workers}")
        return 0
    logging.basicConfig(level=cfg.server.log_level.upper(), format=LOG_FORMAT.format(worker=""))
    if cfg.server.workers > 1:
        return supervisor.supervise(cfg, run_worker)
    return _run_loop(run(cfg))


def run_worker(cfg, index: int, ready) -> int:
    """A worker of --workers N (in the process the supervisor forked): its log lines say
    [w<index>]."""
    fmt = logging.Formatter(LOG_FORMAT.format(worker=f"[w{index}] "))
    for handler in logging.getLogger().handlers:
        handler.setFormatter(fmt)
    return _run_loop(run(cfg, ready=ready, worker=index))


def _run_loop(coro) -> int:
    try:
        import uvloop
    except ImportError:          # uvloop is a dependency; this only guards odd platforms
        return asyncio.run(coro)
    return uvloop.run(coro)


if __name__ == "__main__":
    sys.exit(server_main())
