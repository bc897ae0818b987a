"""Prometheus metrics of one node: plain numbers on the hot path, metric families at scrape time.

The transports count every answer once, around the one service core, with the op it answered and
the response code it carried; the store's own threads time reads and commits; the cache counts its
own hits and misses; the number of identifiers per prefix is read from the store at each scrape
(``Store.identifier_counts``), which keeps it in the transactions that change it. What the hot
path touches is made once per (transport, op): an ``OpStats`` holding an int per response code and
a list of bucket counts. Recording an answer is a ``perf_counter``, a ``bisect`` and a few int
additions, with no label lookup, string formatting or lock (each number has one writing thread, and
a scrape reads them under the GIL): about half a microsecond, where prometheus-client's own label
children cost about 0.9 us per counter ``inc`` and 1.8 us per histogram ``observe`` (each takes a
lock). ``NodeCollector`` turns the numbers into metric families when Prometheus scrapes.

Every node has its own ``CollectorRegistry`` (tests run several nodes in one process). It is served
by ``GET /metrics`` on the HTTP port and, when ``metrics_port`` is set, on a port of its own. Label
values come from small fixed sets (transports, op names, response codes, store operations, homed
prefixes): never an identifier, a credential or a client address.

Several workers (``idnode serve --workers N``): prometheus-client's multiprocess mode does not run
custom collectors, so the workers merge these plain numbers themselves. Each writes ``snapshot()``
to ``<data_dir>/metrics/worker-<id>.json`` every second, on stop, and before each scrape it
answers (``node.workers``); a scrape of any worker adds the other workers' last snapshots
(``NodeMetrics.peers``) to its own live numbers, so what other workers answered shows up at most
about one second late, and no total goes back whichever worker answers the next scrape.
Counters, histograms and gauges (in progress, cache entries and bytes) are summed; identifiers
per prefix come from the store, which all workers share.
"""

from __future__ import annotations

import platform
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from time import perf_counter
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from protocol.codes import OpCode, ResponseCode

if TYPE_CHECKING:
    from node.service import Service

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Histogram",
    "NodeMetrics",
    "OpStats",
    "Rejections",
    "StoreMetrics",
    "TransportMetrics",
]

#: request duration buckets, 100 us to 1 s (seconds)
REQUEST_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
#: store operation buckets: a cached SQLite read takes tens of microseconds, a commit an fsync
STORE_BUCKETS_S = (0.00001, 0.000025, 0.00005, *REQUEST_BUCKETS_S, 2.5)
#: writes per commit (group commit); ``write_batch_max`` is 512 by default
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

TRANSPORTS = ("http", "tcp", "udp")
#: ops whose series exist from the start (0), so that ``rate()`` and the dashboard have them; other
#: ops appear with their first request (each op adds 16 histogram lines to every scrape)
STANDING_OPS = (OpCode.RESOLUTION, OpCode.CREATE_HANDLE)
#: server-side failure codes (ERROR, SERVER_BUSY) whose series exist at 0 from an op's first series
#: on, beside SUCCESS: ``rate()``/``increase()`` (the error ratio alert and panels) count nothing
#: for a series that first appears already holding its count, so a first burst would go unseen
STANDING_CODES = (int(ResponseCode.ERROR), int(ResponseCode.SERVER_BUSY))
UNKNOWN_OP = "unknown"  #: op label of messages whose op code we do not know (hostile input)
_OP_NAMES = {int(op): op.name.lower() for op in OpCode}
_SUCCESS = int(ResponseCode.SUCCESS)
#: response codes counted as authentication or authorization rejections, by reason label
AUTH_REASONS = {
    int(ResponseCode.AUTHENTICATION_NEEDED): "authentication_needed",  # 402
    int(ResponseCode.AUTHENTICATION_FAILED): "authentication_failed",  # 403
    int(ResponseCode.NOT_AUTHORIZED): "not_authorized",  # 400
    int(ResponseCode.INVALID_CREDENTIAL): "invalid_credential",  # 404
}
#: IDIS quota codes (603-605): answered once quotas exist, counted from now on
QUOTA_CODES = frozenset(
    int(c)
    for c in (
        ResponseCode.DAILY_REQUEST_LIMIT,
        ResponseCode.REGISTRATION_COUNT_LIMIT,
        ResponseCode.PREFIX_LIMIT,
    )
)


