"""``gogin-server --workers N``: a supervisor and N real worker processes on one port.

The workers here use the memory broker with GOGIN_WORKERS_ALLOW_MEMORY=1 (the escape hatch for
tests of the supervisor itself: the workers do not share channels), so these tests check the
processes, the port and the signals, not the sharing of channels (tests/cluster/ does that).
Which worker answered: /healthz says it in X-Gogin-Worker; /channels-stats' by_worker gives
the pid of the worker that answered and its subscribers.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import websockets

from gogin_e2e import ROOT, free_port, recv, render_toml, ws_connect

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="SO_REUSEPORT spreading is Linux's")

START_TIMEOUT = 20.0
STARTED = re.compile(r"worker w(\d+) started \(pid (\d+)\)")


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOGIN_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class Supervised:
    """``python -m gogin --workers N`` with its log in a file."""

    def __init__(self, tmp: Path, workers: int = 2, config: dict | None = None,
                 port: int | None = None, env: dict | None = None):
        self.port = port or free_port()
        cfg = dict(config or {})
        server = {"listen": [f"127.0.0.1:{self.port}"], "shutdown_timeout": 1.0}
        server.update(cfg.get("server", {}))
        cfg["server"] = server
        self.config_path = tmp / f"workers-{self.port}.toml"
        self.config_path.write_text(render_toml(cfg))
        self.log_path = tmp / f"workers-{self.port}.log"
        self.workers = workers
        self.env = clean_env(GOGIN_WORKERS_ALLOW_MEMORY="1", **(env or {}))
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, wait: bool = True) -> "Supervised":
        self._fh = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gogin", "--config", str(self.config_path),
             "--workers", str(self.workers)],
            cwd=str(ROOT), env=self.env, stdout=self._fh, stderr=subprocess.STDOUT,
            start_new_session=True)          # its own process group, as in a terminal
        if wait:
            self.wait_log(f"{self.workers} workers ready", START_TIMEOUT)
        return self

    def wait_log(self, text: str, timeout: float = 10.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisor exited {self.proc.returncode} waiting for "
                                     f"{text!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.log()}")
            time.sleep(0.05)
        return self.log()

    def pids(self) -> dict[int, int]:
        """worker number -> pid of its latest process (from the supervisor's log)."""
        return {int(n): int(pid) for n, pid in STARTED.findall(self.log())}

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor still runs after {timeout} s:\n{self.log()}")

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        # workers that outlived the supervisor (they must not): end them by pid
        for pid in self.pids().values():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if hasattr(self, "_fh"):
            self._fh.close()


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (our workers are not our children)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def supervised(tmp_path):
    started = []

    def make(**kw) -> Supervised:
        s = Supervised(tmp_path, **kw)
        started.append(s)
        return s.start()
    try:
        yield make
    finally:
        for s in started:
            s.close()


async def who_answers(base: str, tries: int = 1) -> list[int]:
    """X-Gogin-Worker of `tries` /healthz requests, each on a new connection."""
    seen = []
    conn = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=5)) as http:
        for _ in range(tries):
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
                assert (await r.read()).strip() == b"ok"
                seen.append(int(r.headers["X-Gogin-Worker"]))
    return seen


async def stats_by_pid(base: str, pids: set, tries: int = 200) -> dict[int, int]:
    """/channels-stats on new connections until each of `pids` answered: pid -> subscribers."""
    out: dict[int, int] = {}
    conn = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=5)) as http:
        for _ in range(tries):
            async with http.get(f"{base}/channels-stats") as r:
                assert r.status == 200
                doc = json.loads(await r.read())
            for w in doc["by_worker"]:
                out[int(w["pid"])] = w["subscribers"]
            if set(out) >= pids:
                break
    return out


async def test_two_workers_both_serve_one_port(supervised):
    s = supervised(workers=2)
    pids = s.pids()
    assert sorted(pids) == [1, 2] and len(set(pids.values())) == 2, s.log()
    # new connections land on both workers (a miss on 60 tries: 2**-59)
    seen = await who_answers(s.base, 60)
    assert set(seen) == {1, 2}, seen
    # each worker is a whole node: WebSocket clients spread over both, each worker counts its own
    clients = [await ws_connect(f"ws://127.0.0.1:{s.port}/ws/spread") for _ in range(16)]
    try:
        by_pid = await stats_by_pid(s.base, set(pids.values()))
        assert set(by_pid) == set(pids.values()), (by_pid, pids)
        assert sum(by_pid.values()) == 16, by_pid
        assert all(n > 0 for n in by_pid.values()), by_pid     # 2**-15 that one has none
    finally:
        for ws in clients:
            await ws.close()
    # the log says which worker wrote a line
    log = s.log()
    assert re.search(r"\[w1\] gogin: gogin \S+ listening on http://127\.0\.0\.1:", log), log
    assert re.search(r"\[w2\] gogin: gogin \S+ listening on http://127\.0\.0\.1:", log), log


