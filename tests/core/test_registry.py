"""Registry (sans-I/O): both directions agree after any sequence of operations."""

from hypothesis import given, settings, strategies as st

from gogin._core.registry import RegistryProbe


ops = st.lists(
    st.tuples(st.sampled_from(["sub", "unsub", "close"]),
              st.integers(0, 15), st.sampled_from(["a", "b", "c", "d", "é", "x/y"])),
    max_size=200)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_registry_matches_a_model(seq):
    probe = RegistryProbe()
    model = {}                      # key -> set of channels
    for op, key, ch in seq:
        if op == "sub":
            added = probe.subscribe(key, ch)
            assert added == (ch not in model.get(key, set()))
            model.setdefault(key, set()).add(ch)
        elif op == "unsub":
            removed = probe.unsubscribe(key, ch)
            assert removed == (ch in model.get(key, set()))
            model.get(key, set()).discard(ch)
        else:
            n = probe.unsubscribe_all(key)
            assert n == len(model.pop(key, set()))
        probe.check()
    for key, chans in model.items():
        assert sorted(probe.channels_of(key)) == sorted(chans)
    by_channel = {}
    for key, chans in model.items():
        for ch in chans:
            by_channel.setdefault(ch, set()).add(key)
    for ch, keys in by_channel.items():
        assert sorted(probe.subscribers(ch)) == sorted(keys)
    # empty channels are dropped from the registry
    assert set(probe.registry.channels) == set(by_channel)


def test_counts_and_unsubscribe_all_at_scale():
    probe = RegistryProbe()
    for k in range(5000):
        probe.subscribe(k, "big")
        probe.subscribe(k, f"own{k}")
    assert probe.registry.subscriptions == 10000
    assert len(probe.registry) == 5001
    assert probe.registry.channel("big").subscribers == 5000
    for k in range(0, 5000, 2):
        assert probe.unsubscribe_all(k) == 2
    assert probe.check() == 5000
    assert probe.registry.channel("big").subscribers == 2500
    assert probe.registry.channel("own0") is None