def op_label(op: int) -> str:
    """The ``op`` label of an op code: its lower-case name, or ``unknown``."""
    return _OP_NAMES.get(int(op), UNKNOWN_OP)


class Histogram:
    """Bucket counts and a sum; written by one thread, read by scrapes."""

    __slots__ = ("bounds", "counts", "sum", "_le")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._le = [repr(float(b)) for b in bounds]  #: as prometheus-client writes them
        self.counts = [0] * (len(bounds) + 1)  #: per bucket, not cumulative; last is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # first bound >= value: ``le``
        self.sum += value

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """(``le`` -> cumulative count, ending with ``+Inf``) and the sum, from one snapshot."""
        counts, total_sum = list(self.counts), self.sum
        out: list[tuple[str, float]] = []
        running = 0
        for le, n in zip(self._le, counts, strict=False):
            running += n
            out.append((le, running))
        out.append(("+Inf", running + counts[-1]))
        return out, total_sum


class OpStats:
    """Answers to one op on one transport: a count per response code and their durations."""

    __slots__ = ("success", "codes", "latency", "rejections")

    def __init__(self, rejections: Rejections) -> None:
        self.success = 0
        #: response codes other than SUCCESS; the standing ones from 0, so that their series
        #: exist before their first answer (``rate()`` misses a series' first sample)
        self.codes: dict[int, int] = dict.fromkeys(STANDING_CODES, 0)
        self.latency = Histogram(REQUEST_BUCKETS_S)
        self.rejections = rejections

    def done(self, code: int, started: float) -> None:
        """Count one answer with ``code``, begun at ``perf_counter()`` ``started``."""
        elapsed = perf_counter() - started
        latency = self.latency
        latency.counts[bisect_left(latency.bounds, elapsed)] += 1
        latency.sum += elapsed
        if code == _SUCCESS:
            self.success += 1
        else:
            self._failed(int(code))

    def _failed(self, code: int) -> None:
        self.codes[code] = self.codes.get(code, 0) + 1
        if code in AUTH_REASONS:
            reason = AUTH_REASONS[code]
            self.rejections.auth[reason] = self.rejections.auth.get(reason, 0) + 1
        elif code in QUOTA_CODES:
            self.rejections.quota += 1


class Rejections:
    """Requests refused for authentication or authorization, and for quotas."""

    __slots__ = ("auth", "quota")

    def __init__(self) -> None:
        self.auth: dict[str, int] = dict.fromkeys(AUTH_REASONS.values(), 0)
        self.quota = 0


class TransportMetrics:
    """One transport's requests: ``OpStats`` per op, and how many are being answered now.

    ``in_progress`` counts requests that wait (a store read, a write); an answer given straight
    from the cache, without suspending, starts and ends between two scrapes and is not counted.
    """

    __slots__ = ("name", "in_progress", "dropped", "ops", "_by_type", "_rejections")

    def __init__(self, name: str, ops: Iterable[int], rejections: Rejections) -> None:
        self.name = name
        self.in_progress = 0
        self.dropped = 0  #: requests dropped unanswered (UDP beyond its queue bound)
        self._rejections = rejections
        self.ops: dict[str, OpStats] = {op_label(op): OpStats(rejections) for op in ops}
        self._by_type: dict[type, OpStats] = {}

    def op(self, op: int) -> OpStats:
        """The stats of ``op`` (any int: unknown op codes share the ``unknown`` stats)."""
        label = op_label(op)
        stats = self.ops.get(label)
        if stats is None:
            stats = self.ops[label] = OpStats(self._rejections)
        return stats

    def for_request(self, request: Any) -> OpStats:
        """The stats of a typed request's op, found by its class (no enum hashing per request)."""
        stats = self._by_type.get(type(request))
        if stats is None:
            stats = self._by_type[type(request)] = self.op(request.op)
        return stats


