"""``idnode serve --workers N``: N node processes on the same ports and the same SQLite store.

The parent homes the configured prefixes once (so workers never race to create ``<prefix>/ADMIN``),
reserves the ports (port 0: it binds with SO_REUSEPORT, keeps the sockets until every worker has
bound, so no other program can take them meanwhile), creates the shared version counters
(``node.coherence``) and starts the workers with multiprocessing's "spawn" (a fresh interpreter:
no event loop, thread or SQLite connection is inherited). Each worker is an ordinary ``Node`` bound
with ``reuse_port``: the kernel spreads connections and datagrams over them, and each has its own
store threads and connections; SQLite's file lock serialises their writers (``busy_timeout``).

Once every worker is listening the parent prints ``idnode listening on HOST: http=N tcp=M udp=M
workers=N``. It forwards SIGTERM and SIGINT to every worker, each drains its in-flight requests
(``Node.stop``), and the parent exits 0 once all have exited. A worker that dies otherwise is
logged and replaced by a new one with its id (the others serve meanwhile), unless workers keep
dying (``RESPAWN_LIMIT``). Before the replacement starts the parent frees the shared version lock
if the dead worker held it, and makes every worker's cache stale (it may have committed a write it
never announced), and keeps its last metrics as a retired snapshot that scrapes still add (so no
total goes back). Workers die with the parent (PR_SET_PDEATHSIG
on Linux, and a once-a-second check of the parent's pid elsewhere), so a ``kill -9`` of the parent
leaves no worker behind; each worker holds the parent's lock of the data directory
(``hold_data_dir``) until it exits, so no other node can serve the directory while one still
answers.

Metrics: each worker writes ``NodeMetrics.snapshot()`` to ``<data_dir>/metrics/worker-<id>.json``
(written aside, then renamed) every ``METRICS_INTERVAL_S`` and on stop, and adds the other workers'
files to its own live numbers when scraped: other workers' figures are at most about a second old.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing import reduction
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from node.coherence import Versions, buckets_for
from node.config import Config
from node.metrics import NodeMetrics

log = logging.getLogger("idnode.workers")

METRICS_INTERVAL_S = 1.0  #: how often a worker publishes its metrics to the others
RESPAWN_LIMIT = (
    5  #: unasked worker deaths within ``RESPAWN_WINDOW_S`` beyond which none is replaced
)
RESPAWN_WINDOW_S = 60.0
START_TIMEOUT_S = 60.0  #: a worker not listening by then fails the start
_PR_SET_PDEATHSIG = 1


class _HeldLock:
    """The parent's locked data-dir file, handed to a spawned worker. A flock belongs to the
    open file, which the descriptor the worker receives shares: the directory stays locked until
    the last holder exits, so a parent killed with -9 no longer frees it while its workers still
    drain (and answer) requests."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return (_adopt_lock, (reduction.DupFd(self.fd),))


def _adopt_lock(dup: Any) -> int:
    return int(dup.detach())  # held, never closed: it goes when the worker does


# -- metrics shared through files ----------------------------------------------------------------


class MetricsFiles:
    """``<data_dir>/metrics/worker-<id>.json`` of every worker; see the module docstring."""

    def __init__(self, data_dir: str | Path, worker_id: int) -> None:
        self.dir = Path(data_dir) / "metrics"
        self.worker_id = worker_id
        self.path = self.dir / f"worker-{worker_id}.json"

    @staticmethod
    def clear(data_dir: str | Path) -> None:
        """Forget a previous run's workers (the parent does this before starting them)."""
        folder = Path(data_dir) / "metrics"
        folder.mkdir(parents=True, exist_ok=True)
        for old in [*folder.glob("worker-*.json*"), *folder.glob("retired-*.json")]:
            old.unlink(missing_ok=True)

    def write(self, snapshot: dict[str, Any]) -> None:
        data = json.dumps(snapshot, separators=(",", ":"))
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(data)
        os.replace(tmp, self.path)  # readers see the old file or the new one, never half

    def publish(self, snapshot: dict[str, Any]) -> None:
        """``write``, a failure logged (the metrics are not worth stopping a worker for)."""
        try:
            self.write(snapshot)
        except OSError as exc:
            log.warning("could not publish metrics: %s", exc)

    def peers_after(self, snapshot: dict[str, Any] | None) -> list[dict[str, Any]]:
        """Publish ``snapshot`` now (None: publish nothing), then return the other workers' last
        ones: what a scrape adds.

        Publishing first keeps every total monotonic whichever worker answers: a scrape through
        another worker reads this one's numbers at least as fresh as any this one reported."""
        if snapshot is not None:
            self.publish(snapshot)
        return self.peers()

    def retire(self) -> None:
        """Keep this (dead) worker's last snapshot, as ``retired-<id>-<n>.json``, for scrapes
        to add (its replacement starts its numbers from zero): counters stay, gauges (in
        progress, cache entries and bytes) go to zero. Renamed, so that a scrape never sees it
        under both names (counted twice) or under neither."""
        try:
            snap = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        for transport in snap["transports"].values():
            transport["in_progress"] = 0
        if snap["cache"] is not None:
            snap["cache"][2:] = [0, 0]
        self.write(snap)
        n = len(list(self.dir.glob(f"retired-{self.worker_id}-*.json")))
        os.replace(self.path, self.dir / f"retired-{self.worker_id}-{n}.json")

    def peers(self) -> list[dict[str, Any]]:
        """The other workers' last snapshots, and those of workers that died."""
        out = []
        for path in sorted([*self.dir.glob("worker-*.json"), *self.dir.glob("retired-*.json")]):
            if path == self.path:
                continue
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(path.read_text()))
        return out

    @staticmethod
    def read_all(data_dir: str | Path) -> dict[int, dict[str, Any]]:
        """Every worker's last snapshot by worker id (for tests and operators)."""
        out = {}
        for path in (Path(data_dir) / "metrics").glob("worker-*.json"):
            with contextlib.suppress(OSError, ValueError):
                out[int(path.stem.split("-", 1)[1])] = json.loads(path.read_text())
        return out