async def test_sigkill_worker_is_restarted_and_the_port_keeps_serving(supervised):
    s = supervised(workers=2)
    old = s.pids()
    os.kill(old[1], signal.SIGKILL)
    await asyncio.to_thread(s.wait_log, "was killed by signal 9 (SIGKILL)")
    log = s.log()
    assert re.search(rf"worker w1 \(pid {old[1]}\) was killed by signal 9 \(SIGKILL\) after "
                     r"[\d.]+ s; restarting it in 0\.5 s", log), log
    # whichever is up answers meanwhile: every request is served
    assert all(w in (1, 2) for w in await who_answers(s.base, 10))
    await asyncio.to_thread(s.wait_log, "worker w1 started", 10, 2)
    await asyncio.to_thread(s.wait_log, "is serving again", 10)
    new = s.pids()
    assert new[1] != old[1] and new[2] == old[2], (old, new)
    assert not alive(old[1])
    seen = await who_answers(s.base, 60)
    assert set(seen) == {1, 2}, seen                 # the new w1 takes connections again
    by_pid = await stats_by_pid(s.base, {new[1], new[2]})
    assert set(by_pid) == {new[1], new[2]}, by_pid
    # dying young again: the delay doubles (a worker that crashes at start does not spin)
    os.kill(new[1], signal.SIGKILL)
    await asyncio.to_thread(s.wait_log, "was killed by signal 9 (SIGKILL)", 10, 2)
    assert re.search(rf"worker w1 \(pid {new[1]}\) was killed by signal 9 \(SIGKILL\) after "
                     r"[\d.]+ s; restarting it in 1\.0 s", s.log()), s.log()
    await asyncio.to_thread(s.wait_log, "is serving again", 10, 2)


async def test_sigterm_drains_every_worker_with_1001_and_exits_0(supervised):
    s = supervised(workers=2)
    pids = set(s.pids().values())
    clients = [await ws_connect(f"ws://127.0.0.1:{s.port}/ws/drain") for _ in range(16)]
    by_pid = await stats_by_pid(s.base, pids)
    assert set(by_pid) == pids and all(n > 0 for n in by_pid.values()), by_pid
    s.proc.send_signal(signal.SIGTERM)
    codes = []
    for ws in clients:
        with pytest.raises(websockets.ConnectionClosed) as exc:
            await recv(ws, timeout=8)
        codes.append(exc.value.rcvd.code if exc.value.rcvd is not None else None)
    assert codes == [1001] * 16, codes
    rc = await asyncio.to_thread(s.wait, 15)
    assert rc == 0, s.log()
    log = s.log()
    for n, pid in s.pids().items():
        assert f"worker w{n} (pid {pid}) exited with status 0" in log, log
        assert not alive(pid)
    assert "SIGTERM: stopping the workers" in log and log.rstrip().endswith("stopped"), log
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=1).close()


async def test_ctrl_c_to_the_process_group_stops_everything_with_0(supervised):
    """Ctrl-C in a terminal: SIGINT to the supervisor and to every worker at once.  The
    workers drain, the supervisor does not take their exits for deaths to restart."""
    s = supervised(workers=2)
    async with ws_connect(f"ws://127.0.0.1:{s.port}/ws/ctrlc") as ws:
        os.killpg(s.proc.pid, signal.SIGINT)
        with pytest.raises(websockets.ConnectionClosed) as exc:
            await recv(ws, timeout=8)
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1001
    rc = await asyncio.to_thread(s.wait, 15)
    log = s.log()
    assert rc == 0, log
    assert "SIGINT: stopping the workers" in log and "restarting" not in log, log
    assert not any(alive(p) for p in s.pids().values())


async def test_stop_is_bounded_a_stuck_worker_is_killed_and_the_status_says_so(supervised):
    s = supervised(workers=2)
    pids = s.pids()
    os.kill(pids[2], signal.SIGSTOP)          # a worker that cannot drain
    try:
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(s.wait, 20)
        took = time.monotonic() - t0
    finally:
        if alive(pids[2]):
            os.kill(pids[2], signal.SIGCONT)
    assert rc == 1, s.log()
    # shutdown_timeout (1 s) + the supervisor's grace (5 s), not forever
    assert 5.5 < took < 12, took
    log = s.log()
    assert f"worker w2 (pid {pids[2]}) still runs" in log and "SIGKILL" in log, log
    assert f"worker w1 (pid {pids[1]}) exited with status 0" in log, log
    assert not alive(pids[2])