class StoreMetrics:
    """Written by the store's threads: read and commit timings, batch sizes."""

    __slots__ = ("read", "commit", "batch", "fsyncs")

    def __init__(self) -> None:
        self.read = Histogram(STORE_BUCKETS_S)
        self.commit = Histogram(STORE_BUCKETS_S)
        self.batch = Histogram(BATCH_BUCKETS)
        self.fsyncs = 0  #: commits that wrote, with synchronous=FULL: one fsync each

    def committed(self, seconds: float, writes: int, *, fsynced: bool = True) -> None:
        """A commit of ``writes`` ops took ``seconds``. ``fsynced`` is False when nothing was
        written (every write refused): SQLite then appends nothing to its log and does not sync.
        """
        self.commit.observe(seconds)
        self.batch.observe(writes)
        self.fsyncs += fsynced


class NodeMetrics:
    """Every metric of one node and the registry that exposes them."""

    def __init__(self) -> None:
        self.rejections = Rejections()
        self.transports = {
            name: TransportMetrics(name, STANDING_OPS, self.rejections) for name in TRANSPORTS
        }
        self.store = StoreMetrics()
        self.referrals_followed = 0  #: referrals followed on clients' behalf
        self.service: Service | None = None  #: cache and homed prefixes; set by the node
        #: publishes this worker's ``snapshot()`` given (None: nothing) and returns the other
        #: workers' last ones, merged into every scrape (None: one process)
        self.peers: Callable[[dict[str, Any] | None], list[dict[str, Any]]] | None = None
        #: handles per homed prefix (as written), read from the store by ``scrape``
        self.identifiers: dict[str, int] = {}
        #: cache numbers (hits, misses, entries, bytes) replacing the service's, in merged totals
        self.cache_totals: list[int] | None = None
        self.registry = CollectorRegistry()
        self.registry.register(NodeCollector(self))

    def referral_followed(self) -> None:
        self.referrals_followed += 1

    def exposition(self) -> bytes:
        """The text exposition format (``CONTENT_TYPE_LATEST``) of every metric."""
        return generate_latest(self.registry)

    async def scrape(self) -> bytes:
        """``exposition()``, with the identifier counts read from the store first."""
        if self.service is not None:
            self.identifiers = await self.service.store.identifier_counts()
        return self.exposition()

    # -- several workers ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Every number, JSON-able, for the other workers to add to their scrapes."""
        s = self.store
        return {
            "transports": {
                name: {
                    "in_progress": tm.in_progress,
                    "dropped": tm.dropped,
                    "ops": {
                        op: {
                            "success": st.success,
                            "codes": {str(c): n for c, n in st.codes.items()},
                            "latency": [list(st.latency.counts), st.latency.sum],
                        }
                        for op, st in list(tm.ops.items())
                    },
                }
                for name, tm in self.transports.items()
            },
            "auth": dict(self.rejections.auth),
            "quota": self.rejections.quota,
            "referrals": self.referrals_followed,
            "cache": self._live_cache(),
            "store": {
                "read": [list(s.read.counts), s.read.sum],
                "commit": [list(s.commit.counts), s.commit.sum],
                "batch": [list(s.batch.counts), s.batch.sum],
                "fsyncs": s.fsyncs,
            },
        }

    def merged(self, mine: dict[str, Any], peers: list[dict[str, Any]]) -> NodeMetrics:
        """A new ``NodeMetrics`` holding this one's ``snapshot()`` ``mine`` plus ``peers``'.
        (``mine`` is the one just published: a later, larger one here could make the next
        scrape, through another worker reading the published one, go back.)"""
        total = NodeMetrics()
        total.service = self.service
        total.cache_totals = [0, 0, 0, 0]
        total.identifiers = self.identifiers
        for snap in (mine, *peers):
            total._add(snap)
        return total

    def _live_cache(self) -> list[int] | None:
        """This process's cache hits, misses, entries and bytes (None: no service)."""
        cache = self.service.cache if self.service is not None else None
        if cache is None:
            return None
        return [cache.hits, cache.misses, len(cache), cache.used_bytes]

    def cache_numbers(self) -> list[int]:
        """The cache's hits, misses, entries and bytes (merged ones: every worker's)."""
        if self.cache_totals is not None:
            return list(self.cache_totals)
        return self._live_cache() or [0, 0, 0, 0]

    def merged_now(self) -> NodeMetrics:
        """This one, or with several workers this one's numbers merged with the others' (the
        snapshot merged is published: see ``merged``)."""
        if self.peers is None:
            return self
        mine = self.snapshot()
        return self.merged(mine, self.peers(mine))

    def cache_numbers_now(self) -> list[int]:
        """``cache_numbers`` of every worker, without a snapshot of the rest or a file written
        (``/readyz`` asks for these alone)."""
        mine = self._live_cache() or [0, 0, 0, 0]
        if self.peers is None:
            return mine
        caches = [snap["cache"] for snap in self.peers(None) if snap["cache"] is not None]
        return [sum(column) for column in zip(mine, *caches, strict=True)]

    def _add(self, snap: dict[str, Any]) -> None:
        for name, t in snap["transports"].items():
            tm = self.transports.get(name)
            if tm is None:
                continue
            tm.in_progress += t["in_progress"]
            tm.dropped += t["dropped"]
            for op, o in t["ops"].items():
                st = tm.ops.get(op)
                if st is None:
                    st = tm.ops[op] = OpStats(self.rejections)
                st.success += o["success"]
                for code, n in o["codes"].items():
                    st.codes[int(code)] = st.codes.get(int(code), 0) + n
                _add_histogram(st.latency, o["latency"])
        for reason, n in snap["auth"].items():
            self.rejections.auth[reason] = self.rejections.auth.get(reason, 0) + n
        self.rejections.quota += snap["quota"]
        self.referrals_followed += snap["referrals"]
        if snap["cache"] is not None and self.cache_totals is not None:
            self.cache_totals = [
                a + b for a, b in zip(self.cache_totals, snap["cache"], strict=True)
            ]
        store = snap["store"]
        for name in ("read", "commit", "batch"):
            _add_histogram(getattr(self.store, name), store[name])
        self.store.fsyncs += store["fsyncs"]


