"""Fanout on socketpairs: zero-copy sharing, corking, backpressure (the policy of Hub.publish)."""

import socket
import tracemalloc

import pytest

from gogin._core import Hub
from gogin._core.buffers import frame_counters
from gogin._core.frames import FrameParser, Opcode, encode_close, encode_frame

TEXT, BINARY = Opcode.TEXT, Opcode.BINARY

N_SUBSCRIBERS = 1000


def drain(sock, limit=1 << 24):
    """Read everything available without blocking."""
    out = bytearray()
    while len(out) < limit:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


def parse_server_frames(data):
    """Split unmasked server frames with our own parser (require_mask off)."""
    parser = FrameParser(require_mask=False)
    return parser.feed(data)


class Subscribers:
    """n socketpairs whose server ends are adopted by the hub as upgraded subscribers."""

    def __init__(self, hub, n, channels, fmt=None, sndbuf=None):
        self.clients = []
        self.conns = []
        for _ in range(n):
            a, b = socket.socketpair()
            if sndbuf:
                a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
                b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
            conn = hub.adopt_pending(a.detach())
            assert conn.upgrade(channels, fmt)
            self.conns.append(conn)
            self.clients.append(b)

    def close(self):
        for c in self.clients:
            c.close()


@pytest.fixture
def hub():
    h = Hub(max_connections=20000)
    yield h
    h.close()


def test_thousand_subscribers_receive_byte_identical_frames(hub):
    fmt = hub.format("websocket", '{"id":~id~,"channel":"~channel-json~","text":"~text-json~"}')
    subs = Subscribers(hub, N_SUBSCRIBERS, ["news"], fmt)
    try:
        payloads = [b'hello "world" %d\n\\' % i for i in range(5)]
        for p in payloads:
            assert hub.publish("news", p) == N_SUBSCRIBERS
        hub.flush()
        expected = None
        for client in subs.clients:
            data = drain(client)
            if expected is None:
                expected = data
                events = parse_server_frames(data)
                assert [e[0] for e in events] == ["message"] * 5
                assert events[0][2] == (
                    b'{"id":1,"channel":"news","text":"hello \\"world\\" 0\\n\\\\"}')
            assert data == expected
        st = hub.stats()
        assert st["delivered_frames"] == 5 * N_SUBSCRIBERS
        assert st["queued_bytes"] == 0
    finally:
        subs.close()


def test_one_frame_per_publish_per_format(hub):
    ws_fmt = hub.format("websocket", "~text~!")
    sse_fmt = hub.format("eventsource", "~text~")
    subs_ws = Subscribers(hub, 300, ["c"], ws_fmt)
    # a second format on the same channel: streaming subscribers (SSE)
    sse_clients = []
    for _ in range(200):
        a, b = socket.socketpair()
        conn = hub.adopt_pending(a.detach())
        assert conn.start_stream(b"HTTP/1.1 200 OK\r\n\r\n", ["c"], sse_fmt)
        sse_clients.append(b)
    hub.flush()
    for b in sse_clients:
        drain(b)
    try:
        built0 = hub.stats()["frames_built"]
        alloc0, _ = frame_counters()
        tracemalloc.start()
        snap0 = tracemalloc.take_snapshot()
        for i in range(10):
            assert hub.publish("c", b"x" * 100) == 500
        snap1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        alloc1, _ = frame_counters()
        # 10 publishes x 2 formats present = 20 frames, not 10 x 500; plus one corked batch
        # per format group (both groups are large enough to cork): 22 allocations
        assert hub.stats()["frames_built"] - built0 == 20
        assert alloc1 - alloc0 == 22
        # and no Python object per subscriber per message: the Python heap grows by far less
        # than one small object per delivery (5,000 deliveries here)
        grown = sum(s.size_diff for s in snap1.compare_to(snap0, "filename") if s.size_diff > 0)
        assert grown < 5000 * 16, grown
        hub.flush()
        for c in subs_ws.clients:
            assert drain(c).count(b"!") == 10
        for c in sse_clients:
            assert drain(c).count(b"data: " + b"x" * 100 + b"\n\n") == 10
    finally:
        subs_ws.close()
        for b in sse_clients:
            b.close()


