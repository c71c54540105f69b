"""The [nats] section (errors name the key; GOGIN_NATS_*), the message rules of ingest (what is
published, what is refused with which kind), and the ack-after-publish rule with a publish that
completes later (an in-process Server whose publish returns an awaitable, as a shared broker's
does), against the private nats-server."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
import websockets

from gogin.brokers import BrokerUnavailable
from gogin.config import ConfigError, load
from gogin.ingest import Ingest, Rejected
from gogin.server import Server
from gogin_e2e import free_port
from nats_helpers import add_stream, nats_connect

URL = "nats://127.0.0.1:4999"


def nats_env(**kw) -> dict:
    env = {"GOGIN_NATS_URL": URL}
    env.update({f"GOGIN_NATS_{k.upper()}": v for k, v in kw.items()})
    return env


def test_nats_section_from_env_and_defaults():
    cfg = load(env=nats_env(ingest_durable="g", ingest_stream="S", ingest_batch="64",
                            ingest_required="false", password="pw"))
    n = cfg.nats
    assert (n.url, n.ingest_durable, n.ingest_stream, n.ingest_batch) == (URL, "g", "S", 64)
    assert n.ingest_required is False and n.password == "pw"
    assert n.ingest_subject == "notify.>" and n.ingest_channel == "subject"
    assert load(env={}).nats.url is None               # ingest off by default


@pytest.mark.parametrize("env, message", [
    ({"GOGIN_NATS_URL": "http://x"}, r"^nats\.url: must be nats://"),
    (nats_env(ingest_subject="a.>.b"), r"^nats\.ingest_subject: 'a\.>\.b' is not"),
    (nats_env(ingest_subject="a b"), r"^nats\.ingest_subject: "),
    (nats_env(ingest_subject_prefix="other."), r"^nats\.ingest_subject_prefix: "),
    (nats_env(ingest_durable="g"), r"^nats\.ingest_stream: a durable consumer"),
    (nats_env(ingest_durable="g.x", ingest_stream="S"), r"^nats\.ingest_durable: "),
    (nats_env(queue_group="q", ingest_durable="g", ingest_stream="S"), r"^nats\.queue_group: "),
    (nats_env(ingest_batch="0"), r"^nats\.ingest_batch: must be positive"),
    (nats_env(ingest_batch="20000"), r"^nats\.ingest_batch: at most 10000"),
    (nats_env(ingest_ack_wait="nan"), r"^nats\.ingest_ack_wait: must be a finite number"),
    (nats_env(ingest_replay="-1"), r"^nats\.ingest_replay: must be >= 0"),
    (nats_env(ingest_channel="header"), r"^nats\.ingest_channel: "),
    (nats_env(tls_ca_file="/nonexistent/ca.pem"), r"^nats\.tls_ca_file: no such file"),
    (nats_env(creds_file="/nonexistent/x.creds"), r"^nats\.creds_file: "),
    (nats_env(foo="1"), r"^nats\.foo: unknown key \(from GOGIN_NATS_FOO\)"),
])
def test_nats_errors_name_the_key(env, message):
    with pytest.raises(ConfigError, match=message):
        load(env=env)


def test_bad_url_error_hides_the_password():
    with pytest.raises(ConfigError) as e:
        load(env={"GOGIN_NATS_URL": "http://user:s3cret@host:4222"})
    assert "s3cret" not in str(e.value)


# -- the message rules (Ingest._publish_nats on a server that is not started) ---------------

class Recorder(Server):
    """A server whose publishes are recorded (the hub is real, not attached to a loop)."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.published = []

    def publish(self, channel, payload, *, event_id=None, event_type=None, binary=None):
        for ch in [channel] if isinstance(channel, str) else channel:
            self.published.append((ch, payload, event_id, event_type, binary))
        return 1


def ingest_for(mode: str, **limits) -> tuple[Ingest, Recorder]:
    env = nats_env(ingest_channel=mode)
    env.update({f"GOGIN_LIMITS_{k.upper()}": str(v) for k, v in limits.items()})
    srv = Recorder(load(env=env))
    return Ingest(srv), srv


def kind_of(ing: Ingest, subject: str, data: bytes, headers=None, seq=None) -> str:
    with pytest.raises(Rejected) as e:
        ing._publish_nats(subject, data, headers, seq)
    return e.value.kind


