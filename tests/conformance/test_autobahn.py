"""RFC 6455 and RFC 7692 conformance: Autobahn's whole fuzzing-client suite (cases 1-10, and
12.* and 13.*: permessage-deflate) driven by kosoku against gogin's echo location
(tests/conformance/echo.toml, which compresses every message of a client that offers it).

The echo is gogin's own path: a client message goes through client_publish = "open" to the
channel named by the URL path, to which the same client is subscribed, rendered with the raw
"~text~" template.  Every case must end OK, NON-STRICT or INFORMATIONAL (both the message and
the closing-handshake verdict).  Loopback only.

kosoku uses one URL for every case, so all cases of a run share its channel ("autobahn-a",
"autobahn-b").  Cases run one at a time within a run (kosoku's default parallelism 1), so no
two live connections share a channel; raising --parallelism would make cases see each other's
echoes.

Run time: about 15 s for the 301 cases of 1-10 (9.* dominates: 16 MiB messages), about 5.5
minutes for the 216 of 12.* and 13.* (a thousand echo round trips per case) when run one
after the other; the test runs two shards at once, on two channels.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "echo.toml"
ROOT = HERE.parent.parent
CHANNEL = "autobahn"
ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}
SECTIONS = {"1", "2", "3", "4", "5", "6", "7", "9", "10", "12", "13"}   # no section 8, 11
MIN_CASES = 517              # Autobahn's cases: 301 in 1-10, 216 in 12.* and 13.*
START_TIMEOUT = 15.0         # seconds for gogin to accept connections
KOSOKU_TIMEOUT = 1500.0      # seconds for the whole run (takes ~6 min here)


def _kosoku() -> str:
    """The kosoku console script of this interpreter (else the PATH's); a test dependency."""
    local = Path(sys.executable).with_name("kosoku")
    if local.exists():
        return str(local)
    found = shutil.which("kosoku")
    if found is None:
        pytest.fail("kosoku is not installed: it is a test dependency (pip install kosoku, "
                    "or pip install -e '.[test]'); the Autobahn conformance run cannot start",
                    pytrace=False)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(proc: subprocess.Popen, port: int, timeout: float, log) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gogin exited with {proc.returncode} before listening:\n{_read(log)}",
                        pytrace=False)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"gogin did not listen on 127.0.0.1:{port} within {timeout} s", pytrace=False)


@pytest.fixture
def echo_server(tmp_path):
    port = _free_port()
    log = open(tmp_path / "gogin.log", "w+")      # a file, not a pipe: a full pipe would block
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gogin", "--config", str(CONFIG),
         "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_listening(proc, port, START_TIMEOUT, log)
        yield proc, port, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def _read(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()


# Two kosoku runs at once, each on its own channel so they never see each other's echoes:
# the cases wait on round trips far more than they use a core, so two shards halve the time.
SHARDS = {"a": ["-x", "13.*"], "b": ["-i", "13.*"]}


def test_autobahn_fuzzingclient_all_cases_with_compression(echo_server, tmp_path):
    proc, port, log = echo_server
    started = time.monotonic()
    runs = {}
    for shard, selection in SHARDS.items():
        outdir = tmp_path / f"autobahn-{shard}"
        url = f"ws://127.0.0.1:{port}/echo/{CHANNEL}-{shard}"
        cmd = [_kosoku(), *selection, "-o", str(outdir), url]
        runs[shard] = (cmd, outdir, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    cases, outdirs, results = {}, {}, {}
    try:
        for shard, (cmd, outdir, run) in runs.items():
            try:
                out, err = run.communicate(timeout=KOSOKU_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"kosoku did not finish within {KOSOKU_TIMEOUT} s: {' '.join(cmd)}",
                            pytrace=False)
            results[shard] = (run.returncode, out, err)
            index_file = outdir / "index.json"
            assert index_file.exists(), (
                f"kosoku wrote no report (exit {run.returncode}):\n{out}\n{err}")
            index = json.loads(index_file.read_text())
            for agent in index.values():
                for cid, entry in agent.items():
                    cases[cid] = entry
                    outdirs[cid] = outdir
    finally:
        for _, _, run in runs.values():
            if run.poll() is None:
                run.kill()
                run.wait()

    if proc.poll() is not None:
        pytest.fail(f"gogin died during the Autobahn run (exit {proc.returncode}):\n"
                    f"{_read(log)[-4000:]}",
                    pytrace=False)

    failing = sorted(
        (cid for cid, e in cases.items()
         if e["behavior"] not in ACCEPTED or e["behaviorClose"] not in ACCEPTED),
        key=lambda c: [int(p) for p in c.split(".")])
    details = "\n".join(
        f"  {cid}: {cases[cid]['behavior']} / close {cases[cid]['behaviorClose']} "
        f"(remote close code {cases[cid].get('remoteCloseCode')}) -> "
        f"{outdirs[cid] / cases[cid]['reportfile']}" for cid in failing)
    assert not failing, (
        f"{len(failing)} of {len(cases)} Autobahn cases failed: {', '.join(failing)}\n"
        f"{details}")
    for shard, (code, out, err) in results.items():
        assert code == 0, f"kosoku ({shard}) exit {code}:\n{out}\n{err}"

    sections = {cid.split(".")[0] for cid in cases}
    assert sections == SECTIONS, f"unexpected case sections in the run: {sorted(sections)}"
    assert len(cases) >= MIN_CASES, f"only {len(cases)} cases ran (expected {MIN_CASES}+)"

    # Nothing the fuzzer sent may reach Python as an unhandled exception.
    proc.terminate()
    proc.wait(timeout=10)
    err = _read(log)
    assert "Traceback" not in err, f"gogin logged an exception during the run:\n{err}"

    counts: dict[str, int] = {}
    for e in cases.values():
        counts[e["behavior"]] = counts.get(e["behavior"], 0) + 1
    print(f"\nAutobahn: {len(cases)} cases in {time.monotonic() - started:.1f} s: {counts}")