def test_hundred_publishes_in_one_turn_leave_in_one_write(hub):
    subs = Subscribers(hub, 50, ["burst"])
    try:
        writes0 = hub.stats()["writes"]
        for i in range(100):
            hub.publish("burst", b"m%03d" % i)
        hub.flush()
        st = hub.stats()
        # one sendmsg per subscriber for the whole burst (corked), not 100
        assert st["writes"] - writes0 == 50
        for c in subs.clients:
            events = parse_server_frames(drain(c))
            assert [e[2] for e in events] == [b"m%03d" % i for i in range(100)]
    finally:
        subs.close()


def test_binary_message_is_one_shared_binary_frame(hub):
    fmt_a = hub.format("websocket", "A:~text~")
    fmt_b = hub.format("websocket", "B:~text~")
    sa = Subscribers(hub, 10, ["bin"], fmt_a)
    sb = Subscribers(hub, 10, ["bin"], fmt_b)
    try:
        built0 = hub.stats()["frames_built"]
        hub.publish("bin", bytes(range(256)), binary=True)
        assert hub.stats()["frames_built"] - built0 == 1
        hub.flush()
        for c in sa.clients + sb.clients:
            assert parse_server_frames(drain(c)) == [("message", BINARY, bytes(range(256)))]
    finally:
        sa.close()
        sb.close()


def _slow_setup(hub, n_fast=20):
    fast = Subscribers(hub, n_fast, ["slow"])
    a, slow_client = socket.socketpair()
    # small kernel buffers so the never-reading subscriber backs up into its queue quickly
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slow_client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow_conn = hub.adopt_pending(a.detach())
    slow_conn.upgrade(["slow"])
    return fast, slow_client, slow_conn


@pytest.mark.parametrize("policy", ["close", "drop"])
def test_slow_consumer_is_bounded_and_others_get_everything(policy):
    budget = 64 * 1024
    hub = Hub(max_backpressure=budget, backpressure_policy=policy)
    fast, slow_client, slow_conn = _slow_setup(hub)
    received = [bytearray() for _ in fast.clients]
    msg = b"y" * 1000
    n_msgs = 2000   # 2 MB per subscriber: 30x the budget
    max_queued_slow = 0
    try:
        for i in range(n_msgs):
            hub.publish("slow", msg)
            if i % 10 == 9:
                hub.flush()
                max_queued_slow = max(max_queued_slow, slow_conn.queued_bytes)
                for buf, c in zip(received, fast.clients):
                    buf += drain(c)
        hub.flush()
        for buf, c in zip(received, fast.clients):
            buf += drain(c)
        st = hub.stats()
        for buf in received:
            events = parse_server_frames(bytes(buf))
            assert len(events) == n_msgs and all(e[2] == msg for e in events)
        # the slow consumer's queue never held more than the budget plus one message
        assert max_queued_slow <= budget + len(msg) + 10
        if policy == "close":
            assert st["closed_slow"] == 1
            assert slow_conn.state in ("closing", "closed")
            assert st["dropped"] == 0
        else:
            assert st["closed_slow"] == 0
            assert st["dropped"] > 0
            assert slow_conn.state == "websocket"
        # server-side memory: everything queued is bounded by (fast backlog) + budget
        assert st["queued_bytes"] <= budget + len(msg) + 10
    finally:
        fast.close()
        slow_client.close()
        hub.close()


