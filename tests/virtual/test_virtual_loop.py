"""The virtual-time event loop and the in-memory network."""
import asyncio
import time

import pytest

from flhil.memnet import MemoryNetwork, MemoryTransport
from flhil.telemetry import Telemetry
from flhil.clock import LoopClock
from flhil.transport import new_counts
from flhil.auth import LinkKeys, pair_table
from flhil.wire import Codec
from flhil.harness.run.virtual import VirtualDeadlock, VirtualLoop


def run(coro_fn, **kw):
    loop = VirtualLoop(**kw)
    try:
        return loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


def test_time_jumps_when_every_task_waits():
    async def main(loop):
        await asyncio.sleep(3600)
        t1 = loop.time()
        try:
            await asyncio.wait_for(asyncio.Event().wait(), 2.5)
        except asyncio.TimeoutError:
            pass
        return t1, loop.time(), LoopClock(loop).now_us()

    wall = time.perf_counter()
    t1, t2, us = run(main)
    assert time.perf_counter() - wall < 1.0
    assert int(t1 * 1e6) == 3600 * 10**6
    assert us == 3602500000 and int(t2 * 1e6) == us


def test_timers_are_whole_microseconds_and_never_early():
    async def main(loop):
        seen = []
        for delay in (1e-7, 0.9999e-6, 3.3e-6, 0.1, 0.2, 0.7):
            before = loop.now_us()
            await asyncio.sleep(delay)
            seen.append((loop.now_us() - before, delay))
        return seen

    for waited_us, delay in run(main):
        assert waited_us * 1e-6 >= delay - 1e-9
        assert waited_us - delay * 1e6 < 1


def test_a_deadlock_is_reported_not_waited_out():
    async def main(loop):
        await loop.create_future()

    with pytest.raises(VirtualDeadlock):
        run(main)


def test_no_real_io():
    async def main(loop):
        await asyncio.open_connection("127.0.0.1", 9)

    with pytest.raises(NotImplementedError):
        run(main)


def test_real_time_bound_calls_on_overrun():
    async def main(loop):
        stop = loop.create_future()
        loop.on_overrun = lambda: stop.done() or stop.set_result("wall")

        async def busy():
            while True:
                await asyncio.sleep(0.001)
                time.sleep(0.0005)  # real time passes, virtual time too
        task = asyncio.ensure_future(busy())
        reason = await stop
        task.cancel()
        return reason

    assert run(main, max_wall_s=0.05) == "wall"


def _codec(node, run="run", key=b"k" * 16):
    return Codec(run, LinkKeys(node, 2, pair_table(key, node, 2)))


def _pair(latency_us=250, key=b"k" * 16):
    net = MemoryNetwork(latency_us)
    got = {0: [], 1: []}
    ts = []
    for i in (0, 1):
        clock = LoopClock()
        tel_events = []
        t = MemoryTransport(net, i, _codec(i, key=key), new_counts(), Telemetry(i, clock, sink=tel_events.append))
        t.set_sink(lambda m, i=i: got[i].append((LoopClock().now_us(), m)))
        t.tel_events = tel_events
        ts.append(t)
    return net, ts, got


def test_memory_transport_delivers_authenticated_frames_in_order_after_the_latency():
    async def main(loop):
        net, (a, b), got = _pair()
        assert await a.start() == ("mem", 0)
        await b.start()
        for k in range(5):
            a.send(1, {"r": "run", "s": 0, "d": 1, "p": "t", "i": k, "q": k, "v": k * 1.5})
        await asyncio.sleep(0.001)
        return net, a, b, got

    net, a, b, got = run(main)
    assert [m["i"] for _, m in got[1]] == [0, 1, 2, 3, 4]
    assert all(t == 250 for t, _ in got[1])
    assert a.counts["sent"] == 5 and b.counts["recv"] == 5 and net.delivered == 5
    assert sorted(a.peers) == [0, 1] and a.peers[1] == ("mem", 1)


def test_memory_transport_runs_the_codec_checks():
    async def main(loop):
        net, (a, b), got = _pair()
        await a.start()
        await b.start()
        frame = a.codec.encode({"r": "run", "s": 0, "d": 1, "p": "t", "i": 0, "q": 1, "v": 1}, 1)
        tampered = frame[:-2] + b"9}"
        net.send(0, 1, tampered)
        other = _codec(0, "other-run").encode({"r": "other-run", "s": 0, "d": 1, "p": "t", "i": 0, "q": 1, "v": 1}, 1)
        net.send(0, 1, other)
        net.send(0, 1, frame[:-3])  # shorter than announced
        await asyncio.sleep(0.001)
        return b, got

    b, got = run(main)
    assert got[1] == []
    assert [e["why"] for e in b.tel_events] == ["bad_tag", "other_run", "truncated"]
    assert b.counts["rejected"] == 3


def test_frames_to_a_closed_transport_are_lost():
    async def main(loop):
        net, (a, b), got = _pair()
        await a.start()
        await b.start()
        await b.close()
        a.send(1, {"r": "run", "s": 0, "d": 1, "p": "t", "i": 0, "q": 1, "v": 1})
        await asyncio.sleep(0.001)
        return net, got

    net, got = run(main)
    assert got[1] == [] and net.lost == 1
