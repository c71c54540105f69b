"""The fuzz targets in the test suite (issue 13).

(a) Every committed corpus and crash file goes through its harness's ``one_input``: fast, no
    atheris needed, and a crash file that fails again is a regression.
(b) Each harness runs under atheris for FUZZ_SECONDS (20 s by default; GOGIN_FUZZ_SECONDS
    changes it) from the committed corpus and must end cleanly.  Skipped where atheris is not
    installed (pyproject's test extra installs it only where it has wheels).
The long runs are scripts/fuzz.sh.
"""

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fuzz_template
from gogin.config import DEFAULT_TEMPLATE

HERE = Path(__file__).resolve().parent
TARGETS = ("http", "frames", "template", "config")
FUZZ_SECONDS = int(os.environ.get("GOGIN_FUZZ_SECONDS", "20"))


def inputs():
    for target in TARGETS:
        for kind in ("corpus", "crashes"):
            folder = HERE / kind / target      # crashes/<target>/ exists once one was found
            for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                if path.is_file() and not path.name.startswith("."):
                    yield pytest.param(target, path, id=f"{kind}/{target}/{path.name}")


@pytest.mark.parametrize("target,path", list(inputs()))
def test_replay(target, path):
    importlib.import_module(f"fuzz_{target}").one_input(path.read_bytes())


def crash_files():
    for param in inputs():
        if param.id.startswith("crashes/"):
            yield param


@pytest.mark.parametrize("target,path", list(crash_files()))
def test_crash_in_a_fresh_process(target, path):
    # Some failures need a fresh process: crashes/template/eventsource-empty-body-first-render
    # (b"#": an EventSource format with an empty template) raised MemoryError only when it was
    # the first wrapped body the process rendered - fanout.pyx's scratch buffer was still NULL.
    # In this process earlier inputs have long allocated it.
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import fuzz_{target}; "
            f"fuzz_{target}.one_input(open({str(path)!r}, 'rb').read())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_every_target_has_a_seed_corpus():
    for target in TARGETS:
        files = list((HERE / "corpus" / target).iterdir())
        assert len(files) >= 20, f"corpus/{target}: {len(files)} files"
        assert all(f.stat().st_size <= 8192 for f in files), f"corpus/{target}: keep them tiny"


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (it has wheels for CPython on Linux "
                           "x86_64 only; see the test extra in pyproject.toml)")
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_run(target, tmp_path):
    new, artifacts = tmp_path / "new", tmp_path / "crash"
    new.mkdir()
    artifacts.mkdir()
    # New corpus entries go to the first directory (a scratch one): the committed corpus
    # is only read.
    cmd = [sys.executable, str(HERE / f"fuzz_{target}.py"), str(new),
           str(HERE / "corpus" / target), f"-max_total_time={FUZZ_SECONDS}",
           "-seed=1",          # the same inputs in every CI run: a finding is reproducible
                               # (scripts/fuzz.sh explores with fresh seeds)
           f"-artifact_prefix={artifacts}/", "-timeout=10", "-rss_limit_mb=2048",
           "-print_final_stats=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FUZZ_SECONDS + 90,
                          cwd=tmp_path)
    found = sorted(artifacts.iterdir())
    report = "\n".join(f"{p.name}: {p.read_bytes()!r}" for p in found)
    assert proc.returncode == 0 and not found, (
        f"fuzz_{target} exited {proc.returncode}; inputs that failed (keep them under "
        f"tests/fuzz/crashes/{target}/):\n{report}\n--- output (tail) ---\n"
        + proc.stderr[-6000:])
    assert "Done " in proc.stderr and "stat::number_of_executed_units" in proc.stderr, \
        proc.stderr[-2000:]
    runs = int(proc.stderr.split("stat::number_of_executed_units:")[1].split()[0])
    assert runs > 1000, f"fuzz_{target} ran only {runs} inputs in {FUZZ_SECONDS} s"


# -- invariant violations found while writing the harnesses (fixed since), as regression tests --

def test_eventsource_event_id_with_newline_stays_one_field():
    """An event id or type with a line break cannot split the event: publishing refuses it
    (400 / an error item / ValueError), and the renderer drops CR and LF from the field too."""
    event_id = b"1\ndata: injected"
    out = fuzz_template.new_format("eventsource", "~text~").render_bytes(b"hi",
                                                                      event_id=event_id)
    assert out == b"id: 1data: injected\ndata: hi\n\n"
    fuzz_template.check_kind("eventsource", out, b"hi", {}, b"1data: injected", b"", 0, 0)


def test_default_template_event_id_with_quote():
    """DEFAULT_TEMPLATE writes ~event-id-json~: an Event-Id with a quote stays valid JSON."""
    out = fuzz_template.new_format("websocket", DEFAULT_TEMPLATE).render_bytes(
        b"hi", event_id=b'say "hi"')
    body = out[2:]                      # a 2-byte WebSocket header: the body is < 126 bytes
    assert json.loads(body)["eventid"] == 'say "hi"'
