"""The fault proxy of a SuperNode-SuperLink link on loopback: delay, bandwidth, black hole that
heals, reset; and the fault schedule built from a scenario's plan."""
import socket
import threading
import time

import pytest

from flhil.harness.flower import faults as schedule
from flhil.harness.flower.proxy import FaultProxy


@pytest.fixture
def echo():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue

            def handle(c=c):
                try:
                    while True:
                        d = c.recv(65536)
                        if not d:
                            break
                        c.sendall(d)
                except OSError:
                    pass
                c.close()
            threading.Thread(target=handle, daemon=True).start()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    srv.close()


@pytest.fixture
def proxy(echo):
    p = FaultProxy(seed=7)
    port = p.add_link(1, echo)
    yield p, port
    p.close()


def round_trip_ms(port, size=100):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t = time.monotonic()
        s.sendall(b"x" * size)
        got = b""
        while len(got) < size:
            got += s.recv(65536)
        return (time.monotonic() - t) * 1000


def test_a_clean_link_passes_bytes_unchanged(proxy):
    p, port = proxy
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"hello flower")
        assert s.recv(100) == b"hello flower"


def test_delay_applies_each_way(proxy):
    p, port = proxy
    p.set_link(1, delay_ms=100)
    assert 190 <= round_trip_ms(port) < 1500


def test_bandwidth_limit(proxy):
    p, port = proxy
    p.set_link(1, kbps=80)  # 1000 bytes = 8000 bits = 100 ms each way
    assert 190 <= round_trip_ms(port, 1000) < 1500


def test_a_black_hole_holds_traffic_until_it_heals(proxy):
    p, port = proxy
    p.blackhole(1, True)
    threading.Timer(0.4, lambda: p.blackhole(1, False)).start()
    assert round_trip_ms(port) >= 380


def test_a_reset_closes_open_connections(proxy):
    p, port = proxy
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        assert p.reset(1) == 1
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(50):
                if not s.recv(10):
                    raise ConnectionResetError("closed")
                time.sleep(0.01)


def test_the_schedule_of_a_plan():
    plan = {"links": [{"src": 3, "dst": 0, "delay_ms": 50.0, "jitter_ms": 0.0, "rounds": [2, 3]}],
            "partitions": [{"groups": [[0, 1], [2, 3]], "start_ms": 100.0, "end_ms": 300.0}],
            "dropouts": [{"node": 1, "at": 2, "down": 1}]}
    flower = {"links": [{"node": "*", "kbps": 64.0, "resets_ms": [], "reset_rounds": [2]}],
              "node_faults": [{"node": 2, "action": "pause", "at": 1, "for_ms": 500.0}]}
    s = schedule.build(plan, flower, 3)
    assert sorted((a.node, a.kind) for a in s.initial()) == [(1, "bandwidth"), (2, "bandwidth"), (3, "bandwidth")]
    first = s.due(1, 0)
    assert [(a.node, a.kind) for a in first] == [(2, "pause")]
    s.happened(first[0], 0)
    assert sorted((a.node, a.kind) for a in s.due(1, 150)) == [(2, "partition"), (3, "partition")]
    assert [(a.node, a.kind) for a in s.due(1, 600)] == [(2, "heal"), (3, "heal"), (2, "resume")]
    due2 = sorted((a.node, a.kind) for a in s.due(2, 700))
    assert due2 == [(1, "crash"), (1, "reset"), (2, "reset"), (3, "delay"), (3, "reset")]
    assert sorted((a.node, a.kind) for a in s.due(4, 900)) == [(1, "rejoin"), (3, "delay")]
