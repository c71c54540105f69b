"""The README's two set-up commands, run as a person would: from a fresh clone and a fresh
virtual environment.  The commands are read from README.md itself, so they cannot drift."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_command(section: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"^## {re.escape(section)}.*?```sh\n(.*?)```", text, re.S | re.M)
    assert m, f"README has no ```sh block under '## {section}'"
    lines = [l for l in m.group(1).splitlines() if l.strip() and not l.startswith("#")]
    assert len(lines) == 1, f"'## {section}' should give exactly one command: {lines}"
    return lines[0]


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """A clone of this repository's committed state plus a new virtual environment."""
    base = tmp_path_factory.mktemp("readme")
    clone = base / "gogin"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    # uncommitted work in progress is not what a person gets from the repository; but the
    # test must test this tree: copy the working files over the clone
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for f in filter(None, files):
        src = ROOT / f.decode()
        if src.is_file():
            dst = clone / f.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = dict(os.environ)
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return clone, env


def _wait_http(url, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status, r.read()
        except Exception as e:      # not up yet
            last = e
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout}s: {last!r}")


def test_run_command_serves_the_demo(fresh_clone):
    clone, env = fresh_clone
    cmd = readme_command("Run it")
    assert "gogin-server --demo" in cmd
    install, _, run = cmd.partition("&&")
    subprocess.run(install, shell=True, cwd=clone, env=env, check=True, timeout=900,
                   stdout=subprocess.DEVNULL)
    # run it from elsewhere: the installed package must carry the page and the demo
    argv = shlex.split(run)
    argv[0] = shutil.which(argv[0], path=env["PATH"])        # the venv's gogin-server
    proc = subprocess.Popen(argv, cwd="/", env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        status, page = _wait_http("http://127.0.0.1:9080/", 60)
        assert status == 200 and b"gogin" in page
        status, js = _wait_http("http://127.0.0.1:9080/static/gogin.js", 10)
        assert status == 200 and b"WebSocket" in js
        status, body = _wait_http("http://127.0.0.1:9080/healthz", 10)
        assert body == b"ok\n"
        # the README's curl example: a publish from the shell is accepted
        req = urllib.request.Request("http://127.0.0.1:9080/pub?id=all", data=b"hello from curl")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200 and b'"channel": "all"' in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode(errors="replace")
    assert proc.returncode == 0, out
    assert "listening on http://127.0.0.1:9080" in out, out


def test_test_command_installs_and_collects(fresh_clone):
    """The test command, up to pytest's collection (running the whole suite from inside
    itself would only run it twice)."""
    clone, env = fresh_clone
    cmd = readme_command("Test it")
    assert cmd.startswith("scripts/test.sh")
    r = subprocess.run(f"{cmd} --collect-only -q -p no:cacheprovider", shell=True, cwd=clone,
                       env=env, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # -q --collect-only prints "path: N" per file
    total = sum(int(n) for n in re.findall(r"^tests/\S+\.py: (\d+)$", r.stdout, re.M))
    assert total > 100, r.stdout[-2000:]
