"""The command line: --help, --check-config, startup log, SIGTERM, /healthz, /metrics."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import pytest
import websockets

from gogin_e2e import ROOT, recv, render_toml, ws_connect


def run_cli(*args, timeout=20, env=None, module="gogin"):
    full = dict(os.environ)
    full["PYTHONPATH"] = str(ROOT) + os.pathsep + full.get("PYTHONPATH", "")
    full = {k: v for k, v in full.items() if not k.startswith("GOGIN_")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", module, *args], cwd=str(ROOT), env=full,
                          capture_output=True, text=True, timeout=timeout)


def test_help_exits_0():
    r = run_cli("--help")
    assert r.returncode == 0, r.stderr
    assert "gogin-server" in r.stdout
    assert "--check-config" in r.stdout and "--config" in r.stdout


def test_check_config_valid(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(render_toml({"server": {"listen": ["127.0.0.1:9999"], "api_key": "k"},
                                 "limits": {"max_head_size": 4096},
                                 "auth": {"url": "http://127.0.0.1:1/auth", "timeout": 0.5}}))
    r = run_cli("--check-config", "--config", str(path))
    assert r.returncode == 0, r.stderr
    # an empty file is the default configuration
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert run_cli("--check-config", "--config", str(empty)).returncode == 0


@pytest.mark.parametrize("toml,key", [
    ("[limits]\nmax_head_sise = 100\n", "max_head_sise"),
    ("[limits]\nmax_head_size = -1\n", "limits.max_head_size"),
    ("[limits]\nmax_head_size = 0\n", "limits.max_head_size"),
    ("[limits]\nmax_head_size = \"big\"\n", "limits.max_head_size"),
    ("[server]\nlisten = [\"nowhere\"]\n", "server.listen"),
    ("[server]\nlisten = [\"127.0.0.1:99999\"]\n", "server.listen"),
    ("[server]\nlisten = [\"example.com:80\"]\n", "server.listen"),
    ("[server]\nallowed_networks = [\"10.0.0.0/33\"]\n", "server.allowed_networks"),
    ("[auth]\nurl = \"ftp://x\"\n", "auth.url"),
    ("[auth]\ntimeout = -2\n", "auth.timeout"),
    ("[bogus]\nx = 1\n", "bogus"),
    ("[limits\n", "config file"),
])
def test_check_config_invalid(tmp_path, toml, key):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    r = run_cli("--check-config", "--config", str(path))
    assert r.returncode != 0
    assert key in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_missing_config_file_fails(tmp_path):
    r = run_cli("--check-config", "--config", str(tmp_path / "nope.toml"))
    assert r.returncode != 0
    assert "nope.toml" in r.stderr


async def test_startup_log_names_listen_address(gogin):
    deadline = asyncio.get_running_loop().time() + 5
    while f"127.0.0.1:{gogin.port}" not in gogin.log():
        assert asyncio.get_running_loop().time() < deadline, gogin.log()
        await asyncio.sleep(0.05)
    assert re.search(rf"listening on http://127\.0\.0\.1:{gogin.port}\b", gogin.log())


async def test_sigterm_closes_websocket_clients_with_1001(gogin, http):
    async with ws_connect(f"{gogin.ws}/ws/bye") as ws:
        async with http.post(f"{gogin.base}/pub", params={"id": "bye"}, data=b"hi") as r:
            assert r.status == 200
        await recv(ws)
        gogin.proc.send_signal(signal.SIGTERM)
        with pytest.raises(websockets.ConnectionClosed) as exc:
            await recv(ws, timeout=5)
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1001
    rc = await asyncio.to_thread(gogin.terminate)
    assert rc == 0, gogin.log()
    assert "stopped" in gogin.log()


async def test_healthz_and_metrics(shared_gogin, http):
    g = shared_gogin
    async with http.get(f"{g.base}/healthz") as r:
        assert r.status == 200
        assert (await r.read()).strip() == b"ok"
    async with ws_connect(f"{g.ws}/ws/metrics-probe"):
        async with http.get(f"{g.base}/metrics") as r:
            assert r.status == 200
            text = (await r.read()).decode()
    m = re.search(r"^gogin_connections (\d+)\.0$", text, re.M)     # prometheus_client: floats
    assert m, text
    assert int(m.group(1)) >= 2          # the WebSocket client and this request
    assert "# TYPE gogin_connections gauge" in text
    assert re.search(r"^gogin_published_total \d+\.0$", text, re.M)


def test_taken_port_names_the_address(gogin):
    """A second server on a port in use says which address and why, and exits 1."""
    r = run_cli("--listen", f"127.0.0.1:{gogin.port}", timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"cannot listen on 127.0.0.1:{gogin.port}: address already in use" in r.stderr, \
        r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("var,value,key", [
    ("GOGIN_LIMITS_MAX_HEAD_SIZE", "-1", "limits.max_head_size"),
    ("GOGIN_LIMITS_MAX_HEAD_SIZE", "big", "limits.max_head_size"),
    ("GOGIN_SERVER_LISTEN", "nowhere", "server.listen"),
    ("GOGIN_SERVER_NO_SUCH_KEY", "1", "server.no_such_key"),
])
def test_bad_environment_value_names_the_variable(var, value, key):
    r = run_cli("--check-config", env={var: value})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert key in r.stderr and f"(from {var})" in r.stderr, r.stderr


def test_file_value_names_no_variable(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[limits]\nmax_head_size = -1\n")
    r = run_cli("--check-config", "--config", str(path))
    assert r.returncode == 2 and "limits.max_head_size" in r.stderr
    assert "(from GOGIN_" not in r.stderr


def test_bench_help_shows_two_examples():
    r = run_cli("--help", module="gogin.bench.cli")
    assert r.returncode == 0, r.stderr
    examples = r.stdout.split("examples:", 1)[1]
    runs = [l for l in examples.splitlines() if l.strip().startswith("gogin-bench --")]
    assert len(runs) == 2, examples
    # each example is a command line the parser takes
    from gogin.bench.cli import build_parser
    for line in runs:
        start = examples.index(line)
        cmd = examples[start:].split("\n\n")[0].replace("\\\n", " ")
        build_parser().parse_args(cmd.split()[1:])


def test_pytest_prints_its_summary_line(tmp_path):
    """The README's test command (scripts/test.sh: pytest -q with the project's addopts) ends
    with pytest's "N passed" line, which is what tells a reader (and CI) the count."""
    test = tmp_path / "test_one.py"
    test.write_text("def test_ok():\n    assert True\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path),
                        str(test)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^1 passed in [\d.]+s", r.stdout.strip().splitlines()[-1]), r.stdout
