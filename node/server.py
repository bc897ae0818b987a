"""A running node: store, service core and the three transports, with orderly start and stop.

Like uvicorn's ``server.py``: start binds every port (port 0 picks one; TCP and UDP share the
Handle port number); stop first stops accepting on every port, then lets in-flight requests of
every transport finish under one deadline, ``shutdown_grace_s`` (those left then are cancelled,
and their writes not made unless started), then closes the store: every acknowledged write is on
disk.
Each node has its own metrics (``node.metrics``): ``GET /metrics`` on the HTTP port, and on
``metrics_port`` too when that is set. A ``Node`` is one process; ``idnode serve --workers N``
(``node.workers``) runs N of them on shared ports (``reuse_port``) and shared ``versions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import logging
import shutil
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from node.coherence import Versions
from node.config import Config, ConfigError
from node.delegation import Monitor, Registrar, ToplevelProbe
from node.metrics import NodeMetrics
from node.service import Service
from node.store import StoreError
from node.store.sqlite import DISK_FULL, SQLiteStore
from node.transports.http import NodeRunner, make_app, make_metrics_app
from node.transports.msgpack import TCPProtocol, UDPProtocol
from node.transports.replies import Replies
from protocol.wire import WireLimits

log = logging.getLogger("idnode.server")

#: Net allocations of tracked objects between young collections (CPython's default is 700). Most
#: of a request's objects die with it; at 700 a young collection came every 40 or so creates,
#: walking the requests in flight and promoting them, which also brought full collections sooner.
GC_THRESHOLDS = (10_000, 20, 20)
#: past the grace, how long closing the store still waits for a commit in progress (its writes
#: were cancelled, never acknowledged: the process may end without them)
STORE_CLOSE_S = 0.5
#: past the grace, how long HTTP handlers get to end once cancelled
HTTP_CANCEL_S = 0.05
#: free space under which a store that cannot be opened is said to be on a full disk: less than
#: the 32 KiB of a WAL index, a few pages of log
FULL_DISK_BYTES = 1 << 20


def tune_gc() -> None:
    """For a serving process, once started: collect less often, and leave what the start built
    (modules, the app, the service) out of every later collection, since it lives as long as the
    process does (``gc.freeze``, as prefork servers do)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class CannotServe(Exception):
    """A node cannot start, for a reason its command says in one line (exit status 1)."""


class StoreUnavailable(CannotServe):
    """The data directory cannot be served: not a directory, not writable, not a database, or
    already served by another idnode process."""


@contextlib.contextmanager
def opening_store(data_dir: str) -> Iterator[None]:
    """Failures of opening the store in ``data_dir`` (not a directory, not writable, not a
    database, on a full disk) as ``StoreUnavailable``, which the commands say in one line."""
    try:
        yield
    except (OSError, sqlite3.Error, StoreError) as exc:
        # SQLite says "disk I/O error" when a full disk leaves no room for its WAL index
        with contextlib.suppress(OSError):
            if shutil.disk_usage(data_dir).free < FULL_DISK_BYTES:
                exc = StoreError(f"{exc} ({DISK_FULL})")
        raise StoreUnavailable(f"cannot open the store in {data_dir}: {exc}") from exc


def hold_data_dir(data_dir: str) -> IO[str]:
    """Lock ``data_dir`` for as long as the returned file stays open (the lock goes with the
    process, however it ends). A second idnode process on it is refused: each caches answers,
    and one would answer stale what the other wrote. (Workers share the parent's lock.)"""
    try:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        lock = open(Path(data_dir) / "idnode.lock", "a")  # noqa: SIM115 - held until exit
    except OSError as exc:
        raise StoreUnavailable(f"cannot use the data directory {data_dir}: {exc}") from exc
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        raise StoreUnavailable(
            f"{data_dir} is served by another idnode process: stop it, or give another --data-dir"
        ) from None
    return lock