def _add_histogram(hist: Histogram, data: list[Any]) -> None:
    counts, total = data
    for i, n in enumerate(counts[: len(hist.counts)]):
        hist.counts[i] += n
    hist.sum += total


class NodeCollector:
    """Builds the metric families from a ``NodeMetrics`` at each scrape."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics.merged_now()
        yield from self._requests(m)
        yield from self._cache(m)
        yield from self._store(m)
        rejected = CounterMetricFamily(
            "idnode_auth_rejections",
            "Requests refused for authentication or authorization, by reason "
            "(402 authentication_needed, 403 authentication_failed, 400 not_authorized, "
            "404 invalid_credential).",
            labels=["reason"],
        )
        for reason, n in sorted(m.rejections.auth.items()):
            rejected.add_metric([reason], n)
        yield rejected
        yield CounterMetricFamily(
            "idnode_quota_rejections",
            "Requests refused by an IDIS quota (response codes 603-605).",
            value=m.rejections.quota,
        )
        yield CounterMetricFamily(
            "idnode_referrals_followed",
            "Referrals followed on a client's behalf (recursive resolution).",
            value=m.referrals_followed,
        )
        yield from self._hierarchy(m)
        yield InfoMetricFamily(
            "idnode_build",
            "Version of idnode and of the Python running it.",
            value={"version": _version(), "python": platform.python_version()},
        )

    @staticmethod
    def _hierarchy(m: NodeMetrics) -> Iterator[Metric]:
        monitor = m.service.monitor if m.service is not None else None
        registration = m.service.registration if m.service is not None else None
        if monitor is not None:
            nodes = GaugeMetricFamily(
                "idnode_delegated_nodes",
                "Top-level: secondary nodes registered here, by heartbeat state (alive, stale).",
                labels=["state"],
            )
            for state in ("alive", "stale"):
                nodes.add_metric([state], monitor.counts.get(state, 0))
            yield nodes
        if registration is not None:
            yield GaugeMetricFamily(
                "idnode_toplevel_registered",
                "1 while the top-level node took this node's last heartbeat in time, else 0.",
                value=1 if registration.ready() else 0,
            )

    @staticmethod
    def _requests(m: NodeMetrics) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "idnode_requests",
            "Requests answered, by transport, op and Handle response code.",
            labels=["transport", "op", "code"],
        )
        duration = HistogramMetricFamily(
            "idnode_request_duration_seconds",
            "Time from a decoded request to its answer being handed to the transport.",
            labels=["transport", "op"],
        )
        in_progress = GaugeMetricFamily(
            "idnode_requests_in_progress",
            "Requests waiting on the store or a write, by transport.",
            labels=["transport"],
        )
        dropped = CounterMetricFamily(
            "idnode_udp_datagrams_dropped",
            "UDP requests dropped unanswered because udp_queue_len were in progress.",
            value=m.transports["udp"].dropped,
        )
        for transport, tm in m.transports.items():
            in_progress.add_metric([transport], tm.in_progress)
            for op, stats in list(tm.ops.items()):
                requests.add_metric([transport, op, str(_SUCCESS)], stats.success)
                for code, n in sorted(stats.codes.items()):
                    requests.add_metric([transport, op, str(code)], n)
                buckets, total = stats.latency.cumulative()
                duration.add_metric([transport, op], buckets, total)
        yield from (requests, duration, in_progress, dropped)

    @staticmethod
    def _cache(m: NodeMetrics) -> Iterator[Metric]:
        hits, misses, entries, used = m.cache_numbers()
        yield CounterMetricFamily(
            "idnode_cache_hits", "Resolutions answered from the resolution cache.", value=hits
        )
        yield CounterMetricFamily(
            "idnode_cache_misses", "Resolutions that had to read the store.", value=misses
        )
        yield GaugeMetricFamily(
            "idnode_cache_entries",
            "Handles (found and not found) held by the resolution cache.",
            value=entries,
        )
        yield GaugeMetricFamily(
            "idnode_cache_bytes",
            "Estimated size of the resolution cache (bounded by cache_max_bytes).",
            value=used,
        )

    @staticmethod
    def _store(m: NodeMetrics) -> Iterator[Metric]:
        s = m.store
        duration = HistogramMetricFamily(
            "idnode_store_operation_duration_seconds",
            "Time the store spent on one read, or on one commit including its fsync.",
            labels=["operation"],
        )
        for operation, hist in (("read", s.read), ("commit", s.commit)):
            buckets, total = hist.cumulative()
            duration.add_metric([operation], buckets, total)
        yield duration
        buckets, total = s.batch.cumulative()
        yield HistogramMetricFamily(
            "idnode_store_commit_batch_size",
            "Writes carried by one commit (group commit: many writes per fsync).",
            buckets=buckets,
            sum_value=total,
        )
        yield CounterMetricFamily(
            "idnode_store_fsyncs",
            "Commits that wrote something; with synchronous=FULL each is one fsync of the write-ahead log.",
            value=s.fsyncs,
        )
        identifiers = GaugeMetricFamily(
            "idnode_identifiers",
            "Identifiers (handles, the prefix's ADMIN handle included) stored per homed prefix.",
            labels=["prefix"],
        )
        for prefix, n in m.identifiers.items():
            identifiers.add_metric([prefix], n)
        yield identifiers


_VERSION: list[str] = []


def _version() -> str:
    if not _VERSION:
        try:
            _VERSION.append(metadata.version("idnode"))
        except metadata.PackageNotFoundError:
            _VERSION.append("unknown")
    return _VERSION[0]