def test_slow_consumer_close_frees_its_queue():
    hub = Hub(max_backpressure=32 * 1024)
    fast, slow_client, slow_conn = _slow_setup(hub, n_fast=1)
    try:
        live0 = frame_counters()[1]
        for i in range(500):
            hub.publish("slow", b"z" * 1000)
            hub.flush()
            drain(fast.clients[0])
        assert hub.stats()["closed_slow"] == 1
        # the slow connection's references were dropped: frames alive are back to the baseline
        # plus at most what is queued for the close frame
        assert frame_counters()[1] <= live0 + 2
        assert slow_conn.queued_bytes < 200
    finally:
        fast.close()
        slow_client.close()
        hub.close()


def test_partial_write_keeps_the_rest_queued_and_drains_later(hub):
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn = hub.adopt_pending(a.detach())
    conn.upgrade(["p"])
    try:
        big = b"0123456789abcdef" * 3200   # 51,200 bytes: far more than the socket buffers
        hub.publish("p", big)
        hub.flush()
        assert conn.queued_bytes > 0          # EAGAIN: the rest stays queued, WRITABLE armed
        got = bytearray()
        for _ in range(1000):
            got += drain(b)
            hub.poll()                         # WRITABLE fires, the queue drains
            if conn.queued_bytes == 0 and len(got) >= len(big):
                break
        got += drain(b)
        assert parse_server_frames(bytes(got)) == [("message", TEXT, big)]
    finally:
        b.close()


def test_unsubscribe_on_close_and_counters(hub):
    subs = Subscribers(hub, 10, ["a", "b"])
    try:
        st = hub.stats()
        assert st["subscribers"] == 20 and st["channels"] == 2 and st["connections"] == 10
        subs.clients[0].close()
        hub.poll()       # EOF -> close -> unsubscribe both channels
        st = hub.stats()
        assert st["subscribers"] == 18 and st["connections"] == 9
        assert hub.publish("a", b"x") == 9
        for c in subs.clients[1:]:
            c.close()
        for _ in range(10):
            hub.poll()
        assert hub.stats()["channels"] == 0
        assert hub.publish("a", b"x") == 0
    finally:
        subs.close()


