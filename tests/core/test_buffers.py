"""OutQueue (sans-I/O): ring growth, partial consumption, references released."""

from hypothesis import given, settings, strategies as st

from gogin._core.buffers import _QueueProbe, frame_counters


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=60), st.data())
def test_queue_returns_exactly_what_was_pushed(chunks, data):
    live0 = frame_counters()[1]
    q = _QueueProbe()
    for c in chunks:
        q.push(c)
    expected = b"".join(chunks)
    assert q.bytes == len(expected)
    got = b""
    while q.bytes:
        pending = b"".join(q.pending())
        assert expected[len(got):].startswith(pending)
        n = data.draw(st.integers(1, q.bytes))
        got += pending[:n] if n <= len(pending) else pending
        q.consume(min(n, len(pending)))
    assert got == expected
    assert q.count == 0
    del q
    assert frame_counters()[1] == live0


def test_clear_releases_references():
    live0 = frame_counters()[1]
    q = _QueueProbe()
    for i in range(1000):
        q.push(b"x" * 10)
    assert frame_counters()[1] == live0 + 1000
    del q
    assert frame_counters()[1] == live0