class Node:
    """One node process; ``ports`` holds the bound ports once started."""

    def __init__(
        self, config: Config, *, versions: Versions | None = None, reuse_port: bool = False
    ) -> None:
        self.config = config
        #: bind with SO_REUSEPORT (workers share the ports; the ports must be given, not 0)
        self.reuse_port = reuse_port
        self.metrics = NodeMetrics()
        self.store = SQLiteStore(
            config.data_dir,
            max_batch=config.write_batch_max,
            batch_wait_s=config.write_batch_wait_s,
            metrics=self.metrics.store,
        )
        self.service = Service(config, self.store, versions=versions)
        self.metrics.service = self.service
        if self.service.resolver is not None:
            self.service.resolver.on_follow = self.metrics.referral_followed
        #: a secondary's registration with its top-level node; a recursive node's check that its
        #: top-level answers; a top-level's delegation checks
        self.registrar = (
            Registrar(self.service) if config.toplevel and config.role == "secondary" else None
        )
        self.probe = ToplevelProbe(self.service) if config.role == "recursive" else None
        self.monitor = Monitor(self.service) if config.role == "toplevel" else None
        self.service.registration, self.service.monitor = self.registrar, self.monitor
        self.service.reachability = self.probe
        self.limits = WireLimits(max_frame_bytes=config.max_frame_bytes)
        self.connections: set[Any] = set()
        self._runner: web.AppRunner | None = None
        self._metrics_runner: web.AppRunner | None = None
        self._tcp: asyncio.Server | None = None
        self._udp: UDPProtocol | None = None

    @property
    def ports(self) -> dict[str, int]:
        return self.service.ports

    async def start(self) -> None:
        with opening_store(self.config.data_dir):
            await self.store.open()
            await self.service.start()
        loop = asyncio.get_running_loop()
        host = self.config.host
        self._runner = NodeRunner(
            make_app(self.service, self.metrics),
            access_log=None,
            shutdown_timeout=self.config.shutdown_grace_s,
            # from the connection's start and after each answer: a head never finished closes too
            keepalive_timeout=self.config.http_idle_timeout_s,
        )
        await self._runner.setup()
        reuse = self.reuse_port or None  # None: aiohttp's default (off)
        site = web.TCPSite(self._runner, host, self.config.http_port, reuse_port=reuse)
        await site.start()
        http_port = self._runner.addresses[0][1]
        replies = Replies(self.service)  # shared by every TCP connection and the UDP socket
        for attempt in range(20):
            self._tcp = await loop.create_server(
                lambda: TCPProtocol(
                    self.service,
                    self.limits,
                    self.connections,
                    self.metrics.transports["tcp"],
                    replies,
                ),
                host,
                self.config.port,
                reuse_port=reuse,
            )
            port = self._tcp.sockets[0].getsockname()[1]
            try:
                _, udp = await loop.create_datagram_endpoint(
                    lambda: UDPProtocol(
                        self.service, self.limits, self.metrics.transports["udp"], replies
                    ),
                    local_addr=(host, port),
                    reuse_port=reuse,
                )
                break
            except OSError:  # the UDP twin of a picked TCP port is taken: pick again
                self._tcp.close()
                if self.config.port or attempt == 19:
                    raise
        assert isinstance(udp, UDPProtocol)
        self._udp = udp
        self.service.ports.update(http=http_port, tcp=port, udp=port)
        if self.service.resolver is not None and self.config.role == "recursive":
            # it walks for every request, hops included: one to itself would start another walk
            self.service.resolver.know_self(port)
        if self.config.metrics_port:
            self._metrics_runner = web.AppRunner(make_metrics_app(self.metrics), access_log=None)
            await self._metrics_runner.setup()
            await web.TCPSite(
                self._metrics_runner, host, self.config.metrics_port, reuse_port=reuse
            ).start()
            self.ports["metrics"] = self._metrics_runner.addresses[0][1]
        if self.registrar is not None:  # after binding: the site it registers names the ports
            self.service.on_homed = self.registrar.poke
            self.registrar.start()
        if self.probe is not None:
            self.probe.start()
        if self.monitor is not None:
            self.monitor.start()
        log.info(
            "%s listening on %s: http=%d tcp=%d udp=%d",
            self.config.role,
            host,
            http_port,
            port,
            port,
        )

    async def stop(self) -> None:
        """Stop accepting on every port at once, then drain every transport together until one
        deadline, ``shutdown_grace_s`` from now: requests still running then are cancelled
        (unanswered, and their writes not made unless already started). Close the store last."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_grace_s
        await self._stop_accepting()
        for task in (self.registrar, self.probe, self.monitor):
            if task is not None:
                try:
                    await task.stop()
                except Exception:  # the store must still be closed
                    log.exception("stopping %s failed", type(task).__name__)
        drains = [c.drain(deadline) for c in list(self.connections)]
        if self._udp is not None:
            drains.append(self._udp.drain(deadline))
        if self._runner is not None and self._runner.server is not None:
            drains.append(_drain_http(self._runner.server, deadline))
        results = await asyncio.gather(*drains, return_exceptions=True)
        for failed in results:
            if isinstance(failed, Exception):
                log.error("draining failed", exc_info=failed)
        for runner in (self._runner, self._metrics_runner):
            if runner is not None:  # its connections are closed: only the app's cleanup is left
                await runner.cleanup()
        await self.service.stop()
        if self.service.resolver is not None:
            await self.service.resolver.close()
        # a write still committing here was cancelled, so never acknowledged: bounded wait
        await self.store.close(timeout=max(deadline - loop.time(), STORE_CLOSE_S))
        log.info("stopped")

    async def _stop_accepting(self) -> None:
        """Close every listener and take no new request on any port, before any draining (one
        slow to drain must not leave another port accepting)."""
        for runner in (self._runner, self._metrics_runner):
            if runner is not None:
                for site in list(runner.sites):
                    await site.stop()
        if self._tcp is not None:
            self._tcp.close()
        for connection in list(self.connections):
            connection.stop_reading()
        if self._udp is not None:
            self._udp.stop_reading()
        if self._runner is not None and self._runner.server is not None:
            # as aiohttp's cleanup does: requests received before the stop get their handlers
            # first; then idle keep-alive connections close, busy ones after their answer
            await asyncio.sleep(0)
            self._runner.server.pre_shutdown()


async def _drain_http(server: web.Server, deadline: float) -> None:
    """Let HTTP requests in flight finish until ``deadline`` (loop time), then cancel those
    still running and close their connections. (aiohttp's own shutdown waits up to its timeout
    twice, before and after cancelling a request's body: over the deadline.)"""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining > 0:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.shutdown(remaining), remaining)
            return
    # a timeout of 0 would mean none: the smallest that still ends the handlers at once
    await server.shutdown(HTTP_CANCEL_S)


async def serve(config: Config, on_started: Callable[[Node], None] | None = None) -> None:
    """Run a node (one process) until SIGTERM or SIGINT. ``CannotServe`` or ``ConfigError`` (a
    setting this data dir cannot take) when it cannot start."""
    lock = hold_data_dir(config.data_dir)
    node = Node(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    if sys.platform != "win32":  # Windows event loops have no signal handlers
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except (CannotServe, OSError, ConfigError) as exc:
        with contextlib.suppress(Exception):
            await node.stop()
        if isinstance(exc, OSError):
            raise CannotServe(f"cannot listen on {config.host}: {exc}") from None
        raise
    tune_gc()
    metrics = f" metrics={node.ports['metrics']}" if "metrics" in node.ports else ""
    print(
        f"idnode listening on {config.host}: http={node.ports['http']} "
        f"tcp={node.ports['tcp']} udp={node.ports['udp']}{metrics}",
        flush=True,
    )
    if on_started is not None:
        on_started(node)
    await stop.wait()
    await node.stop()
    lock.close()