@pytest.mark.parametrize("pacing", [0.0, 1.0])
def test_pacing_coalesces_publishes_of_consecutive_loop_turns(pacing):
    """One publish per loop turn to 2,000 subscribers: without pacing each turn writes every
    subscriber; with pacing, after one expensive write pass the next waits, and the publishes
    of the turns in between leave together (fewer sendmsg), in order, none lost."""

    n, k = 2000, 20
    hub = Hub(max_connections=20000, flush_pacing=pacing)
    subs = Subscribers(hub, n, ["pace"])
    try:
        writes, _ = publish_one_per_turn(hub, "pace", k)
        if pacing:
            # at least half the write passes saved (how many depends on the machine's speed)
            assert writes <= k * n // 2, writes
            assert hub.stats()["paced"] >= 1
        else:
            # a pass longer than the write slice goes on in the next turn, where the connections
            # it had not reached yet carry two publishes in one sendmsg: at most one each
            assert writes <= k * n, writes
        for c in subs.clients[:: n // 20]:
            events = parse_server_frames(drain(c))
            assert [e[2] for e in events] == [b"m%02d" % i for i in range(k)]
    finally:
        subs.close()
        hub.close()


def test_answers_are_not_paced():
    """While the subscribers' bytes wait for pacing, a request read meanwhile is answered at
    once: its answer is written at the end of the read, not after the wait (with the write
    pass it would leave only once the wait is over).  The steps are driven by hand, without
    the loop's timers in between: a whole write pass over 2,000 sockets (pacing starts), a
    publish (waits), a request, one poll."""
    import asyncio

    def on_request(conn, req):
        conn.respond(200, [("Content-Type", "text/plain")], b"ok")

    n = 2000
    hub = Hub(max_connections=20000, flush_pacing=10.0, on_request=on_request)
    subs = Subscribers(hub, n, ["pace"])
    client, server_end = socket.socketpair()
    hub.adopt(server_end.detach())

    async def main():
        hub.attach()                            # pacing waits only in a loop
        try:
            hub.publish("pace", b"x" * 64)
            hub.publish("pace", b"x" * 64)      # two per connection: a wait would coalesce
            hub.flush()                         # the whole pass: the next one is paced
            hub.publish("pace", b"y" * 64)      # queued: waits for the pacing delay
            client.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
            hub.poll()                          # reads and answers the request
            answer = drain(client)
            assert hub.stats()["paced"] == 1    # the subscribers' bytes did wait
            for _ in range(400):                # the paced pass, then nothing queued
                if hub.stats()["queued_bytes"] == 0:
                    break
                await asyncio.sleep(0.005)
            return answer
        finally:
            hub.detach()
    try:
        answer = asyncio.run(main())
        assert answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"ok"), answer
        for c in subs.clients[:: n // 20]:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"x" * 64] * 2 + [b"y" * 64]
    finally:
        client.close()
        subs.close()
        hub.close()


def test_a_pass_of_one_message_per_connection_is_not_paced():
    """Routing: when each connection got one message in the last pass, messages reach each
    connection less often than a pass takes, so waiting would coalesce nothing: the next pass
    is not delayed (pacing on, an expensive pass over 2,000 sockets of 2,000 channels)."""
    import asyncio

    n = 2000
    names = [f"r{i}" for i in range(n)]
    hub = Hub(max_connections=20000, flush_pacing=10.0)
    clients = []
    for name in names:
        a, b = socket.socketpair()
        assert hub.adopt_pending(a.detach()).upgrade([name])
        clients.append(b)

    async def main():
        hub.attach()
        try:
            for name in names:
                hub.publish(name, b"x" * 64)
            hub.flush()                         # a whole pass, one message per connection
            for name in names:
                hub.publish(name, b"y" * 64)
            for _ in range(400):                # the next pass (sliced), then nothing queued
                hub.poll()
                if hub.stats()["queued_bytes"] == 0:
                    break
                await asyncio.sleep(0.001)
            return hub.stats()
        finally:
            hub.detach()
    try:
        st = asyncio.run(main())
        assert st["paced"] == 0 and st["queued_bytes"] == 0
        for c in clients[:: n // 20]:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"x" * 64, b"y" * 64]
    finally:
        for c in clients:
            c.close()
        hub.close()


def publish_one_per_turn(hub, channel: str, k: int):
    """k publishes (b"m00", b"m01", ...), each in its own loop turn, then the loop runs until
    nothing is queued: (sendmsg calls in all, sendmsg calls of each publish's turn)."""
    import asyncio
    turns = []

    async def main():
        hub.attach()
        try:
            for i in range(k):
                hub.publish(channel, b"m%02d" % i)
                w0 = hub.stats()["writes"]
                await asyncio.sleep(0)          # the next publish is in another loop turn
                turns.append(hub.stats()["writes"] - w0)
            for _ in range(400):                # let the (paced, sliced) write pass run
                if hub.stats()["queued_bytes"] == 0:
                    break
                await asyncio.sleep(0.005)
        finally:
            hub.detach()

    writes0 = hub.stats()["writes"]
    asyncio.run(main())
    return hub.stats()["writes"] - writes0, turns


def test_a_long_write_pass_is_sliced_and_goes_on_where_it_stopped():
    """In the loop, a write pass stops after a slice of time (2 ms) and the next turn goes on
    with the connections it had not reached, before those written since: 5,000 subscribers
    (far more than one slice writes), one publish per turn; every subscriber gets every
    message once, in order, and some turns carried more than one message to a connection
    (a pass cut short: the rest got the next publish with it)."""
    n, k = 5000, 10
    hub = Hub(max_connections=20000, flush_pacing=0)
    subs = Subscribers(hub, n, ["slice"])
    try:
        writes, turns = publish_one_per_turn(hub, "slice", k)
        assert max(turns) < n, turns                # no turn wrote all 5,000
        assert writes < k * n, writes               # coalesced where a pass was cut
        for c in subs.clients[:: n // 25] + [subs.clients[-1]]:
            events = parse_server_frames(drain(c))
            assert [e[2] for e in events] == [b"m%02d" % i for i in range(k)]
        assert hub.stats()["delivered_frames"] >= k * n
    finally:
        subs.close()
        hub.close()


# -- corking per channel: a turn's messages to a group of subscribers are one batch ------------

def test_corked_batch_keeps_the_order_of_direct_sends(hub):
    """A message sent to one connection after a publish (same turn) arrives after it: the
    corked batch is queued before anything else reaches a connection."""
    subs = Subscribers(hub, 20, ["ord"])
    try:
        hub.publish("ord", b"p1")
        subs.conns[0].send(b"direct")
        hub.publish("ord", b"p2")
        hub.flush()
        got0 = [e[2] for e in parse_server_frames(drain(subs.clients[0]))]
        assert got0 == [b"p1", b"direct", b"p2"]
        for c in subs.clients[1:]:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"p1", b"p2"]
    finally:
        subs.close()


def test_subscriber_joining_mid_turn_gets_only_later_messages(hub):
    subs = Subscribers(hub, 20, ["mid"])
    try:
        hub.publish("mid", b"before")
        late = Subscribers(hub, 1, ["mid"])
        hub.publish("mid", b"after")
        hub.flush()
        assert [e[2] for e in parse_server_frames(drain(late.clients[0]))] == [b"after"]
        for c in subs.clients:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"before", b"after"]
        late.close()
    finally:
        subs.close()


def test_unsubscribe_mid_turn_still_delivers_what_was_published_before(hub):
    subs = Subscribers(hub, 20, ["un", "other"])
    try:
        hub.publish("un", b"m1")
        assert subs.conns[0].unsubscribe("un")
        hub.publish("un", b"m2")
        hub.flush()
        assert [e[2] for e in parse_server_frames(drain(subs.clients[0]))] == [b"m1"]
        assert [e[2] for e in parse_server_frames(drain(subs.clients[1]))] == [b"m1", b"m2"]
    finally:
        subs.close()


def test_a_large_turn_is_split_into_bounded_batches(hub):
    """More than a batch's cap (256 KiB) in one turn: everything arrives, in order, and the
    frame memory alive stays bounded by the cap, not by the turn."""
    subs = Subscribers(hub, 10, ["big"], sndbuf=1 << 22)
    try:
        live0 = frame_counters()[1]
        msgs = [b"%05d" % i + b"q" * 995 for i in range(1000)]      # 1 MB in one turn
        for m in msgs:
            hub.publish("big", m)
        # full batches were queued as they filled: a few live frames, not 1,000
        assert frame_counters()[1] - live0 <= 8
        hub.flush()
        for c in subs.clients:
            data = bytearray()
            for _ in range(100):
                chunk = drain(c)
                if not chunk:
                    hub.flush()
                    chunk = drain(c)
                    if not chunk:
                        break
                data += chunk
            assert [e[2] for e in parse_server_frames(bytes(data))] == msgs
        st = hub.stats()
        assert st["delivered_frames"] == 10 * 1000 and st["queued_bytes"] == 0
    finally:
        subs.close()


def test_corking_gives_one_iovec_per_subscriber(hub):
    """100 publishes in a turn to 50 subscribers: one write each, and the bytes of the 100
    frames are contiguous (one shared batch), not 100 separate buffers."""
    subs = Subscribers(hub, 50, ["iov"])
    try:
        alloc0 = frame_counters()[0]
        for i in range(100):
            hub.publish("iov", b"n%03d" % i)
        # 100 rendered frames (each freed once copied) + 1 batch
        assert frame_counters()[0] - alloc0 == 101
        assert all(conn.queued_bytes == 0 for conn in subs.conns)     # corked: nothing queued
        st = hub.stats()                                              # stats() settles
        assert all(conn.queued_bytes == 100 * 6 for conn in subs.conns)
        assert st["queued_frames"] >= 50 * 100
        hub.flush()
        for c in subs.clients:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"n%03d" % i
                                                                    for i in range(100)]
    finally:
        subs.close()


