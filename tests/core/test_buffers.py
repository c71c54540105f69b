"""OutQueue (sans-I/O): ring growth, partial consumption, references released."""

from hypothesis import given, settings, strategies as st

from gogin._core.buffers import _QueueProbe, frame_counters


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=50), max_size=40),
       st.lists(st.integers(1, 120), min_size=1, max_size=20))
def test_queue_returns_exactly_what_was_pushed(chunks, writes):
    """Partial writes of any sizes (cycled): the bytes come out exactly once, in order."""
    live0 = frame_counters()[1]
    q = _QueueProbe()
    for c in chunks:
        q.push(c)
    expected = b"".join(chunks)
    assert q.bytes == len(expected)
    got = b""
    i = 0
    while q.bytes:
        pending = b"".join(q.pending())
        assert expected[len(got):].startswith(pending)
        n = min(writes[i % len(writes)], len(pending))
        i += 1
        got += pending[:n]
        q.consume(n)
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
