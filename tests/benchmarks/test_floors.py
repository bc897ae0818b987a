"""A floor process as the capacity ladder uses it: it serves the open-loop generator, and stopping
it leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from benchmarks.node_bench import _floor
from benchmarks.openloop import msgpack_requests, run_openloop


def test_a_floor_serves_and_stops_without_leaving_its_portfile() -> None:
    floor = _floor("udp")
    try:
        assert floor.portfile is not None and Path(floor.portfile).exists()
        r = run_openloop("udp", floor.ports["port"], msgpack_requests(["88.1/K1"]), 100, 0.3)
        assert r.requests == 30 and r.errors == 0 and r.timeouts == 0
    finally:
        floor.stop()
    assert floor.proc.poll() is not None
    assert not Path(floor.portfile).exists()
