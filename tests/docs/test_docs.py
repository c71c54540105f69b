"""docs/configuration.md must match gogin/config.py: every key of every section documented once,
with its real default, and no documented key that does not exist."""

import os
import re
import tomllib

import msgspec
import pytest

from gogin import config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "docs", "configuration.md")

SECTIONS = {
    "`[server]`": config.Server,
    "`[limits]`": config.Limits,
    "`[auth]`": config.Auth,
    "`[auth.token]`": config.TokenAuth,
    "`[broker]`": config.Broker,
    "`[nats]`": config.Nats,
    "`[[locations]]`": config.Location,
    "Top level": config.Config,
}
NESTED = {"server", "limits", "auth", "broker", "nats", "locations"}   # Config fields: sections


def read_doc() -> str:
    with open(DOC, encoding="utf-8") as fh:
        return fh.read()


def section_text(doc: str, heading: str) -> str:
    """The text of the '## heading' section, up to the next '## '."""
    m = re.search(r"^## " + re.escape(heading) + r"[ \t]*$(.*?)(?=^## |\Z)", doc, re.M | re.S)
    assert m, f"no '## {heading}' section in docs/configuration.md"
    return m.group(1)


def split_row(line: str) -> list[str]:
    # cells are separated by '|' that is not escaped as '\|'
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip() for c in cells[1:-1]]


def key_table(text: str) -> dict[str, str]:
    """Rows of the first '| key | type | default | meaning |' table: key -> default cell."""
    rows = {}
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("| key | type | default |"))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = split_row(line)
        key = cells[0].strip("`")
        assert key not in rows, f"key {key} documented twice"
        rows[key] = cells[2]
    return rows


def parse_default(cell: str):
    """'required' / 'unset' / a TOML value in backticks."""
    if cell == "required":
        return msgspec.NODEFAULT
    if cell == "unset":
        return None
    m = re.fullmatch(r"`(.*)`", cell)
    assert m, f"default cell {cell!r} is not `toml value`, 'unset' or 'required'"
    return tomllib.loads("v = " + m.group(1))["v"]


def actual_default(f: msgspec.structs.FieldInfo):
    if f.default is not msgspec.NODEFAULT:
        return f.default
    if f.default_factory is not msgspec.NODEFAULT:
        return f.default_factory()
    return msgspec.NODEFAULT


@pytest.mark.parametrize("heading", list(SECTIONS))
def test_every_key_documented_with_its_default(heading):
    struct = SECTIONS[heading]
    documented = key_table(section_text(read_doc(), heading))
    fields = [f for f in msgspec.structs.fields(struct)
              if not (struct is config.Config and f.name in NESTED)]
    if struct is config.Auth:      # auth.token: a section of its own, a table row here
        documented.pop("token", None)
        fields = [f for f in fields if f.name != "token"]
    names = {f.name for f in fields}
    assert names - set(documented) == set(), f"{heading}: undocumented keys"
    assert set(documented) - names == set(), f"{heading}: documented keys that do not exist"
    for f in fields:
        want = actual_default(f)
        got = parse_default(documented[f.name])
        assert got == want and type(got) is type(want), \
            f"{heading} {f.name}: doc says {got!r}, config.py has {want!r}"


def test_default_locations_table():
    doc = read_doc()
    text = doc.split("<!-- default-locations -->", 1)[1]
    lines = [l for l in text.strip().splitlines()]
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append(split_row(line))
    want = config.default_locations()
    assert len(rows) == len(want)
    for cells, loc in zip(rows, want):
        path, role, mode, channels, public, client_publish = cells
        assert path.strip("`") == loc.path
        assert role == loc.role
        if loc.role == "subscriber":
            assert mode == loc.mode, loc.path
        if loc.role in ("subscriber", "publisher", "stats"):
            assert channels == loc.channels, loc.path
        assert public == ("yes" if loc.public else "no"), loc.path
        assert client_publish == loc.client_publish, loc.path
        if loc.path == "/iframe/":      # documented apart: the forever-iframe page
            assert (loc.template, loc.content_type, loc.ping_interval, loc.ttl) == \
                (config.IFRAME_TEMPLATE, "text/html; charset=utf-8", 10.0, 0.0)
            continue
        assert loc.template == config.DEFAULT_TEMPLATE and loc.ping_interval == 30.0 \
            and loc.ttl == 0.0


def test_toml_examples_are_valid(tmp_path):
    """Every ```toml block of the page loads and validates."""
    blocks = re.findall(r"```toml\n(.*?)```", read_doc(), re.S)
    assert blocks
    for i, block in enumerate(blocks):
        p = tmp_path / f"ex{i}.toml"
        p.write_text(block)
        config.load(str(p), env={})


def test_documented_errors_name_the_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[limits]\nmax_head_size = "x"\n')
    with pytest.raises(config.ConfigError, match=r"^limits\.max_head_size: "):
        config.load(str(p), env={})
    with pytest.raises(config.ConfigError, match=r"^limits\.backpressure_policy: "):
        config.load(env={"GOGIN_LIMITS_BACKPRESSURE_POLICY": "dro"})
    with pytest.raises(config.ConfigError, match=r"^server\.foo: unknown key"):
        config.load(env={"GOGIN_SERVER_FOO": "1"})


def test_precedence_file_env_flags(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[server]\nlisten = ["127.0.0.1:1"]\napi_key = "file"\n')
    env = {"GOGIN_SERVER_LISTEN": "127.0.0.1:2,[::1]:2", "GOGIN_AUTH_URL": "http://a/",
           "GOGIN_SERVER_REUSE_PORT": "true", "GOGIN_LIMITS_MAX_BACKPRESSURE": "65536"}
    cfg = config.load(str(p), env=env)
    assert cfg.server.listen == ["127.0.0.1:2", "[::1]:2"]
    assert cfg.server.api_key == "file"
    assert cfg.auth.url == "http://a/"
    assert cfg.server.reuse_port is True and cfg.limits.max_backpressure == 65536
    cfg = config.load(str(p), env=env, overrides={"server.listen": ["127.0.0.1:3"]})
    assert cfg.server.listen == ["127.0.0.1:3"]
    # [[locations]] in a file replaces the default table
    p.write_text('[[locations]]\npath = "/x/"\nrole = "subscriber"\n')
    assert [l.path for l in config.load(str(p), env={}).locations] == ["/x/"]
