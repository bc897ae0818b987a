"""Node benchmark: resolve, miss and create throughput against floors measured in the same run.

With ``identifiers`` stored (1,000,000 by default) in the embedded store, one node process pinned to
CPU 0 and this generator (``benchmarks.loadgen``, one process, closed loop) pinned to CPU 1:

* HTTP resolve of existing identifiers (Zipf popularity, s = 1; also uniform) vs a bare aiohttp handler
  answering a fixed 300-byte JSON (goal >= 0.7x);
* HTTP resolve of identifiers that do not exist under a homed prefix vs existing ones (>= 0.9x),
  with the same Zipf popularity; the node's cache is warmed with both kinds first, as a node in
  service would be (the uniform run shows the cold, store-bound case; not-found answers are cached
  for 60 s, renewed in the background while asked for); and not-found identifiers each asked
  once, as a client walking serial numbers would (no cached answer to give);
* msgpack/TCP and msgpack/UDP resolve vs a bare asyncio TCP / UDP echo (>= 0.6x);
* acknowledged creates from 64 concurrent clients vs the node's HTTP resolve rate (>= 0.5x), over
  HTTP (and the same PUTs against a bare aiohttp handler that reads the body and answers 201: what
  aiohttp alone allows a create, before any work of the node's; and against the durable floor of
  ``benchmarks.floors``, aiohttp and a SQLite group commit into a copy of the store: what a durable
  create costs before the node's own checks) and over msgpack/TCP;
* resident memory of the node after the runs, with the cache filled to its bound (<= 300 MB).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadResult, http_get, http_put, run_load
from node.processes import rss_bytes
from protocol.codes import OpFlag
from protocol.messages import CreateRequest, Credential, ResolveRequest
from protocol.records import HandleValue
from protocol.wire import encode_message, frame

PREFIX = "88.118.8"
SECRET = "bench-secret"
CREATED = "NEW-"  #: the suffix of every handle a run creates (``_forget_creates``)
#: each request sent once
ONCE = ("http_create_64", "floor_http_create_64", "tcp_create_64", "http_miss_never_asked")
DATA_ROOT = Path(__file__).resolve().parent / ".data"


def _key(i: int) -> str:
    return f"{PREFIX}/PRD-{i:07d}"


async def _seed(data_dir: Path, identifiers: int) -> None:
    from node.config import Config
    from node.service import Service
    from node.store import Record
    from node.store.sqlite import SQLiteStore

    store = SQLiteStore(data_dir)
    await store.open()
    try:
        service = Service(Config(data_dir=str(data_dir)), store)
        await service.home_prefix(PREFIX, SECRET)
        now = int(time.time())
        chunk = 50_000
        for start in range(0, identifiers, chunk):
            batch = []
            for i in range(start, min(identifiers, start + chunk)):
                handle = _key(i)
                values = (
                    HandleValue(
                        1, "URL", f"https://factory.example.com/p/{i:07d}".encode(), timestamp=now
                    ),
                    HandleValue(2, "name", b"Brake caliper BC-200", timestamp=now),
                    HandleValue(3, "model", b"BC-200-L", timestamp=now),
                    HandleValue(4, "batch", f"B2026{i % 997:04d}".encode(), timestamp=now),
                    HandleValue(5, "productionDate", b"2026-11-28", timestamp=now),
                )
                batch.append((handle.upper(), Record(handle, values)))
            await store.bulk_load(batch)
    finally:
        await store.close()


def dataset(identifiers: int) -> Path:
    """A data dir holding ``identifiers`` seeded records, built once and reused."""
    data_dir = DATA_ROOT / f"ids-{identifiers}"
    marker = data_dir / "seeded"
    if not marker.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        for f in data_dir.glob("idnode.sqlite3*"):
            f.unlink()
        started = time.perf_counter()
        asyncio.run(_seed(data_dir, identifiers))
        marker.write_text(
            f"{identifiers} identifiers seeded in {time.perf_counter() - started:.1f} s\n"
        )
    return data_dir


def _forget_creates(data_dir: Path) -> int:
    """Delete what a run created (``NEW-...``), with the node stopped, so every run measures the
    seeded data set; the number of handles deleted."""
    conn = sqlite3.connect(data_dir / "idnode.sqlite3", isolation_level=None)
    try:
        low = f"{PREFIX}/{CREATED}".upper()
        cur = conn.execute(
            "DELETE FROM handles WHERE hkey >= ? AND hkey < ?", (low, low[:-1] + chr(ord("-") + 1))
        )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return cur.rowcount
    finally:
        conn.close()


def _resolve_messages(handles: Iterable[str]) -> list[bytes]:
    """Anonymous msgpack resolutions of ``handles``, request ids counting from 0."""
    return [
        encode_message(ResolveRequest(handle=h, request_id=n, flags=OpFlag.PUBLIC_ONLY))
        for n, h in enumerate(handles)
    ]


def _pin(*cpus: int) -> Any:
    """A function that pins the calling process (and what it starts after) to ``cpus``, those of
    them the machine has; none: it changes nothing."""

    def apply() -> None:
        wanted = {cpu for cpu in cpus if cpu < (os.cpu_count() or 0)}
        if wanted and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, wanted)

    return apply


class _Proc:
    """A server subprocess pinned to CPU 0 that reports its ports."""

    def __init__(self, args: list[str], portfile: str | None = None) -> None:
        self.portfile = portfile
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=subprocess.PIPE, text=True, preexec_fn=_pin(0)
        )
        self.ports: dict[str, int] = {}
        if portfile is None:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            # "idnode listening on 127.0.0.1: http=N tcp=M udp=M"
            self.ports = {
                k: int(v) for k, v in (p.split("=") for p in line.split(": ", 1)[1].split())
            }
        else:
            for _ in range(200):
                if Path(portfile).exists() and Path(portfile).read_text():
                    self.ports = {"port": int(Path(portfile).read_text())}
                    break
                time.sleep(0.05)

    def rss_mb(self) -> float:
        return (rss_bytes(self.proc.pid) or 0) / (1024 * 1024)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.portfile is not None:  # each run would leave one per floor in the temp folder
            Path(self.portfile).unlink(missing_ok=True)


def serve_args(data_dir: Path) -> list[str]:
    """``python`` arguments that serve ``data_dir`` on free ports, quietly, in one process."""
    return [
        "-m", "node", "serve", "--data-dir", str(data_dir), "--http-port", "0", "--port", "0",
        "--workers", "1", "--admin-secret", SECRET, "--log-level", "WARNING",
    ]  # fmt: skip


def cache_counts(http_port: int) -> dict[str, int]:
    """The node's resolution cache counters (hits, misses, entries, bytes) from ``/readyz``."""
    url = f"http://127.0.0.1:{http_port}/readyz"
    with urllib.request.urlopen(url, timeout=5) as reply:
        cache: dict[str, int] = json.loads(reply.read())["cache"]
    return cache