async def test_workers_die_with_a_killed_supervisor(supervised):
    """SIGKILL of the supervisor (nothing it can forward): the workers get SIGTERM from the
    kernel (PR_SET_PDEATHSIG), drain, and free the port."""
    s = supervised(workers=2)
    pids = s.pids()
    s.proc.kill()
    s.proc.wait(timeout=5)
    deadline = time.monotonic() + 10
    while any(alive(p) for p in pids.values()):
        assert time.monotonic() < deadline, s.log()
        await asyncio.sleep(0.05)
    log = s.log()
    assert "[w1] gogin: stopped" in log and "[w2] gogin: stopped" in log, log


def test_a_worker_that_cannot_listen_stops_the_start(tmp_path):
    """The port is held by a socket without SO_REUSEPORT: the first worker's error is the
    supervisor's, with status 1, and no worker is left behind."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        s = Supervised(tmp_path, workers=2, port=port)
        try:
            s.start(wait=False)
            rc = s.wait(START_TIMEOUT)
        finally:
            s.close()
    log = s.log()
    assert rc == 1, log
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in log, log
    assert "before it listened: stopping the others" in log, log
    assert not any(alive(p) for p in s.pids().values())
    assert "Traceback" not in log, log


def run_cli(*args, env=None, timeout=30):
    return subprocess.run([sys.executable, "-m", "gogin", *args], cwd=str(ROOT),
                          env=clean_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)


MEMORY_REFUSAL = ('server.workers: --workers 2 needs a shared broker: broker.type is "memory" '
                  '(set broker.type = "redis" or "nats")')


@pytest.mark.parametrize("how", ["flag", "env", "file", "check-config"])
def test_memory_broker_with_several_workers_is_refused(tmp_path, how):
    port = free_port()
    args, env = ["--listen", f"127.0.0.1:{port}"], {}
    if how == "flag":
        args += ["--workers", "2"]
    elif how == "env":
        env["GOGIN_SERVER_WORKERS"] = "2"
    else:
        path = tmp_path / "w.toml"
        path.write_text("[server]\nworkers = 2\n")
        args += ["--config", str(path)] + (["--check-config"] if how == "check-config" else [])
    r = run_cli(*args, env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert MEMORY_REFUSAL in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(OSError):             # nothing was started
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.parametrize("args,env,text", [
    (["--workers", "0"], {}, "server.workers: must be positive, not 0"),
    (["--workers", "-3"], {}, "server.workers: must be positive, not -3"),
    (["--workers", "1000"], {}, "server.workers: at most 256, not 1000"),
    ([], {"GOGIN_SERVER_WORKERS": "0"},
     "server.workers: must be positive, not 0 (from GOGIN_SERVER_WORKERS)"),
    ([], {"GOGIN_SERVER_WORKERS": "two"}, "server.workers"),
    (["--workers", "2", "--demo"], {"GOGIN_WORKERS_ALLOW_MEMORY": "1"},
     "server.workers: --demo runs one process, not 2 workers"),
    (["--workers", "2", "--listen", "127.0.0.1:0"], {"GOGIN_WORKERS_ALLOW_MEMORY": "1"},
     "server.listen[0]: port 0 would give each of the 2 workers a port of its own"),
])
def test_bad_workers_settings_are_refused_naming_the_key(args, env, text):
    r = run_cli("--check-config", *args, env=env)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert text in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_workers_flag_in_help_and_check_config():
    r = run_cli("--help")
    assert r.returncode == 0 and "--workers N" in r.stdout, r.stdout
    r = run_cli("--check-config", "--workers", "3", env={"GOGIN_WORKERS_ALLOW_MEMORY": "1"})
    assert r.returncode == 0, r.stderr
    assert "3 workers" in r.stdout, r.stdout


def redis_broker_available() -> bool:
    import importlib.util
    if importlib.util.find_spec("gogin.brokers.redis") is None:
        return False
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


needs_redis = pytest.mark.skipif(not redis_broker_available(),
                                 reason="needs gogin.brokers.redis and a Redis on 127.0.0.1:6379")


@needs_redis
async def test_two_workers_share_channels_through_redis(tmp_path):
    """broker.type = "redis": no escape hatch; a publish to the port reaches the subscribers
    of both workers, once each."""
    port = free_port()
    s = Supervised(tmp_path, workers=2, port=port, config={
        "broker": {"type": "redis", "url": "redis://127.0.0.1:6379/0",
                   "key_prefix": "w" + uuid.uuid4().hex[:12], "node_ttl": 1.5}})
    s.env.pop("GOGIN_WORKERS_ALLOW_MEMORY")
    try:
        s.start()
        clients = [await ws_connect(f"ws://127.0.0.1:{port}/ws/shared") for _ in range(16)]
        # by_worker lists every worker, each as of its last heartbeat (node_ttl / 3)
        await asyncio.sleep(1.0)
        by_pid = await stats_by_pid(s.base, set(s.pids().values()))
        assert set(by_pid) == set(s.pids().values()), by_pid
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{s.base}/pub", params={"id": "shared"}, data="to all",
                                 headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 200, await r.text()
        for ws in clients:
            frame = await recv(ws, timeout=5)
            assert json.loads(frame)["text"] == "to all", frame
        for ws in clients:
            with pytest.raises(asyncio.TimeoutError):
                await recv(ws, timeout=0.05)        # once, not once per worker
        # a worker dies: its clients lose their connection, the other worker's keep receiving
        # what is published on the port (the POST lands on the survivor meanwhile)
        pids = s.pids()
        os.kill(pids[1], signal.SIGKILL)
        await asyncio.to_thread(s.wait_log, "was killed by signal 9 (SIGKILL)")

        async def closed(ws) -> bool:
            try:
                await recv(ws, timeout=2)
            except websockets.ConnectionClosed:
                return True
            except asyncio.TimeoutError:
                return False
            raise AssertionError("a message nobody published")
        outcome = await asyncio.gather(*(closed(ws) for ws in clients))
        lost = sum(outcome)
        alive_ws = [ws for ws, gone in zip(clients, outcome) if not gone]
        assert lost == by_pid[pids[1]] and len(alive_ws) == by_pid[pids[2]], \
            (lost, len(alive_ws), by_pid)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{s.base}/pub", params={"id": "shared"}, data="still here",
                                 headers={"Content-Type": "text/plain"}) as r:
                assert r.status == 200, await r.text()
        for ws in alive_ws:
            assert json.loads(await recv(ws, timeout=5))["text"] == "still here"
        for ws in alive_ws:
            await ws.close()
    finally:
        s.close()


def run_broadcast_script(*args) -> tuple[int, dict, str]:
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "workers_broadcast.py"),
                          "--workers", "2", "--connections", "400", "--clients", "2",
                          "--deliver-timeout", "2", *args],
                         cwd=str(ROOT), env=clean_env(), capture_output=True, text=True,
                         timeout=120)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, run.stdout + run.stderr
    return run.returncode, json.loads(lines[-1]), run.stdout + run.stderr


def test_workers_broadcast_script_small_memory():
    """benchmarks/workers_broadcast.py at a small size with the memory broker (the escape
    hatch): two client processes connect everything, both workers hold some, and the broadcast
    reaches exactly the subscribers of the worker that took the POST, so the run fails (1)."""
    rc, doc, out = run_broadcast_script("--broker", "memory")
    assert doc["connected"] == 400 and doc["connect_failed"] == 0, out
    per = doc["per_worker_subscribers"]
    assert len(per) == 2 and sum(per.values()) == 400 and all(per.values()), out
    assert doc["publish_status"] == 200 and doc["received_more"] == 0, out
    assert doc["received_once"] in per.values(), out
    assert doc["ok"] is False and rc == 1, out
    assert doc["gogin_exit"] == 0, out


@needs_redis
def test_workers_broadcast_script_small_redis():
    rc, doc, out = run_broadcast_script("--broker", "redis")
    assert doc["connected"] == 400 and doc["received_once"] == 400, out
    assert doc["ok"] is True and rc == 0, out


def test_unreachable_redis_at_start_stops_the_supervisor_with_1(tmp_path):
    """Every worker's broker fails at start: the supervisor stops and exits 1 (the workers'
    own status), with the worker's message in the log; nothing keeps restarting."""
    dead = free_port()                       # nothing listens there
    s = Supervised(tmp_path, workers=2, config={
        "broker": {"type": "redis", "url": f"redis://127.0.0.1:{dead}/0",
                   "connect_timeout": 0.5}})
    s.env.pop("GOGIN_WORKERS_ALLOW_MEMORY")
    try:
        s.start(wait=False)
        rc = s.wait(START_TIMEOUT)
    finally:
        s.close()
    log = s.log()
    assert rc == 1, log
    assert f"127.0.0.1:{dead}" in log and "before it listened: stopping the others" in log, log
    assert "restarting" not in log, log
    assert not any(alive(p) for p in s.pids().values())