# -- the parent --------------------------------------------------------------------------------


def _bind(host: str, port: int, kind: socket.SocketKind) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=kind)[0][0]
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def reserve_ports(config: Config) -> tuple[Config, list[socket.socket]]:
    """Config with port 0 replaced by reserved ports (TCP and UDP share one), and the sockets
    holding them. They are bound, not listening: the kernel gives no connection to them."""
    socks: list[socket.socket] = []
    http_port, port = config.http_port, config.port
    if http_port == 0:
        socks.append(_bind(config.host, 0, socket.SOCK_STREAM))
        http_port = socks[-1].getsockname()[1]
    if port == 0:
        for attempt in range(20):
            tcp = _bind(config.host, 0, socket.SOCK_STREAM)
            port = tcp.getsockname()[1]
            try:
                udp = _bind(config.host, port, socket.SOCK_DGRAM)
            except OSError:  # the UDP twin is taken: pick again
                tcp.close()
                if attempt == 19:
                    raise
                continue
            socks += [tcp, udp]
            break
    return dataclasses.replace(config, http_port=http_port, port=port), socks


async def _prepare(config: Config) -> None:
    """Home the configured prefixes once, before any worker runs."""
    from node.server import opening_store
    from node.service import Service
    from node.store.sqlite import SQLiteStore

    store = SQLiteStore(config.data_dir, max_batch=config.write_batch_max)
    try:
        with opening_store(config.data_dir):
            await store.open()
            await Service(config, store).start()
    finally:
        with contextlib.suppress(Exception):
            await store.close()