def test_long_polls_on_a_stream_format_take_one_message_each(hub):
    """JSONP long-polls hold with a (chunked) stream format: a group of them is never corked,
    so each takes exactly the first message of the turn, wrapped in its head and footer."""
    fmt = hub.format("stream", "<~text~>", chunked=True)
    clients = []
    try:
        for _ in range(12):
            a, b = socket.socketpair()
            conn = hub.adopt_pending(a.detach())
            assert conn.hold(["lp"], fmt, 5.0, b"TIMEOUT", head=b"HEAD|", footer=b"|FOOT")
            clients.append(b)
        assert hub.publish("lp", b"m1") == 12
        hub.publish("lp", b"m2")
        hub.flush()
        for b in clients:
            data = drain(b)
            assert data.startswith(b"HEAD|") and data.endswith(b"|FOOT"), data
            assert data.count(b"<m1>") == 1 and b"<m2>" not in data and b"TIMEOUT" not in data
    finally:
        for b in clients:
            b.close()


def test_an_unrelated_answer_does_not_split_a_corked_batch(hub):
    """Publish, a reply to a connection that is not on the channel, publish again, in one
    turn: the channel's batch stays one (two rendered frames + one batch allocated, not two
    batches), and each subscriber gets both messages in one frame run."""
    subs = Subscribers(hub, 20, ["cork"])
    other = Subscribers(hub, 1, ["elsewhere"])
    try:
        alloc0 = frame_counters()[0]
        hub.publish("cork", b"p1")
        other.conns[0].send(b"unrelated")             # its own frame: +1
        hub.publish("cork", b"p2")
        assert frame_counters()[0] - alloc0 == 2 + 1 + 1
        hub.flush()
        for c in subs.clients:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"p1", b"p2"]
        assert [e[2] for e in parse_server_frames(drain(other.clients[0]))] == [b"unrelated"]
    finally:
        subs.close()
        other.close()


