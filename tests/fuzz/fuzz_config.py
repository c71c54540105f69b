"""Fuzz target: the configuration loader (``gogin.config.load`` on a TOML file).

    python tests/fuzz/fuzz_config.py tests/fuzz/corpus/config -max_total_time=60

The input is the file's bytes.  Invariants:
- ``load`` returns a Config or raises ConfigError with a message - nothing else, whatever
  the bytes (not UTF-8, not TOML, wrong types, absurd values);
- a Config it returns satisfies what ``Config.validate`` promises: every listen address
  parses, the positive limits are > 0, the others >= 0, tick in (0, 10], flush_pacing in
  [0, 10], location paths start with '/' and are unique - comparisons written so that NaN
  fails them, since TOML has nan and inf.
The environment is left out (env={}): the fuzz input is the file alone.
"""

import atexit
import math
import os
import shutil
import tempfile

import msgspec

from _fuzzing import feature, main
from gogin import config

# load() reads a file: one per process, rewritten for each input.  On Linux an in-memory one
# (libFuzzer ends the process without running atexit: a temporary folder would stay behind);
# elsewhere (a replay without atheris) a temporary folder removed at exit.
if hasattr(os, "memfd_create"):
    _FD = os.memfd_create("gogin-fuzz-config")
    PATH = f"/proc/self/fd/{_FD}"
else:
    _FD = None
    _dir = tempfile.mkdtemp(prefix="gogin-fuzz-config-")
    atexit.register(shutil.rmtree, _dir, True)
    PATH = os.path.join(_dir, "gogin.toml")

POSITIVE = {"server": ("backlog", "max_connections", "tick"),
            "limits": ("max_head_size", "max_headers", "max_body_size", "max_message_size",
                       "max_backpressure", "header_timeout", "keepalive_timeout",
                       "max_channel_id_length", "max_number_of_channels"),
            "auth": ("timeout",)}
NON_NEGATIVE = {"limits": ("max_subscribers_per_channel", "wildcard_channel_max_qtd",
                           "channel_inactivity_time", "max_messages_stored_per_channel",
                           "message_ttl", "max_stored_bytes")}


def load(data: bytes):
    if _FD is not None:
        os.ftruncate(_FD, 0)
        os.pwrite(_FD, data, 0)
    else:
        with open(PATH, "wb") as fh:
            fh.write(data)
    return config.load(PATH, env={})


def check_config(cfg):
    assert isinstance(cfg, config.Config), cfg
    for addr in cfg.server.listen:
        host, port = config.parse_listen(addr)
        assert 0 <= port <= 65535, addr
    for section, keys in POSITIVE.items():
        for key in keys:
            value = getattr(getattr(cfg, section), key)
            assert value > 0, f"{section}.{key} = {value!r} passed validation"
    for section, keys in NON_NEGATIVE.items():
        for key in keys:
            value = getattr(getattr(cfg, section), key)
            assert value >= 0, f"{section}.{key} = {value!r} passed validation"
    assert 0 < cfg.server.tick <= 10, cfg.server.tick
    assert 0 <= cfg.server.flush_pacing <= 10, cfg.server.flush_pacing
    paths = [loc.path for loc in cfg.locations]
    assert all(p.startswith("/") for p in paths) and len(set(paths)) == len(paths), paths
    for loc in cfg.locations:
        assert loc.ping_interval >= 0 and loc.ttl >= 0, loc
        assert loc.max_message_size is None or loc.max_message_size > 0, loc
    # every float the loader let through is a number (nan compares false to everything)
    for struct in (cfg.server, cfg.limits, cfg.auth, *cfg.locations):
        for name in struct.__struct_fields__:
            value = getattr(struct, name)
            assert not (isinstance(value, float) and math.isnan(value)), (name, value)


def one_input(data: bytes) -> None:
    try:
        cfg = load(data)
    except config.ConfigError as e:
        assert str(e), "a ConfigError names the key and the problem"
        feature(str(e).partition(":")[0])      # the key refused: worth telling apart
        return
    check_config(cfg)
    # what was loaded, written back as TOML (which has no null: unset keys are left out),
    # loads the same
    assert load(msgspec.toml.encode(_without_none(msgspec.to_builtins(cfg)))) == cfg


def _without_none(value):
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


if __name__ == "__main__":
    main(one_input)