def serve_workers(config: Config, workers: int) -> int:
    """Run ``workers`` worker processes until SIGTERM or SIGINT; the exit status once they
    started. ``CannotServe`` or ``ConfigError`` as ``serve`` when the parent cannot prepare."""
    from node.server import hold_data_dir

    lock = hold_data_dir(config.data_dir)
    asyncio.run(_prepare(config))
    config, reserved = reserve_ports(config)
    MetricsFiles.clear(config.data_dir)
    ctx = multiprocessing.get_context("spawn")
    versions = Versions.shared(ctx, buckets_for(config.cache_max_bytes))
    procs: list[Any] = []
    signalled: set[int] = set()
    stopping = False

    def forward() -> None:
        for p in procs:
            if p.pid is not None and p.exitcode is None and p.pid not in signalled:
                signalled.add(p.pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)

    def on_signal(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        forward()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    readers: dict[Connection, int] = {}  #: ready pipes of workers starting, to their ids

    def start(worker_id: int) -> Any:
        reader, writer = ctx.Pipe(duplex=False)
        args = (config, worker_id, versions.array, versions.lock, versions.buckets)
        p = ctx.Process(
            target=worker_main,
            args=(*args, writer, os.getpid(), _HeldLock(lock.fileno())),
            name=f"idnode-worker-{worker_id}",
        )
        p.start()
        writer.close()
        procs.append(p)
        readers[reader] = worker_id
        return p

    def replace(dead: Any) -> Any:
        worker_id = int(dead.name.rpartition("-")[2])
        if versions.repair():
            log.error("worker %s died holding the cache-version lock: freed", dead.name)
        MetricsFiles(config.data_dir, worker_id).retire()
        return start(worker_id)

    try:
        for worker_id in range(workers):
            start(worker_id)
        if not _wait_ready(readers, lambda: stopping):
            stopping = True
            forward()
            _reap(procs, config.shutdown_grace_s + 5)
            return 1
        for sock in reserved:  # the UDP one would take a share of the datagrams from now on
            sock.close()
        reserved.clear()
        metrics = f" metrics={config.metrics_port}" if config.metrics_port else ""
        print(
            f"idnode listening on {config.host}: http={config.http_port} "
            f"tcp={config.port} udp={config.port}{metrics} workers={workers}",
            flush=True,
        )
        log.info("%d workers: pids %s", workers, " ".join(str(p.pid) for p in procs))
        _supervise(procs, readers, lambda: stopping, replace)
        forward()
        _reap(procs, config.shutdown_grace_s + 5)
        return 0 if stopping else 1
    finally:
        for sock in reserved:
            sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.close()


def _wait_ready(readers: dict[Connection, int], stopping: Any) -> bool:
    """Whether every worker said it is ready; each reader that answered is closed and goes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while readers:
        if stopping() or time.monotonic() > deadline:
            log.error("workers did not start: %s still starting", sorted(readers.values()))
            return False
        for reader in wait(list(readers), timeout=0.5):
            assert isinstance(reader, Connection)
            worker_id = readers.pop(reader)
            try:
                status, detail = reader.recv()
            except EOFError:
                status, detail = "error", "exited before listening"
            reader.close()
            if status != "ready":
                log.error("worker %d failed to start: %s", worker_id, detail)
                return False
    return True


def _supervise(
    procs: list[Any],
    readers: dict[Connection, int],
    stopping: Callable[[], bool],
    replace: Callable[[Any], Any],
) -> None:
    """Until every worker has exited. One that dies unasked is logged and ``replace``d (a new
    worker, appended to ``procs``; its ready pipe joins ``readers``), unless more than
    ``RESPAWN_LIMIT`` died within ``RESPAWN_WINDOW_S``: then the rest serve alone."""
    alive = {p.sentinel: p for p in procs if p.exitcode is None}
    deaths: list[float] = []
    while alive:
        for ready in wait([*alive, *readers], timeout=0.5):
            if isinstance(ready, Connection):  # a replacement started, or failed to
                worker_id = readers.pop(ready)
                with contextlib.suppress(EOFError, OSError):
                    status, detail = ready.recv()
                    if status != "ready":
                        log.error("worker %d failed to start again: %s", worker_id, detail)
                ready.close()
                continue
            assert isinstance(ready, int)
            p = alive.pop(ready)
            p.join()
            if stopping():
                continue
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < RESPAWN_WINDOW_S] + [now]
            died = f"worker {p.name} (pid {p.pid}) died with exit code {p.exitcode}"
            if len(deaths) > RESPAWN_LIMIT:
                log.error(
                    "%s: not replaced, %d died within %g s", died, len(deaths), RESPAWN_WINDOW_S
                )
                continue
            log.error("%s: starting a new one", died)
            new = replace(p)
            alive[new.sentinel] = new


def _reap(procs: list[Any], grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.exitcode is None:
            log.error("worker %s (pid %d) did not stop: killed", p.name, p.pid)
            p.kill()
            p.join(5)


# -- a worker ----------------------------------------------------------------------------------


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before that took effect
        os._exit(1)


def worker_main(
    config: Config,
    worker_id: int,
    array: Any,
    lock: Any,
    buckets: int,
    ready: Connection,
    parent_pid: int,
    data_dir_lock: int,
) -> None:
    """Entry point of a spawned worker process; ``data_dir_lock`` is the parent's lock of the
    data directory (``_HeldLock``), held until the process exits."""
    _die_with_parent(parent_pid)
    from node import logs
    from node.cli import _run

    logs.setup(config.log_level)
    versions = Versions(buckets, array, lock)
    _run(_worker(config, worker_id, versions, ready, parent_pid))


async def _worker(
    config: Config, worker_id: int, versions: Versions, ready: Connection, parent_pid: int
) -> None:
    from node.server import Node, StoreUnavailable, tune_gc

    node = Node(config, versions=versions, reuse_port=True)
    files = MetricsFiles(config.data_dir, worker_id)
    node.metrics.peers = files.peers_after
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except BaseException as exc:
        ready.send(
            ("error", str(exc) if isinstance(exc, OSError | StoreUnavailable) else repr(exc))
        )
        ready.close()
        with contextlib.suppress(Exception):
            await node.store.close()
        if isinstance(exc, OSError | StoreUnavailable):  # the parent says why: no traceback
            raise SystemExit(1) from None
        raise
    tune_gc()
    files.publish(node.metrics.snapshot())
    ready.send(("ready", os.getpid()))
    ready.close()
    publisher = asyncio.create_task(_publish(node.metrics, files, stop, parent_pid))
    await stop.wait()
    await node.stop()
    publisher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await publisher
    files.publish(node.metrics.snapshot())


async def _publish(
    metrics: NodeMetrics, files: MetricsFiles, stop: asyncio.Event, parent_pid: int
) -> None:
    while True:
        await asyncio.sleep(METRICS_INTERVAL_S)
        files.publish(metrics.snapshot())
        if os.getppid() != parent_pid:
            log.error("the parent process is gone: stopping")
            stop.set()
