"""pubroute.pyx without sockets: the publisher fast path takes only the common publish, decides
before anything changes, and answers with the Python location's bytes."""

import pytest

from gogin._core import Hub, build_head
from gogin._core.http import parse
from gogin._core.pubroute import PublishRoute, answer_bytes

NO_CACHE = [("Cache-Control", "no-cache, no-store, must-revalidate"),
            ("Expires", "Thu, 01 Jan 1970 00:00:01 GMT")]


def request(target="/pub?id=ch", body=b"hello", *headers, method="POST"):
    head = f"{method} {target} HTTP/1.1\r\nHost: x\r\n" + "".join(h + "\r\n" for h in headers)
    status, req, _, explain = parse((head + "\r\n").encode())
    assert status == 0, explain
    req.body = body
    return req


def test_the_common_publish_is_taken():
    route = PublishRoute()
    assert route.check(request()) == (["ch"], False, "json")
    assert route.check(request(method="PUT")) == (["ch"], False, "json")


@pytest.mark.parametrize("req", [
    request(method="GET"), request(method="DELETE"),
    request(target="/pub"), request(target="/pub?id="), request(target="/pub?x=1&id=ch"),
    request(target="/pub?id=c%20h"),                     # an escape: Python decodes
    request(target="/pub?id=ALL"), request(target="/pub?id=.."),
    request(target="/pub?id=a/b"),                       # several, with the info answer
    request(body=b""),                                   # nothing to publish
    request("/pub?id=ch", b"x", "Event-Id: 1"), request("/pub?id=ch", b"x", "Event-Type: t"),
    request("/pub?id=ch", b"x", "Upgrade: websocket", "Connection: Upgrade"),
    request("/pub?id=ch", b"x", "Accept: text/plain"),    # Python renders plain, yaml, xml
    request("/pub?id=ch", b"x", "Accept: application/yaml"),
])
def test_anything_else_goes_to_python(req):
    assert PublishRoute().check(req) is None


def test_the_network_and_the_api_key_are_checked():
    route = PublishRoute(api_key="s3cret")
    assert route.check(request(), peer_allowed=False) is None
    assert route.check(request()) is None
    assert route.check(request("/pub?id=ch", b"x", "X-Api-Key: wrong")) is None
    assert route.check(request("/pub?id=ch", b"x", "X-Api-Key: s3cret")) is not None
    assert route.check(request("/pub?id=ch", b"x", "Authorization: Bearer s3cret")) is not None
    assert PublishRoute(public=True).check(request(), peer_allowed=False) is not None


def test_limits_cors_and_the_events_channel():
    assert PublishRoute(max_message_size=4).check(request(body=b"12345")) is None
    assert PublishRoute(max_channel_id_length=2).check(request(target="/pub?id=abc")) is None
    assert PublishRoute(cors=True).check(request("/pub?id=ch", b"x", "Origin: http://a")) is None
    assert PublishRoute().check(request("/pub?id=ch", b"x", "Origin: http://a")) is not None
    events = PublishRoute(events_channel="events")
    # a new channel, or the events channel itself: Python emits or refuses
    assert events.check(request(), channels={}) is None
    assert events.check(request(target="/pub?id=events"), channels={"events": 1}) is None
    assert events.check(request(), channels={"ch": 1}) == (["ch"], False, "json")


def test_text_or_binary_and_the_answer_kind():
    route = PublishRoute()
    assert route.check(request(body=b"\xff\xfe"))[1] is True           # not UTF-8
    assert route.check(request("/pub?id=ch", b"ok",
                               "Content-Type: application/octet-stream"))[1] is True
    assert route.check(request("/pub?id=ch", b"x", "Accept: text/x-json"))[2] == "x-json"
    assert route.check(request("/pub?id=ch", b"x", "Accept: */*"))[2] == "json"
    quiet = PublishRoute(info=False)
    assert quiet.check(request(target="/pub?id=a/b/a")) == (["a", "b"], False, "empty")


def test_the_answer_is_the_python_locations_answer():
    hub = Hub()
    try:
        ch = hub.ensure_channel('c"h')
        hub.publish('c"h', b"m")
        info = (b'{"channel": "c\\"h", "published_messages": 1, "stored_messages": 0, '
                b'"subscribers": 0}\r\n')
        assert answer_bytes("json", ch) == build_head(
            200, [("Content-Type", "application/json")] + NO_CACHE, len(info)) + info
        assert answer_bytes("x-json", ch, False) == build_head(
            200, [("Content-Type", "text/x-json")] + NO_CACHE, len(info), False) + info
        assert answer_bytes("empty", ch) == build_head(200, NO_CACHE, 0)
    finally:
        hub.close()