def _floor(kind: str, *args: str) -> _Proc:
    portfile = tempfile.mktemp(prefix=f"idnode-floor-{kind}-")
    return _Proc(["-m", "benchmarks.floors", kind, portfile, *args], portfile)


def _store_copy(data_dir: Path, into: Path) -> Path:
    """A copy of the data set's store file (its WAL checkpointed first), for the durable floor."""
    conn = sqlite3.connect(data_dir / "idnode.sqlite3", isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    copy = into / "idnode.sqlite3"
    shutil.copyfile(data_dir / "idnode.sqlite3", copy)
    return copy


def _fig(r: LoadResult) -> dict[str, Any]:
    return {
        "rate_per_s": round(r.rate),
        "p50_ms": round(r.p50_ms, 3),
        "p99_ms": round(r.p99_ms, 3),
        "errors": r.errors,
        "generator_cpu_share": round(r.generator_cpu_s / r.seconds, 2),
    }


def run(
    identifiers: int = 1_000_000,
    seconds: float = 0.6,
    concurrency: int = 32,
    rounds: int = 20,
    warmup_s: float = 10.0,
    run_warmup_s: float = 0.2,
) -> dict[str, Any]:
    data_dir = dataset(identifiers)
    _pin(1)()
    rng = random.Random(1)
    run_id = int(time.time())
    # Popularity follows Zipf (s = 1) over all identifiers, as resolution traffic does; the
    # uniform run shows the store-bound worst case.
    cum, total = [], 0.0
    for rank in range(1, identifiers + 1):
        total += 1.0 / rank
        cum.append(total)
    sample = rng.choices(range(identifiers), cum_weights=cum, k=100_000)
    uniform = [rng.randrange(identifiers) for _ in range(100_000)]
    hits = [http_get(f"/api/handles/{_key(i)}") for i in sample]
    hits_uniform = [http_get(f"/api/handles/{_key(i)}") for i in uniform]
    misses = [http_get(f"/api/handles/{PREFIX}/MISSING-{i:07d}") for i in sample]
    # each asked once: no not-found answer cached to give (a client walking serial numbers)
    never_asked = [http_get(f"/api/handles/{PREFIX}/NEVER-{run_id}-{n}") for n in range(300_000)]
    msgpack_reqs = _resolve_messages(_key(i) for i in sample)
    msgpack_misses = _resolve_messages(f"{PREFIX}/MISSING-{i:07d}" for i in sample)
    auth = "Basic " + base64.b64encode(f"300%3A{PREFIX}/ADMIN:{SECRET}".encode()).decode()
    creates = [
        http_put(
            f"/api/handles/{PREFIX}/{CREATED}{run_id}-{n}?overwrite=false",
            json.dumps(
                {"values": [{"index": 1, "type": "URL", "data": f"https://f.example.com/{n}"}]}
            ).encode(),
            auth,
        )
        for n in range(300_000)
    ]
    admin = Credential(f"{PREFIX}/ADMIN", 300, SECRET)
    tcp_creates = [  # the same records over msgpack/TCP, as the Handle protocol's clients write
        frame(
            encode_message(
                CreateRequest(
                    request_id=n,
                    handle=f"{PREFIX}/{CREATED}{run_id}-T{n}",
                    values=(HandleValue(1, "URL", f"https://f.example.com/{n}".encode()),),
                    credential=admin,
                )
            )
        )
        for n in range(300_000)
    ]
    framed = [frame(m) for m in msgpack_reqs]
    scratch = Path(tempfile.mkdtemp(prefix="idnode-durable-floor-"))
    store_copy = str(_store_copy(data_dir, scratch))
    procs = {kind: _floor(kind) for kind in ("http", "tcp", "udp")}
    procs["http-durable"] = _floor("http-durable", store_copy)
    node = _Proc(serve_args(data_dir))
    fp = {kind: proc.ports["port"] for kind, proc in procs.items()}
    np_ = node.ports
    # name: (transport, port, requests, concurrency, HTTP status that counts as success)
    Plan = dict[str, tuple[str, int, list[bytes], int, int]]
    hot: Plan = {
        "floor_http": ("http", fp["http"], hits, concurrency, 0),
        "http_resolve": ("http", np_["http"], hits, concurrency, 0),
        # right after the hits it is compared with
        "http_miss": ("http", np_["http"], misses, concurrency, 404),
        "floor_tcp": ("tcp", fp["tcp"], framed, concurrency, 0),
        "tcp_resolve": ("tcp", np_["tcp"], framed, concurrency, 0),
        "floor_udp": ("udp", fp["udp"], msgpack_reqs, concurrency, 0),
        "udp_resolve": ("udp", np_["udp"], msgpack_reqs, concurrency, 0),
    }
    # Writes and uniform reads cool the cache the Zipf runs rely on, so they come after them:
    # each write bumps a version bucket (``node.coherence``) that some cached handles share, and
    # tens of thousands of creates in a round made the next round's resolutions miss.
    writes: Plan = {
        "http_create_64": ("http", np_["http"], creates, 64, 0),
        "floor_http_put_64": ("http", fp["http"], creates, 64, 0),
        # the same creates, made durable by aiohttp and SQLite alone: into a copy of the store
        "floor_http_create_64": ("http", fp["http-durable"], creates, 64, 0),
        "tcp_create_64": ("tcp", np_["tcp"], tcp_creates, 64, 0),
    }
    cold: Plan = {
        "http_resolve_uniform": ("http", np_["http"], hits_uniform, concurrency, 0),
        "http_miss_never_asked": ("http", np_["http"], never_asked, concurrency, 404),
    }
    names = [*hot, *writes, *cold]
    runs: dict[str, list[LoadResult]] = {name: [] for name in names}
    #: name -> [hits, misses] of the node's cache during its runs
    lookups: dict[str, list[int]] = {name: [0, 0] for name in names}
    try:
        # Warm the node's cache with the Zipf traffic first, as a node in service would be,
        # the identifiers that do not exist as well as those that do. UDP, the fastest door,
        # goes through the whole sample several times; HTTP through it once, since an answer is
        # kept encoded per wire format and its JSON is built when HTTP first asks for it.
        run_load("udp", np_["udp"], msgpack_reqs, concurrency, 0.0, warmup_s)
        run_load("http", np_["http"], hits, concurrency, 0.0, warmup_s / 2)
        run_load("udp", np_["udp"], msgpack_misses, concurrency, 0.0, warmup_s / 2)
        run_load("http", np_["http"], misses, concurrency, 0.0, warmup_s / 4, 404)
        # Floors and node alternate in short runs, round after round, so that whatever else the
        # machine does (its speed drifted by a quarter over seconds) weighs on both alike; each
        # rate is the median round, and a ratio within a plan the median of the rounds' ratios.
        for plan in (hot, writes, cold):
            for round_no in range(rounds):
                for name, (kind, port, reqs, conc, ok) in plan.items():
                    if name in ONCE:
                        reqs = reqs[round_no::rounds]
                    before = cache_counts(np_["http"])
                    result = run_load(kind, port, reqs, conc, run_warmup_s, seconds, ok_status=ok)
                    runs[name].append(result)
                    after = cache_counts(np_["http"])
                    lookups[name][0] += after["hits"] - before["hits"]
                    lookups[name][1] += after["misses"] - before["misses"]
        rss = node.rss_mb()
        cache_at_end = cache_counts(np_["http"])  # how full the cache was when RSS was read
    finally:
        node.stop()
        _forget_creates(data_dir)
        for proc in procs.values():
            proc.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    best = {name: sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for name, rs in runs.items()}
    results: dict[str, Any] = {
        "identifiers": identifiers,
        "seconds_per_run": seconds,
        "warmup_s_per_run": run_warmup_s,
        "rounds": rounds,
        "cache_warmup_s": warmup_s,
        "concurrency": concurrency,
        "generator": "benchmarks.loadgen: 1 process pinned to CPU 1, closed loop, uvloop",
        "servers": "node and floors: 1 process each, all pinned to CPU 0, run alternately",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    results.update({name: _fig(r) for name, r in best.items()})
    for name, rs in runs.items():  # every round, in the order run, beside the median
        results[name]["rounds_per_s"] = [round(r.rate) for r in rs]
    for name, (found, missed) in lookups.items():  # the share of lookups the cache answered
        if found + missed and not name.startswith("floor"):
            results[name]["cache_hit_ratio"] = round(found / (found + missed), 3)
    results["node_rss_mb"] = round(rss, 1)
    results["node_cache_at_rss"] = {
        k: cache_at_end[k] for k in ("entries", "bytes", "max_bytes") if k in cache_at_end
    }
    rate = {name: r.rate for name, r in best.items()}

    def paired(a: str, b: str) -> float:
        """``a`` against ``b`` run just before it in the same plan: the median of the rounds'
        ratios, so that what the machine did at the time weighs on both sides alike."""
        ratios = sorted(x.rate / y.rate for x, y in zip(runs[a], runs[b], strict=True))
        return round(ratios[len(ratios) // 2], 2)

    def apart(a: str, b: str) -> float:
        """``a`` against ``b`` from another plan: the ratio of their median rounds."""
        return round(rate[a] / rate[b], 2)

    results["ratios"] = {
        "http_resolve_vs_bare_aiohttp (goal >= 0.7)": paired("http_resolve", "floor_http"),
        "http_miss_vs_hit (goal >= 0.9)": paired("http_miss", "http_resolve"),
        "http_miss_vs_uniform_hit": apart("http_miss", "http_resolve_uniform"),
        "http_miss_never_asked_vs_hit": apart("http_miss_never_asked", "http_resolve"),
        "tcp_resolve_vs_tcp_echo (goal >= 0.6)": paired("tcp_resolve", "floor_tcp"),
        "udp_resolve_vs_udp_echo (goal >= 0.6)": paired("udp_resolve", "floor_udp"),
        "create_vs_http_resolve (goal >= 0.5)": apart("http_create_64", "http_resolve"),
        # what aiohttp alone allows: a handler that reads a PUT's body and answers a fixed 201
        "bare_aiohttp_put_vs_http_resolve": apart("floor_http_put_64", "http_resolve"),
        "create_vs_bare_aiohttp_put": paired("http_create_64", "floor_http_put_64"),
        # what aiohttp and SQLite alone allow a durable create (``benchmarks.floors``)
        "durable_floor_create_vs_http_resolve": apart("floor_http_create_64", "http_resolve"),
        "create_vs_durable_floor_create": paired("http_create_64", "floor_http_create_64"),
        "tcp_create_vs_http_resolve": apart("tcp_create_64", "http_resolve"),
        "node_rss_mb (goal <= 300)": round(rss, 1),
    }
    return results


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(json.dumps(run(n), indent=2))
