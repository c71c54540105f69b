"""``gogin-server --workers N``: one supervisor process, N worker processes on one port.

Each worker is a whole gogin node (the ``gogin.cli`` run path in a forked process) that binds
its **own** listening socket with ``SO_REUSEPORT``; the supervisor holds no socket at all.  On
Linux the kernel then gives every worker its own accept queue and spreads new connections
over the queues by a hash of the connection's addresses, so no worker wakes for a connection
another one takes, and a worker that dies takes only its own socket with it.  (The other way,
one socket bound by the supervisor and inherited by every worker, is one shared queue: every
worker wakes for each connection and whoever is fastest takes most of them.)

The supervisor:
- forks the N workers and waits until each says it listens (a byte on a pipe);  if one fails
  at this first start (an address in use, a broker that cannot be reached), it stops the
  others and exits with that worker's status;
- restarts a worker that dies, at once if it had run for ``HEALTHY_UPTIME``, else after a
  delay that doubles from ``BACKOFF_FIRST`` up to ``BACKOFF_MAX`` (a worker that crashes at
  start does not spin), and logs which worker died and how (status or signal);
- on SIGTERM or SIGINT sends SIGTERM to every worker (each drains: WebSocket clients get close
  1001, see docs/deployment.md), waits up to ``server.shutdown_timeout + STOP_GRACE`` seconds,
  SIGKILLs what is left, and exits 0 if every worker stopped cleanly, else 1.

Several workers only make sense with a shared broker (``broker.type = "redis"``): with the
memory broker each worker has its own channels, and a publish reaches the subscribers of one
worker.  ``refusal()`` says so (gogin-server exits 2).  ``GOGIN_WORKERS_ALLOW_MEMORY=1`` lifts
that refusal for tests of the supervisor itself: the workers then do not share channels.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
from typing import Callable, Optional

from gogin.config import ConfigError, parse_listen

log = logging.getLogger("gogin.supervisor")

HEALTHY_UPTIME = 10.0       # seconds: a worker that ran so long restarts at once when it dies
BACKOFF_FIRST = 0.5         # seconds before the first restart of a worker that died young
BACKOFF_MAX = 30.0          # cap of the doubling delay between restarts of a failing worker
STOP_GRACE = 5.0            # seconds past server.shutdown_timeout that a stop waits for workers
ALLOW_MEMORY_ENV = "GOGIN_WORKERS_ALLOW_MEMORY"    # "1": workers with the memory broker (tests)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1        # <linux/prctl.h>: a signal for the child when its parent dies


def refusal(cfg, env=None) -> Optional[str]:
    """Why this configuration cannot run as ``server.workers`` processes (None: it can)."""
    n = cfg.server.workers
    if n <= 1:
        return None
    env = os.environ if env is None else env
    if cfg.demo:
        return (f"server.workers: --demo runs one process, not {n} workers "
                "(leave --workers out, or drop --demo)")
    if cfg.broker.type == "memory" and env.get(ALLOW_MEMORY_ENV) != "1":
        return (f"server.workers: --workers {n} needs a shared broker: broker.type is "
                '"memory" (set broker.type = "redis" or "nats")')
    for i, addr in enumerate(cfg.server.listen):
        if parse_listen(addr)[1] == 0:
            return (f"server.listen[{i}]: port 0 would give each of the {n} workers a port of "
                    "its own; workers share one named port")
    return None


def describe(status: int) -> str:
    """A wait status in words: 'exited with status 1', 'was killed by signal 9 (SIGKILL)'."""
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return f"exited with status {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "?"
    return f"was killed by signal {-code} ({name})"


class Worker:
    """One worker slot: w1 .. wN.  The slot stays; its process comes and goes."""

    def __init__(self, index: int):
        self.index = index
        self.name = f"w{index}"
        self.pid: Optional[int] = None
        self.started = 0.0              # monotonic time of the last fork
        self.ready = False              # its server listens (the byte came on ready_fd)
        self.ready_fd: Optional[int] = None
        self.failures = 0               # deaths in a row before HEALTHY_UPTIME
        self.restart_at: Optional[float] = None
        self.status: Optional[int] = None   # wait status of its last exit


class Supervisor:
    """``Supervisor(cfg, target).run()`` -> the exit status of gogin-server.

    target(cfg, index, ready) runs one worker in the forked child and returns its exit status;
    it calls ready() once its server listens."""

    def __init__(self, cfg, target: Callable[..., int]):
        self.cfg = cfg
        self.target = target
        self.workers = [Worker(i + 1) for i in range(cfg.server.workers)]
        self.stop_signal: Optional[int] = None   # set by the signal handler
        self.stopping = False
        self.deadline = 0.0
        self.starting = True            # until every worker was ready once
        self.failed_start: Optional[int] = None  # status of a worker whose first start failed
        self.unclean = False            # a worker that stopped badly or had to be killed
        self._wake_r = self._wake_w = -1

    # -- the supervisor's loop ---------------------------------------------------------------

    def run(self) -> int:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        old = {sig: signal.signal(sig, self._on_stop_signal) for sig in STOP_SIGNALS}
        old[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, _wake_only)
        try:
            return self._loop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_wakeup)
            for w in self.workers:
                self._close_ready(w)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _loop(self) -> int:
        cfg = self.cfg
        log.info("supervisor (pid %d): starting %d workers on %s", os.getpid(),
                 len(self.workers), ", ".join(cfg.server.listen))
        for w in self.workers:
            if not self._try_spawn(w):
                break
        while True:
            now = time.monotonic()
            # the stop first: under systemd (KillMode=control-group) the workers get the same
            # SIGTERM, and one that exits is then not a death to restart
            if self.stop_signal is not None and not self.stopping:
                log.info("%s: stopping the workers (up to %.1f s)",
                         signal.Signals(self.stop_signal).name,
                         cfg.server.shutdown_timeout + STOP_GRACE)
                self._begin_stop(now)
            self._reap()
            live = [w for w in self.workers if w.pid is not None]
            if self.stopping:
                if not live:
                    break
                if now >= self.deadline:
                    for w in live:
                        log.error("worker %s (pid %d) still runs %.1f s after SIGTERM: "
                                  "SIGKILL", w.name, w.pid,
                                  cfg.server.shutdown_timeout + STOP_GRACE)
                        self._signal(w, signal.SIGKILL)
                    self.unclean = True
                    self.deadline = now + 5.0       # reaping a SIGKILLed child is quick
            else:
                for w in self.workers:
                    if w.pid is None and w.restart_at is not None and now >= w.restart_at:
                        self._try_spawn(w)
                if self.starting and all(w.ready for w in self.workers):
                    self.starting = False
                    log.info("%d workers ready (pids %s)", len(self.workers),
                             ", ".join(str(w.pid) for w in self.workers))
            self._wait(self._timeout(now))
        if self.failed_start is not None:
            log.error("stopped: a worker could not start (exit status %d)", self.failed_start)
            return self.failed_start
        if self.unclean:
            log.error("stopped: a worker did not stop cleanly (exit status 1)")
            return 1
        log.info("stopped")
        return 0

    def _timeout(self, now: float) -> float:
        t = 1.0
        if self.stopping:
            t = min(t, self.deadline - now)
        else:
            for w in self.workers:
                if w.pid is None and w.restart_at is not None:
                    t = min(t, w.restart_at - now)
        return max(t, 0.0)

    def _wait(self, timeout: float) -> None:
        fds = [self._wake_r] + [w.ready_fd for w in self.workers if w.ready_fd is not None]
        try:
            readable, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:        # PEP 475 retries; kept for odd platforms
            return
        for fd in readable:
            if fd == self._wake_r:
                try:
                    while os.read(fd, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            w = next(w for w in self.workers if w.ready_fd == fd)
            data = os.read(fd, 16)
            if data:
                w.ready = True
                if not self.starting:
                    log.info("worker %s (pid %d) is serving again", w.name, w.pid)
            self._close_ready(w)        # one byte, or EOF: the pipe has said what it can

    def _on_stop_signal(self, signum, frame):
        if self.stop_signal is None:
            self.stop_signal = signum
        # a second signal during a stop changes nothing: the deadline already bounds it

    def _begin_stop(self, now: float) -> None:
        self.stopping = True
        self.deadline = now + self.cfg.server.shutdown_timeout + STOP_GRACE
        for w in self.workers:
            w.restart_at = None
            if w.pid is not None:
                self._signal(w, signal.SIGTERM)

    def _signal(self, w: Worker, sig: int) -> None:
        try:
            os.kill(w.pid, sig)
        except ProcessLookupError:      # died meanwhile: the next _reap sees it
            pass

    # -- children ----------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = next((w for w in self.workers if w.pid == pid), None)
            if w is not None:
                self._died(w, status)

    def _died(self, w: Worker, status: int) -> None:
        now = time.monotonic()
        pid, uptime, was_ready = w.pid, now - w.started, w.ready
        w.pid, w.status, w.ready = None, status, False
        self._close_ready(w)
        code = os.waitstatus_to_exitcode(status)
        if self.stopping:
            # the SIGTERM came before the worker had its handlers: it had no clients yet
            clean = code == 0 or -code in STOP_SIGNALS
            if not clean:
                self.unclean = True
            (log.info if clean else log.error)("worker %s (pid %d) %s", w.name, pid,
                                                describe(status))
            return
        if self.starting and not was_ready:
            log.error("worker %s (pid %d) %s before it listened: stopping the others",
                      w.name, pid, describe(status))
            self.failed_start = code if code > 0 else 1
            self._begin_stop(now)
            return
        if was_ready and uptime >= HEALTHY_UPTIME:
            w.failures = 0
            delay = 0.0
        else:
            w.failures += 1
            delay = min(BACKOFF_FIRST * 2 ** (w.failures - 1), BACKOFF_MAX)
        w.restart_at = now + delay
        log.warning("worker %s (pid %d) %s after %.1f s; restarting it in %.1f s", w.name, pid,
                    describe(status), uptime, delay)

    def _try_spawn(self, w: Worker) -> bool:
        """Fork w; a fork that fails (EAGAIN: too many processes, ENOMEM) is a failed start."""
        try:
            self._spawn(w)
            return True
        except OSError as e:
            now = time.monotonic()
            if self.starting:
                log.error("cannot start worker %s: %s: stopping the others", w.name, e)
                self.failed_start = 1
                self._begin_stop(now)
            else:
                w.failures += 1
                delay = min(BACKOFF_FIRST * 2 ** (w.failures - 1), BACKOFF_MAX)
                w.restart_at = now + delay
                log.error("cannot start worker %s: %s; trying again in %.1f s", w.name, e,
                          delay)
            return False

    def _close_ready(self, w: Worker) -> None:
        if w.ready_fd is not None:
            os.close(w.ready_fd)
            w.ready_fd = None

    def _spawn(self, w: Worker) -> None:
        w.restart_at = None
        r, wfd = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        # a stop signal for the new worker waits (blocked) until the child has dropped the
        # supervisor's handlers: delivered before, it would only set a flag in the child's copy
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
        except OSError:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(r)
            os.close(wfd)
            raise
        if pid == 0:                                      # the worker
            code = 1
            try:
                os.close(r)
                self._become_worker(parent, mask)
                code = self.target(self.cfg, w.index, lambda: _say_ready(wfd))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                log.exception("worker %s failed", w.name)
            finally:
                try:
                    logging.shutdown()
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(wfd)
        w.pid, w.started, w.ready, w.ready_fd = pid, time.monotonic(), False, r
        log.info("worker %s started (pid %d)", w.name, pid)

    def _become_worker(self, parent: int, mask) -> None:
        """In the forked child: forget the supervisor's signal handling and pipes; die with
        the supervisor (a SIGKILLed supervisor must not leave workers holding the port)."""
        signal.set_wakeup_fd(-1)
        for sig in STOP_SIGNALS + (signal.SIGCHLD,):
            signal.signal(sig, signal.SIG_DFL)   # the worker's loop installs its own handlers
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop sent meanwhile: ends it now
        os.close(self._wake_r)
        os.close(self._wake_w)
        for other in self.workers:
            self._close_ready(other)
        if sys.platform.startswith("linux"):
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:          # the supervisor died before prctl
                os._exit(1)


def _wake_only(signum, frame):
    """SIGCHLD: the handler only has to exist; set_wakeup_fd wakes the loop."""


def _say_ready(fd: int) -> None:
    try:
        os.write(fd, b"r")
    finally:
        os.close(fd)


def supervise(cfg, target: Callable[..., int]) -> int:
    """Run ``cfg.server.workers`` workers until SIGTERM/SIGINT; returns the exit status."""
    why = refusal(cfg)
    if why:
        raise ConfigError(why)
    cfg.server.reuse_port = True        # every worker binds the same port: SO_REUSEPORT
    return Supervisor(cfg, target).run()
