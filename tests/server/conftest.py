"""End-to-end fixtures: a real gogin-server process (``python -m gogin --config <toml>``) and a
real main server (an aiohttp app on 127.0.0.1).  Loopback only; every wait is bounded."""

from __future__ import annotations

import re

import aiohttp
import pytest
import pytest_asyncio

from gogin_e2e import GoginFactory, MainServer

_counter = [0]


@pytest.fixture
def gogin_factory(tmp_path):
    """gogin_factory(config_dict, port=..., host=...) starts a server; all are stopped with
    SIGTERM at teardown, which asserts exit code 0."""
    f = GoginFactory(tmp_path)
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def shared_gogin(tmp_path_factory):
    """One default-config server for a module (tests use their own channel names)."""
    f = GoginFactory(tmp_path_factory.mktemp("gogin"))
    g = f()
    try:
        yield g
    finally:
        f.close()


@pytest.fixture
def gogin(gogin_factory):
    """A fresh default-config server."""
    return gogin_factory()


@pytest.fixture
def chan(request) -> str:
    """A channel name unique to this test."""
    _counter[0] += 1
    base = re.sub(r"[^a-zA-Z0-9]", "", request.node.name)[-24:]
    return f"{base}{_counter[0]}"


@pytest_asyncio.fixture
async def main_server():
    ms = await MainServer().start()
    try:
        yield ms
    finally:
        await ms.stop()


@pytest_asyncio.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s
