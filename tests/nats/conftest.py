"""NATS ingest tests: a private nats-server per module (natsd.NatsServer) and real gogin
processes (tests/server/gogin_e2e.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gogin_e2e import GoginFactory  # noqa: E402
from natsd import NatsServer  # noqa: E402


@pytest.fixture(scope="module")
def natsd(tmp_path_factory):
    srv = NatsServer(tmp_path_factory.mktemp("nats")).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def gogin_factory(tmp_path):
    f = GoginFactory(tmp_path)
    try:
        yield f
    finally:
        f.close()
