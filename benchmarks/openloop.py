"""An open-loop (constant arrival rate) load generator for HTTP GET and msgpack over UDP and TCP.

Requests are due at fixed intervals of ``1 / rate`` seconds whatever the answers take, so a slow
server cannot slow the load down (a closed loop, ``benchmarks.loadgen``, can: its workers wait).
Every request carries two latencies: from its *scheduled* time (corrected for coordinated
omission: a request that waited for a connection, or for the generator, is charged that wait) and
from its actual send. Percentiles come from HdrHistograms (microseconds, 3 significant digits)
over every request scheduled in the measured window: one that got no answer (a timeout, a broken
connection) counts at the moment it was given up, so lost requests weigh in the percentiles
rather than drop out of them.

The generator must never be what is measured: each run records how late it issued requests
against their schedule (lag) and its own CPU share, and a run where the lag p99 exceeded
``lag_limit_ms`` or the CPU share reached ``cpu_limit`` is flagged (``generator_ok`` false);
such a step says nothing about the server's limit.

How each front door is driven, on 127.0.0.1 only:

* ``udp``: one socket; each request gets a fresh request id patched into a pre-encoded template,
  answers are matched by id; an answer later than ``timeout_s`` counts as a timeout.
* ``tcp``: ``connections`` connections, requests written round robin without waiting for answers
  (the msgpack protocol matches answers by request id), so the loop stays open; a connection
  the server closes is not reopened: what it carried, and what is due on it later, are errors.
* ``http``: HTTP/1.1 without pipelining, as real clients do: ``connections`` keep-alive
  connections, each with one request outstanding; a due request waits in a FIFO for a free
  connection, and that wait counts in the scheduled latency but not in the send latency, so
  coordinated omission shows as the gap between the two.

``python -m benchmarks openloop --target udp --rate 5000 --seconds 5 --port 2641`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import msgpack
from hdrh.histogram import HdrHistogram

from benchmarks.loadgen import http_get, pop_frames, read_http_answer

_ID_MARK = b"\xce\xde\xad\xbe\xef"  #: request id 0xDEADBEEF as msgpack uint32, patched per request
_MAX_US = 120_000_000


@dataclass
class OpenLoopResult:
    target: str  #: http, udp or tcp
    offered_per_s: float  #: the schedule's rate
    seconds: float  #: measured window (after the warm-up)
    requests: int  #: requests scheduled in the measured window
    achieved_per_s: float  #: successful answers received in the window, per second
    #: latency from the scheduled time (coordinated omission corrected); an unanswered request
    #: counts at the moment it was given up
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    send_p50_ms: float  #: latency from the actual send
    send_p99_ms: float
    errors: int  #: answers with a non-success code, broken connections
    timeouts: int  #: no answer within ``timeout_s`` (or never sent)
    lag_p99_ms: float  #: how late the generator issued requests against their schedule
    lag_max_ms: float
    generator_cpu: float  #: CPU share of the generator process over the window (1.0 = a core)
    generator_ok: bool  #: false: the generator fell behind or saturated; not the server's limit
    generator_note: str  #: why not ok, or "ok"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hist() -> HdrHistogram:
    return HdrHistogram(1, _MAX_US, 3)


class _Recorder:
    """Counts and histograms for the requests scheduled in the measured window."""

    def __init__(self, start: float, warmup_s: float, seconds: float, timeout_s: float) -> None:
        self.w0 = start + warmup_s
        self.w1 = self.w0 + seconds
        self.timeout_s = timeout_s
        self.sched, self.send, self.lag = _hist(), _hist(), _hist()
        self.requests = self.ok_in_window = self.errors = self.timeouts = 0

    def measured(self, due: float) -> bool:
        return self.w0 <= due < self.w1

    def issued(self, due: float, now: float) -> None:
        if self.w0 <= due < self.w1:
            self.requests += 1
            self.lag.record_value(max(1, int((now - due) * 1e6)))

    def _latency(self, due: float, sent: float | None, now: float) -> None:
        self.sched.record_value(min(_MAX_US, max(1, int((now - due) * 1e6))))
        if sent is not None:
            self.send.record_value(min(_MAX_US, max(1, int((now - sent) * 1e6))))

    def answered(self, due: float, sent: float, ok: bool) -> None:
        now = time.perf_counter()
        if now - sent > self.timeout_s:
            # came back after the timeout but before the next sweep (every 0.1 s) gave it up
            self.failed(due, sent, timeout=True)
            return
        if ok and self.w0 <= now <= self.w1:
            self.ok_in_window += 1
        if self.w0 <= due < self.w1:
            self._latency(due, sent, now)
            if not ok:
                self.errors += 1

    def failed(self, due: float, sent: float | None, timeout: bool) -> None:
        """No answer (``sent`` None: never sent). Recorded at the moment it was given up, a
        lower bound: left out, lost requests would vanish from the percentiles and a run that
        lost 5% of its requests could still show a p99 of a millisecond."""
        if self.w0 <= due < self.w1:
            self._latency(due, sent, time.perf_counter())
            if timeout:
                self.timeouts += 1
            else:
                self.errors += 1


def _ms(h: HdrHistogram, q: float) -> float:
    return round(h.get_value_at_percentile(q) / 1e3, 3) if h.get_total_count() else 0.0


def _msgpack_answer(payload: bytes) -> tuple[int, bool]:
    """(request id, success) of a msgpack answer; an echo of the request (code 0) is a success."""
    try:
        message = msgpack.unpackb(payload)
        return int(message[1]), message[3] in (0, 1)
    except Exception:
        return -1, False


def _templates(requests: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """Split each encoded request around its request id (encoded with id 0xDEADBEEF)."""
    out = []
    for r in requests:
        at = r.find(_ID_MARK)
        if at < 0:
            raise ValueError("msgpack requests must be encoded with request_id=0xDEADBEEF")
        out.append((r[: at + 1], r[at + 5 :]))
    return out


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, on_answer: Any) -> None:
        self.on_answer = on_answer

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.on_answer(data)


class _Frames(asyncio.Protocol):
    def __init__(self, on_answer: Any, on_lost: Any) -> None:
        self.on_answer, self.on_lost = on_answer, on_lost
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for frame in pop_frames(self.buffer):
            self.on_answer(frame[4:])

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()


class _MsgpackDoor:
    """UDP or TCP: write at once, match answers by request id, expire the unanswered."""

    def __init__(self, target: str, port: int, requests: Sequence[bytes], connections: int):
        self.target, self.port, self.connections = target, port, max(1, connections)
        self.templates = itertools.cycle(_templates(requests))
        self.pending: dict[int, tuple[float, float, int]] = {}  #: id -> due, sent, connection
        self.ids = itertools.count(1)
        self.transports: list[Any] = []
        self.rr = 0
        self.rec: _Recorder

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        if self.target == "udp":
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self._answer), remote_addr=("127.0.0.1", self.port)
            )
            self.transports = [udp]
        else:
            for n in range(self.connections):
                transport, _ = await loop.create_connection(
                    functools.partial(_Frames, self._answer, functools.partial(self._lost, n)),
                    "127.0.0.1",
                    self.port,
                )
                self.transports.append(transport)

    def issue(self, due: float, now: float) -> None:
        rid = next(self.ids) & 0xFFFFFFFF
        head, tail = next(self.templates)
        body = head + rid.to_bytes(4, "big") + tail
        self.rec.issued(due, now)
        self.rr = (self.rr + 1) % len(self.transports)
        self.pending[rid] = (due, now, self.rr)
        transport = self.transports[self.rr]
        if transport.is_closing():
            self.pending.pop(rid)
            self.rec.failed(due, None, timeout=False)
        elif self.target == "udp":
            transport.sendto(body)
        else:
            transport.write(len(body).to_bytes(4, "big") + body)

    def _answer(self, data: bytes) -> None:
        rid, ok = _msgpack_answer(data)
        entry = self.pending.pop(rid, None)
        if entry is not None:
            self.rec.answered(entry[0], entry[1], ok)

    def _lost(self, connection: int) -> None:
        """A broken connection: what it carried is an error now, not a timeout later."""
        for rid, (due, sent, n) in list(self.pending.items()):
            if n == connection:
                del self.pending[rid]
                self.rec.failed(due, sent, timeout=False)

    def expire(self, older_than: float) -> None:
        for rid, (due, sent, _) in list(self.pending.items()):
            if sent < older_than:
                del self.pending[rid]
                self.rec.failed(due, sent, timeout=True)

    def busy(self) -> bool:
        return bool(self.pending)

    async def close(self) -> None:
        for t in self.transports:
            t.close()
        await asyncio.sleep(0)


class _HttpDoor:
    """HTTP/1.1 GET over ``connections`` keep-alive connections, one request outstanding each."""

    def __init__(self, port: int, requests: Sequence[bytes], connections: int, ok_status: int):
        self.port, self.connections, self.ok_status = port, max(1, connections), ok_status
        self.requests = itertools.cycle(requests)
        self.backlog: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.inflight: dict[int, tuple[float, float, asyncio.StreamWriter]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.writers: dict[int, asyncio.StreamWriter] = {}
        self.rec: _Recorder

    async def open(self) -> None:
        for n in range(self.connections):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writers[n] = writer
            self.tasks.append(asyncio.ensure_future(self._connection(n, reader, writer)))

    def issue(self, due: float, now: float) -> None:
        self.rec.issued(due, now)
        self.backlog.put_nowait((due, next(self.requests)))

    async def _connection(
        self, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            await self._serve(n, reader, writer)
        finally:
            self.writers[n].close()

    async def _serve(
        self, n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            self.writers[n] = writer
            due, request = await self.backlog.get()
            sent = time.perf_counter()
            self.inflight[n] = (due, sent, writer)
            try:
                writer.write(request)
                status = await read_http_answer(reader)
                if self.inflight.pop(n, None) is not None:
                    self.rec.answered(due, sent, status < 400 or status == self.ok_status)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                # a broken connection, or one ``expire`` aborted: count it once, reconnect
                if self.inflight.pop(n, None) is not None:
                    self.rec.failed(due, sent, timeout=False)
                writer.close()
                while True:
                    try:
                        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                        break
                    except OSError:
                        await asyncio.sleep(0.05)

    def expire(self, older_than: float) -> None:
        for n, (due, sent, writer) in list(self.inflight.items()):
            if sent < older_than:
                del self.inflight[n]
                self.rec.failed(due, sent, timeout=True)
                writer.transport.abort()

    def busy(self) -> bool:
        return bool(self.inflight) or not self.backlog.empty()

    async def close(self) -> None:
        while not self.backlog.empty():
            due, _ = self.backlog.get_nowait()
            self.rec.failed(due, None, timeout=True)  # never sent: the server held every connection
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def run_openloop_async(
    target: str,
    port: int,
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    warmup_s: float = 0.5,
    connections: int = 64,
    timeout_s: float = 1.0,
    ok_status: int = 0,
    lag_limit_ms: float = 5.0,
    cpu_limit: float = 0.9,
) -> OpenLoopResult:
    """Offer ``rate`` requests per second for ``warmup_s + seconds`` to 127.0.0.1:``port``.

    ``requests``: raw HTTP requests for ``http``; msgpack messages encoded with request id
    0xDEADBEEF (see ``msgpack_requests``) for ``udp`` and ``tcp``. ``ok_status``: an HTTP status
    >= 400 that counts as success (404 for lookups of missing identifiers).
    """
    if target not in ("http", "udp", "tcp"):
        raise ValueError(f"unknown target {target!r}")
    if not (0 < rate < math.inf and 0 < seconds < math.inf and 0 <= warmup_s < math.inf):
        raise ValueError("rate and seconds must be positive, warmup_s not negative")
    if not 0 < timeout_s < math.inf:
        raise ValueError("timeout_s must be positive")
    if not requests:
        raise ValueError("no requests to send")
    door: _HttpDoor | _MsgpackDoor
    if target == "http":
        door = _HttpDoor(port, requests, connections, ok_status)
    else:
        door = _MsgpackDoor(target, port, requests, connections)
    await door.open()
    interval = 1.0 / rate
    start = time.perf_counter() + 0.01
    rec = door.rec = _Recorder(start, warmup_s, seconds, timeout_s)
    total = int((warmup_s + seconds) * rate)
    # a full collection over the caller's data (request lists) stalls the schedule for
    # milliseconds: no cyclic GC while the schedule runs
    gc_was_enabled = gc.isenabled()
    gc.disable()
    cpu0 = cpu1 = time.process_time()
    cpu_marked = False
    last_sweep = start
    i = 0
    try:
        while i < total:
            now = time.perf_counter()
            due = start + i * interval
            # everything due by now goes out in this turn: a late turn is lag, not fewer requests
            while due <= now and i < total:
                door.issue(due, now)
                i += 1
                due = start + i * interval
            if not cpu_marked and now >= rec.w0:
                cpu0, cpu_marked = time.process_time(), True
            if now - last_sweep > 0.1:
                door.expire(now - timeout_s)
                last_sweep = now
            # never less than a millisecond (the loop's timer resolution): spinning on
            # ``sleep(0)`` would burn the generator's core and read as saturation
            await asyncio.sleep(max(0.001, due - time.perf_counter()))
        cpu1 = time.process_time()
        # drain: answers to the last requests, up to the timeout
        deadline = time.perf_counter() + timeout_s
        while door.busy() and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
            door.expire(time.perf_counter() - timeout_s)
        door.expire(float("inf"))
    finally:
        if gc_was_enabled:
            gc.enable()
        await door.close()
    cpu = (cpu1 - cpu0) / seconds if cpu_marked else 0.0
    lag_p99 = _ms(rec.lag, 99)
    notes = []
    if lag_p99 > lag_limit_ms:
        notes.append(f"behind schedule (lag p99 {lag_p99:.1f} ms > {lag_limit_ms:g} ms)")
    if cpu >= cpu_limit:
        notes.append(f"CPU saturated ({cpu:.0%} of a core)")
    return OpenLoopResult(
        target=target,
        offered_per_s=rate,
        seconds=seconds,
        requests=rec.requests,
        achieved_per_s=round(rec.ok_in_window / seconds, 1),
        p50_ms=_ms(rec.sched, 50),
        p95_ms=_ms(rec.sched, 95),
        p99_ms=_ms(rec.sched, 99),
        max_ms=round(rec.sched.get_max_value() / 1e3, 3) if rec.sched.get_total_count() else 0.0,
        send_p50_ms=_ms(rec.send, 50),
        send_p99_ms=_ms(rec.send, 99),
        errors=rec.errors,
        timeouts=rec.timeouts,
        lag_p99_ms=lag_p99,
        lag_max_ms=round(rec.lag.get_max_value() / 1e3, 3) if rec.lag.get_total_count() else 0.0,
        generator_cpu=round(cpu, 3),
        generator_ok=not notes,
        generator_note="; ".join(notes) or "ok",
    )


def run_openloop(*args: Any, **kwargs: Any) -> OpenLoopResult:
    """Blocking ``run_openloop_async`` on a fresh event loop (uvloop when installed)."""
    coro = run_openloop_async(*args, **kwargs)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def msgpack_requests(handles: Sequence[str]) -> list[bytes]:
    """Resolution requests for ``handles``, encoded with the request id the generator patches."""
    from protocol.codes import OpFlag
    from protocol.messages import ResolveRequest
    from protocol.wire import encode_message

    return [
        encode_message(ResolveRequest(handle=h, request_id=0xDEADBEEF, flags=OpFlag.PUBLIC_ONLY))
        for h in handles
    ]


def requests_for(target: str, handles: Sequence[str]) -> list[bytes]:
    if target == "http":
        return [http_get(f"/api/handles/{h}") for h in handles]
    return msgpack_requests(handles)


def manifest_handles(path: str) -> list[str]:
    """The sample handles of a seed manifest (``idnode seed``, the demo): all known to exist."""
    with open(path, encoding="utf-8") as fh:
        return [str(item["handle"]) for item in json.load(fh)["sample"]]


def _handles(keys: int, prefix: str) -> Iterator[str]:
    return (f"{prefix}/PRD-{i:07d}" for i in range(keys))


def _checked(cast: Callable[[str], Any], ok: Callable[[Any], bool], want: str) -> Any:
    """An argparse type: ``cast`` the text, and refuse it (saying what is wanted) unless ``ok``."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"want {want}, not {text!r}")
        return value

    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks openloop",
        description="Constant-arrival-rate load on 127.0.0.1 (coordinated omission corrected).",
    )
    positive = _checked(float, lambda v: v > 0, "a number > 0")
    parser.add_argument("--target", choices=["http", "udp", "tcp"], required=True)
    parser.add_argument("--rate", type=positive, required=True, help="requests per second")
    parser.add_argument(
        "--seconds",
        type=_checked(float, lambda v: 0 < v <= 600, "seconds in (0, 600]"),
        default=5.0,
        help="measured window (max 600)",
    )
    parser.add_argument(
        "--port",
        type=_checked(int, lambda v: 0 < v < 65536, "a port 1-65535"),
        required=True,
        help="on 127.0.0.1",
    )
    parser.add_argument(
        "--warmup",
        type=_checked(float, lambda v: v >= 0, "a number >= 0"),
        default=0.5,
        help="seconds before the window",
    )
    parser.add_argument(
        "--connections",
        type=_checked(int, lambda v: v >= 1, "an integer >= 1"),
        default=64,
        help="HTTP and TCP connections",
    )
    parser.add_argument("--timeout", type=positive, default=1.0, help="answer timeout, seconds")
    parser.add_argument(
        "--keys",
        type=_checked(int, lambda v: v >= 1, "an integer >= 1"),
        default=1000,
        help="cycle over PRD-0000000..keys-1",
    )
    parser.add_argument("--prefix", default="88.118.8", help="of those keys")
    parser.add_argument(
        "--manifest",
        help="cycle over the sample handles of a seed manifest instead (the demo's is"
        " data/demo/manifest.json; idnode seed writes one)",
    )
    parser.add_argument(
        "--ok-status",
        type=_checked(int, lambda v: 400 <= v <= 599, "an HTTP status 400-599"),
        default=0,
        help="an HTTP status >= 400 that is ok",
    )
    args = parser.parse_args(argv)
    if args.manifest:
        try:
            handles = manifest_handles(args.manifest)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            parser.error(
                f"--manifest {args.manifest}: not a seed manifest with sample handles"
                f" ({type(exc).__name__}: {exc})"
            )
        if not handles:
            parser.error(f"--manifest {args.manifest}: its sample is empty")
    else:
        handles = list(_handles(args.keys, args.prefix))
    requests = requests_for(args.target, handles)
    try:
        result = run_openloop(
            args.target,
            args.port,
            requests,
            args.rate,
            args.seconds,
            warmup_s=args.warmup,
            connections=args.connections,
            timeout_s=args.timeout,
            ok_status=args.ok_status,
        )
    except OSError as exc:  # nothing listening: say so, not a traceback
        print(f"cannot connect to 127.0.0.1:{args.port} over {args.target}: {exc}", file=sys.stderr)
        return 1
    width = max(len(k) for k in result.as_dict())
    for key, value in result.as_dict().items():
        print(f"{key:<{width}}  {value}")
    if not result.generator_ok:
        print("WARNING: the generator could not keep its schedule: not the server's limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
