"""A lean closed-loop load generator for HTTP/1.1, msgpack/TCP and msgpack/UDP on 127.0.0.1.

Requests are pre-encoded bytes, so the generator spends its time on sockets, not on building
requests: it must outrun one node process, or the node is not what is measured. ``concurrency``
workers each keep one request outstanding (closed model); latency is measured per request from
send to answer. Run in its own process (``run_load``) pinned to a core apart from the server.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass


def pop_frames(buffer: bytearray) -> list[bytes]:
    """Take every whole length-prefixed frame (header included) off the front of ``buffer``."""
    frames = []
    while len(buffer) >= 4:
        (length,) = struct.unpack_from(">I", buffer)
        if len(buffer) < 4 + length:
            break
        frames.append(bytes(buffer[: 4 + length]))
        del buffer[: 4 + length]
    return frames


async def read_http_answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer, head and ``Content-Length`` body; its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


@dataclass
class LoadResult:
    requests: int  #: answers received in the measured window
    seconds: float  #: length of the measured window
    p50_ms: float
    p99_ms: float
    errors: int  #: answers with a non-success status (HTTP >= 400 or a msgpack error code)
    generator_cpu_s: float  #: CPU the generator process used in the window

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class _Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.latencies: list[float] = []
        self.errors = 0

    def record(self, started: float, ok: bool) -> None:
        if self.measuring:
            self.latencies.append(time.perf_counter() - started)
            if not ok:
                self.errors += 1


async def _http_worker(
    port: int, requests: Iterator[bytes], stats: _Stats, stop: asyncio.Event, ok_status: int
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            writer.write(next(requests))
            status = await read_http_answer(reader)
            stats.record(started, status < 400 or status == ok_status)
    finally:
        writer.close()


async def _tcp_worker(
    port: int,
    requests: Iterator[bytes],
    stats: _Stats,
    stop: asyncio.Event,
    ok: Callable[[bytes], bool],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            writer.write(next(requests))
            (length,) = struct.unpack(">I", await reader.readexactly(4))
            payload = await reader.readexactly(length)
            stats.record(started, ok(payload))
    finally:
        writer.close()


class _UDPClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)


async def _udp_worker(
    port: int,
    requests: Iterator[bytes],
    stats: _Stats,
    stop: asyncio.Event,
    ok: Callable[[bytes], bool],
) -> None:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _UDPClient, remote_addr=("127.0.0.1", port)
    )
    try:
        while not stop.is_set():
            started = time.perf_counter()
            proto.waiter = loop.create_future()
            transport.sendto(next(requests))
            try:
                data = await asyncio.wait_for(proto.waiter, 1.0)
            except TimeoutError:
                if stats.measuring:
                    stats.errors += 1
                continue
            stats.record(started, ok(data))
    finally:
        transport.close()


def _msgpack_ok(payload: bytes) -> bool:
    # Envelope [version, request id, op, code, ...]: the code is the 4th element; 1 is success,
    # and an echo floor answers the request itself (code 0).
    import msgpack

    try:
        code = msgpack.unpackb(payload)[3]
    except Exception:
        return False
    return code in (0, 1)


async def _run(
    kind: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    warmup_s: float,
    seconds: float,
    ok_status: int = 0,
) -> LoadResult:
    stats = _Stats()
    stop = asyncio.Event()
    random.Random(7).shuffle(requests)
    workers = []
    for i in range(concurrency):
        cycle = itertools.cycle(requests[i::concurrency] or requests)
        if kind == "http":
            workers.append(_http_worker(port, cycle, stats, stop, ok_status))
        elif kind == "tcp":
            workers.append(_tcp_worker(port, cycle, stats, stop, _msgpack_ok))
        else:
            workers.append(_udp_worker(port, cycle, stats, stop, _msgpack_ok))
    tasks = [asyncio.ensure_future(w) for w in workers]
    await asyncio.sleep(warmup_s)
    stats.measuring = True
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    stats.measuring = False
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stop.set()
    await asyncio.wait(tasks, timeout=3)
    for t in tasks:
        t.cancel()
    lat = sorted(stats.latencies)
    return LoadResult(
        len(lat),
        elapsed,
        _percentile(lat, 0.5) * 1e3,
        _percentile(lat, 0.99) * 1e3,
        stats.errors,
        cpu,
    )


def run_load(
    kind: str,
    port: int,
    requests: list[bytes],
    concurrency: int = 32,
    warmup_s: float = 1.0,
    seconds: float = 5.0,
    ok_status: int = 0,
) -> LoadResult:
    """Blocking entry point (uvloop when installed); ``kind`` is http, tcp or udp.

    ``ok_status`` is an HTTP status that counts as success although >= 400 (404 for misses).
    """
    coro = _run(kind, port, list(requests), concurrency, warmup_s, seconds, ok_status)
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def http_get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def http_put(path: str, body: bytes, authorization: str) -> bytes:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