def test_envelope_rules():
    ing, srv = ingest_for("message", events_channel_id="ev", max_message_size=100)
    ok = [
        ({"channel": "a", "text": "héllo"}, [("a", "héllo".encode(), "7", None, False)]),
        ({"channels": ["a", "b", "a"], "data": base64.b64encode(b"\xff\x00").decode(),
          "event_id": "e1", "event_type": "t"},
         [("a", b"\xff\x00", "e1", "t", True), ("b", b"\xff\x00", "e1", "t", True)]),
        ({"channel": "a", "text": "x", "extra": 1}, [("a", b"x", "7", None, False)]),
    ]
    for doc, want in ok:
        srv.published.clear()
        assert ing._publish_nats("s", json.dumps(doc).encode(), None, 7) is None
        assert srv.published == want
    srv.published.clear()
    assert ing._publish_nats("s", b'{"channel": "a", "text": "core"}', None, None) is None
    assert srv.published == [("a", b"core", None, None, False)]    # core NATS: no event id
    bad = [
        (b"{", "bad_json"), (b"[]", "bad_json"), (b'"x"', "bad_json"),
        (b'{"channel": 5, "text": "x"}', "bad_json"),
        (b'{"channel": "a", "channels": ["b"], "text": "x"}', "bad_json"),
        (b'{"channel": "a", "text": "x", "data": "eA=="}', "bad_json"),
        (b'{"channel": "a", "data": "not base64!"}', "bad_json"),
        (b'{"channel": "a", "text": "\\ud800"}', "bad_json"),
        (b'{"text": "x"}', "no_channel"), (b'{"channels": [], "text": "x"}', "no_channel"),
        (b'{"channel": "ev", "text": "x"}', "forbidden_channel"),
        (b'{"channels": ["a", "ALL"], "text": "x"}', "forbidden_channel"),
        (b'{"channel": "room*", "text": "x"}', "forbidden_channel"),
        (b'{"channel": "a/b", "text": "x"}', "bad_channel"),
        (b'{"channel": "", "text": "x"}', "bad_channel"),
        (b'{"channel": "a\\u0001", "text": "x"}', "bad_channel"),
        (b'{"channel": "a", "text": ""}', "empty"), (b'{"channel": "a"}', "empty"),
        (json.dumps({"channel": "a", "text": "x" * 101}).encode(), "too_large"),
        (b'{"channel": "a", "text": "' + b"x" * 5000 + b'"}', "too_large"),
        (b'{"channel": "a", "text": "x", "event_id": "a\\nb"}', "bad_event_field"),
        (b'{"channel": "a", "text": "x", "event_type": "a\\rb"}', "bad_event_field"),
    ]
    srv.published.clear()
    for data, kind in bad:
        assert kind_of(ing, "s", data, seq=1) == kind, data
    assert srv.published == []        # nothing of a refused message went out (even channel a)


def test_subject_rules():
    ing, srv = ingest_for("subject", events_channel_id="ev", max_message_size=10)
    assert ing._publish_nats("notify.room.1", b"hi", None, 3) is None
    assert ing._publish_nats("notify.r", b"\xff", {"Event-Id": "e", "Event-Type": "t"},
                             None) is None
    assert ing._publish_nats("notify.r", b"text", {"Content-Type": "application/octet-stream"},
                             None) is None
    assert srv.published == [("room.1", b"hi", "3", None, None),
                             ("r", b"\xff", "e", "t", True), ("r", b"text", None, None, True)]
    assert kind_of(ing, "other.room", b"x") == "no_channel"
    assert kind_of(ing, "notify.", b"x") == "no_channel"
    assert kind_of(ing, "notify.ev", b"x") == "forbidden_channel"
    assert kind_of(ing, "notify.ALL", b"x") == "forbidden_channel"
    assert kind_of(ing, "notify.r", b"") == "empty"
    assert kind_of(ing, "notify.r", b"x" * 11) == "too_large"
    assert kind_of(ing, "notify.r", b"x", {"Event-Id": "a\r\nb"}) == "bad_event_field"


def test_redelivery_memory_is_by_stream_sequence_runs():
    ing, _ = ingest_for("subject")
    for s in list(range(1, 101)) + list(range(201, 251)) + [300]:
        ing._note_published(s)
    for s in (1, 50, 100, 201, 250, 300):
        assert ing._was_published(s)
    for s in (0, 101, 150, 200, 251, 299, 301):
        assert not ing._was_published(s)


# -- ack after publish, with a publish that completes later ---------------------------------

class LaterServer(Server):
    """publish() returns an awaitable (as a shared broker's does): it waits for `gate`, then
    fails `fail` times with BrokerUnavailable (nothing published), then publishes."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.gate = asyncio.Event()
        self.fail = 0

    def publish(self, channel, payload, **kw):
        async def later():
            await self.gate.wait()
            if self.fail > 0:
                self.fail -= 1
                raise BrokerUnavailable("shared broker down")
            Server.publish(self, channel, payload, **kw)
        return later()


async def test_ack_only_after_an_awaitable_publish_and_nak_on_failure(natsd):
    nc = await nats_connect(natsd.url)
    js = await add_stream(nc, "LATER", ["later.>"])
    port = free_port()
    cfg = load(env={}, overrides={
        "server.listen": [f"127.0.0.1:{port}"], "nats.url": natsd.url,
        "nats.ingest_subject": "later.>", "nats.ingest_subject_prefix": "later.",
        "nats.ingest_durable": "gl", "nats.ingest_stream": "LATER"})
    srv = LaterServer(cfg)
    await srv.start()
    try:
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws/x")
        await asyncio.sleep(0.2)
        await nc.publish("later.x", b"one")
        await nc.flush()
        for _ in range(50):               # fetched, its publish not complete: not acked
            ci = await js.consumer_info("LATER", "gl")
            if ci.delivered.stream_seq == 1:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        ci = await js.consumer_info("LATER", "gl")
        assert ci.num_ack_pending == 1 and ci.ack_floor.stream_seq == 0
        srv.fail = 1                      # the publish fails: -NAK, delivered again
        srv.gate.set()
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert frame["text"] == "one" and frame["eventid"] == "1"
        await asyncio.sleep(0.3)
        ci = await js.consumer_info("LATER", "gl")
        assert ci.num_ack_pending == 0 and ci.ack_floor.stream_seq == 1
        ing = srv.ingest
        assert (ing.publish_failures, ing.redelivered, ing.duplicates, ing.ingested) == \
            (1, 1, 0, 1)
        await ws.close()
    finally:
        await srv.stop()
        await nc.close()