def test_a_direct_publish_to_a_small_channel_comes_after_a_corked_batch(hub):
    """Connections on a corked channel (20 subscribers) and on a small, uncorked one (3): a
    publish to the big channel then to the small one reaches them in that order."""
    big = Subscribers(hub, 20, ["bigc"])
    try:
        for conn in big.conns[:3]:
            assert conn.subscribe("smallc")
        hub.publish("bigc", b"first")
        hub.publish("smallc", b"second")
        hub.flush()
        for c in big.clients[:3]:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"first", b"second"]
        for c in big.clients[3:]:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"first"]
    finally:
        big.close()


@pytest.mark.parametrize("client_frame, reply", [
    (encode_frame(Opcode.CLOSE, encode_close(1000), mask=b"abcd"), ("close", 1000, "")),
    (encode_frame(TEXT, b"unmasked"), ("close", 1002, "unmasked client frame")),
], ids=["client-close", "protocol-error"])
def test_corked_messages_go_before_the_close_reply(hub, client_frame, reply):
    """A subscriber whose close (or bad frame) is read in the turn of a corked publish gets the
    message first, then the close frame: the batch is queued while it is still a WebSocket
    (connection.pyx leaves the state to the hub until the close frame is queued)."""
    subs = Subscribers(hub, 20, ["bye"])
    try:
        hub.publish("bye", b"p1")
        assert all(conn.queued_bytes == 0 for conn in subs.conns)     # corked
        subs.clients[0].sendall(client_frame)
        hub.poll()
        hub.flush()
        got = parse_server_frames(drain(subs.clients[0]))
        assert got == [("message", TEXT, b"p1"), reply]
        assert subs.conns[0].state in ("closing", "closed")
        for c in subs.clients[1:]:
            assert [e[2] for e in parse_server_frames(drain(c))] == [b"p1"]
    finally:
        subs.close()
