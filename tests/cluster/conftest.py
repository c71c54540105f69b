"""Cluster tests: several real gogin processes sharing channels through a real Redis (the
machine's on 127.0.0.1:6379, or one started here when a test restarts it).  Each test uses
its own key prefix, so tests never see each other's channels."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from gogin_e2e import GoginFactory  # noqa: E402
from redis_process import RedisProcess  # noqa: E402

MACHINE_REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def nodes(tmp_path):
    """nodes(n, url=..., prefix=..., **config) -> n gogin processes on one broker."""
    f = GoginFactory(tmp_path)

    def start(n, url=MACHINE_REDIS, prefix="t", **config):
        out = []
        for i in range(n):
            cfg = dict(config)
            broker = {"type": "redis", "url": url, "key_prefix": prefix, "ping_interval": 2.0,
                      "reconnect_max_delay": 0.5, **cfg.pop("broker", {})}
            cfg["broker"] = broker
            out.append(f(cfg, name=f"node{i}"))
        return out
    try:
        yield start
    finally:
        f.close()


@pytest.fixture
def own_redis(tmp_path):
    """redis_factory(appendonly=...) -> a redis-server of this test on a free port."""
    made = []

    def start(**kw):
        r = RedisProcess(tmp_path / f"redis{len(made)}", **kw).start()
        made.append(r)
        return r
    try:
        yield start
    finally:
        for r in made:
            r.stop()
