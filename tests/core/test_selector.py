"""Contract tests for gogin._core.selector, run on every backend compiled in (epoll + poll on
Linux, kqueue + poll on macOS/BSD).  Real socketpairs and pipes, no mocks."""

import errno
import os
import resource
import select
import socket
import time

import pytest

from gogin._core.selector import READABLE, WRITABLE, Selector, backends, default_backend

BACKENDS = backends()


@pytest.fixture(params=BACKENDS)
def sel(request):
    with Selector(request.param) as s:
        yield s


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def ensure_nofile(need):
    """Raise the soft fd limit up to the hard one if needed; False if still too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and (hard == resource.RLIM_INFINITY or hard >= need):
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        soft = need
    return soft >= need


def events(sel, timeout=0):
    return dict(sel.select(timeout))


# ---- module surface ----

def test_module_surface():
    assert READABLE == 1 and WRITABLE == 2
    assert "poll" in BACKENDS
    assert default_backend() in BACKENDS
    if os.uname().sysname == "Linux":
        assert BACKENDS[0] == "epoll"


def test_default_and_named_backend():
    with Selector() as s:
        assert s.name == default_backend()
    for name in BACKENDS:
        with Selector(name) as s:
            assert s.name == name


def test_unknown_backend_names_available():
    with pytest.raises(ValueError) as exc:
        Selector("nope")
    for name in BACKENDS:
        assert name in str(exc.value)


def test_not_compiled_backend_rejected():
    missing = [n for n in ("epoll", "kqueue") if n not in BACKENDS]
    assert missing  # one of them is never available on a given platform
    with pytest.raises(ValueError):
        Selector(missing[0])


def test_bad_maxfired():
    with pytest.raises(ValueError):
        Selector(maxfired=0)


# ---- register / modify / unregister ----

def test_readable_after_peer_writes(sel, pair):
    a, b = pair
    sel.register(a.fileno(), READABLE)
    assert events(sel) == {}
    b.send(b"x")
    assert events(sel, 1.0) == {a.fileno(): READABLE}
    # level-triggered: still reported until read
    assert events(sel) == {a.fileno(): READABLE}
    assert a.recv(10) == b"x"
    assert events(sel) == {}


def test_writable_on_idle_socket(sel, pair):
    a, _ = pair
    sel.register(a.fileno(), WRITABLE)
    assert events(sel) == {a.fileno(): WRITABLE}


def test_both_in_one_event(sel, pair):
    a, b = pair
    b.send(b"x")
    sel.register(a.fileno(), READABLE | WRITABLE)
    assert events(sel) == {a.fileno(): READABLE | WRITABLE}


def test_modify_changes_interest(sel, pair):
    a, b = pair
    sel.register(a.fileno(), READABLE)
    assert events(sel) == {}
    sel.modify(a.fileno(), WRITABLE)
    assert events(sel) == {a.fileno(): WRITABLE}
    b.send(b"x")
    sel.modify(a.fileno(), READABLE)
    assert events(sel) == {a.fileno(): READABLE}


def test_none_mask_reports_nothing(sel, pair):
    a, b = pair
    sel.register(a.fileno(), 0)
    b.send(b"x")
    assert events(sel) == {}
    # still registered: modify works, add fails
    with pytest.raises(FileExistsError):
        sel.register(a.fileno(), READABLE)
    sel.modify(a.fileno(), READABLE)
    assert events(sel) == {a.fileno(): READABLE}
    sel.modify(a.fileno(), 0)
    assert events(sel) == {}


def test_none_mask_hides_hangup_and_does_not_spin(sel, pair):
    # epoll/poll report HUP even with no interest; a GG_NONE fd must not wake the selector
    a, b = pair
    sel.register(a.fileno(), 0)
    b.close()
    t0 = time.monotonic()
    assert sel.select(0.05) == []
    assert time.monotonic() - t0 >= 0.03


def test_unregister_stops_events(sel, pair):
    a, b = pair
    sel.register(a.fileno(), READABLE)
    b.send(b"x")
    assert events(sel) == {a.fileno(): READABLE}
    sel.unregister(a.fileno())
    assert events(sel) == {}


def test_peer_eof_is_readable(sel, pair):
    a, b = pair
    sel.register(a.fileno(), READABLE)
    b.close()
    ev = events(sel, 1.0)
    assert ev.get(a.fileno(), 0) & READABLE
    assert a.recv(10) == b""


def test_peer_eof_with_write_interest(sel, pair):
    a, b = pair
    sel.register(a.fileno(), WRITABLE)
    b.close()
    ev = events(sel, 1.0)
    # the caller is told to write (and will see EPIPE) and read (and see EOF)
    assert ev.get(a.fileno(), 0) & WRITABLE


def test_pipe(sel):
    r, w = os.pipe()
    try:
        sel.register(r, READABLE)
        sel.register(w, WRITABLE)
        assert events(sel) == {w: WRITABLE}
        os.write(w, b"hello")
        assert events(sel) == {r: READABLE, w: WRITABLE}
        sel.unregister(w)
        os.close(w)
        w = -1
        assert os.read(r, 10) == b"hello"
        assert events(sel, 1.0).get(r, 0) & READABLE  # writer gone: EOF
        assert os.read(r, 10) == b""
        sel.unregister(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


# ---- errors ----

def test_add_twice_is_eexist(sel, pair):
    a, _ = pair
    sel.register(a.fileno(), READABLE)
    with pytest.raises(OSError) as exc:
        sel.register(a.fileno(), WRITABLE)
    assert exc.value.errno == errno.EEXIST
    assert exc.value.strerror == os.strerror(errno.EEXIST)


def test_mod_absent_is_enoent(sel, pair):
    a, _ = pair
    with pytest.raises(OSError) as exc:
        sel.modify(a.fileno(), READABLE)
    assert exc.value.errno == errno.ENOENT


def test_remove_absent_is_enoent(sel, pair):
    a, _ = pair
    with pytest.raises(OSError) as exc:
        sel.unregister(a.fileno())
    assert exc.value.errno == errno.ENOENT
    sel.register(a.fileno(), READABLE)
    sel.unregister(a.fileno())
    with pytest.raises(OSError) as exc:
        sel.unregister(a.fileno())
    assert exc.value.errno == errno.ENOENT


def test_negative_fd_rejected(sel):
    with pytest.raises(OSError):
        sel.register(-1, READABLE)
    with pytest.raises(OSError) as exc:
        sel.modify(-1, READABLE)
    assert exc.value.errno == errno.ENOENT


def test_large_fd_number_grows_tables(sel, pair):
    a, b = pair
    hi = 5000  # past every backend's initial table (setsize 1024): forces growth
    if not ensure_nofile(hi + 1):
        pytest.skip("RLIMIT_NOFILE too low")
    fd = os.dup2(a.fileno(), hi)
    try:
        sel.register(fd, READABLE)
        b.send(b"x")
        assert events(sel) == {fd: READABLE}
        sel.unregister(fd)
    finally:
        os.close(fd)


# ---- timeouts ----

def test_timeout_zero_returns_at_once(sel, pair):
    a, _ = pair
    sel.register(a.fileno(), READABLE)
    t0 = time.monotonic()
    assert sel.select(0) == []
    assert time.monotonic() - t0 < 0.5


def test_timeout_waits(sel, pair):
    a, _ = pair
    sel.register(a.fileno(), READABLE)
    t0 = time.monotonic()
    assert sel.select(0.05) == []
    dt = time.monotonic() - t0
    assert 0.04 <= dt < 2.0


def test_tiny_timeout_is_rounded_up(sel):
    t0 = time.monotonic()
    assert sel.select(0.0001) == []
    assert time.monotonic() - t0 < 1.0


def test_block_none_returns_when_ready(sel, pair):
    a, b = pair
    sel.register(a.fileno(), READABLE)
    b.send(b"x")
    assert sel.select(None) == [(a.fileno(), READABLE)]


# ---- fd reuse and scale ----

def test_fd_reuse_after_close(sel):
    a, b = socket.socketpair()
    fd = a.fileno()
    sel.register(fd, READABLE)
    b.send(b"x")
    assert events(sel) == {fd: READABLE}
    sel.unregister(fd)
    a.close()
    b.close()
    c, d = socket.socketpair()
    try:
        assert c.fileno() == fd  # lowest free number is reused
        sel.register(fd, READABLE)
        assert events(sel) == {}
        d.send(b"y")
        assert events(sel) == {fd: READABLE}
    finally:
        sel.unregister(fd)
        c.close()
        d.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_fds_all_reported_with_small_maxfired(backend):
    n, maxfired = 500, 64
    if not ensure_nofile(2 * n + 64):
        pytest.skip("RLIMIT_NOFILE too low")
    pairs = [socket.socketpair() for _ in range(n)]
    try:
        with Selector(backend, maxfired=maxfired) as sel:
            assert sel.maxfired == maxfired
            for a, b in pairs:
                sel.register(a.fileno(), READABLE)
                b.send(b"x")
            want = {a.fileno() for a, _ in pairs}
            # without draining: level-triggered fds stay ready, yet none may be starved
            seen = set()
            for _ in range(4 * n // maxfired):
                got = sel.select(0)
                assert 0 < len(got) <= maxfired
                assert all(m == READABLE for _, m in got)
                seen.update(fd for fd, _ in got)
            assert seen == want
            # and draining as a real caller does: each fd exactly once until all are read
            drained = []
            while True:
                got = sel.select(0)
                if not got:
                    break
                assert len(got) <= maxfired
                for fd, _ in got:
                    assert os.read(fd, 10) == b"x"
                    drained.append(fd)
            assert sorted(drained) == sorted(want)
            # unregister half (swap-remove in the poll backend), the rest still work
            for a, _ in pairs[::2]:
                sel.unregister(a.fileno())
            for _, b in pairs:
                b.send(b"z")
            seen = set()
            while True:
                got = sel.select(0)
                if not got:
                    break
                for fd, _ in got:
                    os.read(fd, 10)
                    seen.add(fd)
            assert seen == {a.fileno() for a, _ in pairs[1::2]}
    finally:
        for a, b in pairs:
            a.close()
            b.close()


# ---- fileno: what asyncio's add_reader relies on ----

def test_fileno_pollable_or_minus_one(sel, pair):
    a, b = pair
    fd = sel.fileno()
    if sel.name == "poll":
        assert fd == -1
        return
    assert fd >= 0
    sel.register(a.fileno(), READABLE)
    p = select.poll()
    p.register(fd, select.POLLIN)
    assert p.poll(0) == []
    b.send(b"x")
    assert p.poll(1000) == [(fd, select.POLLIN)]
    assert sel.select(0) == [(a.fileno(), READABLE)]


# a poll set has no fd (the hub registers each fd with the loop instead): not in this test
@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "poll"])
def test_fileno_usable_by_asyncio(backend, pair):
    import asyncio

    sel = Selector(backend)
    a, b = pair
    sel.register(a.fileno(), READABLE)

    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.add_reader(sel.fileno(), lambda: fut.done() or fut.set_result(sel.select(0)))
        loop.call_later(0.01, b.send, b"x")
        try:
            return await asyncio.wait_for(fut, 2.0)
        finally:
            loop.remove_reader(sel.fileno())

    assert asyncio.run(main()) == [(a.fileno(), READABLE)]


# ---- lifecycle ----

def test_close_idempotent_and_guards(pair):
    a, _ = pair
    for name in BACKENDS:
        s = Selector(name)
        s.register(a.fileno(), READABLE)
        s.close()
        s.close()
        assert s.closed
        with pytest.raises(ValueError):
            s.select(0)
        with pytest.raises(ValueError):
            s.register(a.fileno(), READABLE)
        with pytest.raises(ValueError):
            s.fileno()
        assert "closed" in repr(s)


def test_close_releases_kernel_fd():
    if "epoll" not in BACKENDS and "kqueue" not in BACKENDS:
        pytest.skip("no kernel-object backend")
    name = BACKENDS[0]
    s = Selector(name)
    fd = s.fileno()
    os.fstat(fd)
    s.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_context_manager_closes():
    with Selector() as s:
        assert not s.closed
    assert s.closed


def test_dealloc_without_close():
    for name in BACKENDS:
        s = Selector(name)
        del s  # __dealloc__ frees the backend; ASan catches leaks/double frees
