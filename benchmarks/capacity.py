"""Capacity report: an open-loop load ladder on every front door, against floors, in one run.

Seed ``identifiers`` records (``benchmarks.node_bench.dataset``, 200,000 by default), start one
node process and the three floors (``benchmarks.floors``), all pinned to CPU 0, warm the node's
cache, then, with the open-loop generator (``benchmarks.openloop``, this process, pinned to CPU 1),
step the offered rate up a ladder for HTTP GET, msgpack/UDP and msgpack/TCP resolution (Zipf key
popularity, s = 1), node and floor alternately at each rate. A ladder stops after the first step
that is clearly overloaded (achieved under 90% of offered, p99 over 100 ms, over 1% errors) or
where the generator could not keep its schedule twice in a row (a flagged step is
retried once).

Writes ``benchmarks/reports/<timestamp>/``: ``steps-<door>.csv`` (one row per step),
``meta.json`` (machine, versions, generator settings), and, through ``benchmarks.report``,
``report.md`` with the headline table and three plots. Takes about 3 to 5 minutes; ``python -m
benchmarks`` (``make bench``) runs it with the others, ``python -m benchmarks capacity`` alone.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.loadgen import run_load
from benchmarks.node_bench import _floor, _key, _pin, _Proc, dataset, serve_args
from benchmarks.openloop import OpenLoopResult, _templates, requests_for, run_openloop
from benchmarks.report import DOORS, build_report, error_share, headline, write_steps

REPORTS = Path(__file__).resolve().parent / "reports"

#: offered rates (requests per second) per front door, low to high
LADDERS: dict[str, list[int]] = {
    "http": [1000, 2000, 4000, 6000, 8000, 10000, 12000, 15000, 18000, 22000],
    "udp": [2000, 5000, 10000, 15000, 20000, 25000, 30000, 35000, 40000, 50000],
    "tcp": [2000, 5000, 10000, 15000, 20000, 25000, 30000, 35000, 40000, 50000],
}


def _overloaded(r: OpenLoopResult) -> bool:
    row = {"requests": r.requests, "errors": r.errors, "timeouts": r.timeouts}
    return (
        not r.generator_ok
        or r.achieved_per_s < 0.9 * r.offered_per_s
        or r.p99_ms > 100
        or error_share(row) > 0.01
    )


def _log(door: str, server: str, rate: int, r: OpenLoopResult) -> None:
    print(
        f"  {door:4} {server:5} offered {rate:>6}/s achieved {r.achieved_per_s:>8,.0f}/s "
        f"p99 {r.p99_ms:7.2f} ms errors {r.errors} timeouts {r.timeouts} "
        f"generator {r.generator_note}",
        file=sys.stderr,
        flush=True,
    )


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("aiohttp", "msgpack", "uvloop", "hdrhistogram", "matplotlib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run(
    identifiers: int = 200_000,
    seconds: float = 2.0,
    warmup_s: float = 0.5,
    connections: int = 64,
    cache_warmup_s: float = 3.0,
    reports: Path = REPORTS,
    ladders: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    ladders = ladders or LADDERS
    started = datetime.now(UTC)
    run_dir = reports / started.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    t_seed = time.perf_counter()
    data_dir = dataset(identifiers)
    seed_s = time.perf_counter() - t_seed
    _pin(1)()
    rng = random.Random(1)
    cum, total = [], 0.0
    for rank in range(1, identifiers + 1):
        total += 1.0 / rank
        cum.append(total)
    handles = [_key(i) for i in rng.choices(range(identifiers), cum_weights=cum, k=50_000)]
    requests = {door: requests_for(door, handles) for door in DOORS}
    del cum, handles
    gc.collect()
    gc.freeze()  # the request lists never change: keep them out of every later collection
    floors = {door: _floor(door) for door in DOORS}
    node = _Proc(serve_args(data_dir))
    rows: list[dict[str, Any]] = []
    try:
        # warm the node's cache with the same Zipf traffic (closed loop, msgpack ids fixed)
        warm = [
            head + (n & 0xFFFF).to_bytes(4, "big") + tail
            for n, (head, tail) in enumerate(_templates(requests["udp"]))
        ]
        run_load("udp", node.ports["udp"], warm, 32, 0.0, cache_warmup_s)
        for door in DOORS:
            done = {"node": False, "floor": False}
            door_rows: list[dict[str, Any]] = []
            for rate in ladders.get(door, []):
                for server in ("floor", "node"):
                    if done[server]:
                        continue
                    port = node.ports[door] if server == "node" else floors[door].ports["port"]
                    # a step where the generator fell behind is tried once more (the machine
                    # may have been busy with something else); both rows stay in the CSV
                    for _attempt in range(2):
                        r = run_openloop(
                            door,
                            port,
                            requests[door],
                            rate,
                            seconds,
                            warmup_s=warmup_s,
                            connections=connections,
                        )
                        door_rows.append({"door": door, "server": server, **r.as_dict()})
                        _log(door, server, rate, r)
                        if r.generator_ok:
                            break
                    done[server] = _overloaded(r)
                if all(done.values()):
                    break
            write_steps(run_dir / f"steps-{door}.csv", door_rows)
            rows += door_rows
        rss = node.rss_mb()
    finally:
        node.stop()
        for proc in floors.values():
            proc.stop()
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "versions": _versions(),
        "node": f"1 process pinned to CPU 0, {identifiers:,} identifiers (5 values each), "
        f"embedded store, cache warmed {cache_warmup_s:g} s (closed loop, UDP); "
        f"resident memory after the run {rss:.0f} MB",
        "floors": "bare aiohttp handler (fixed 300-byte JSON), bare asyncio TCP and UDP echo; "
        "1 process each pinned to CPU 0, stepped alternately with the node at each rate",
        "generator": f"benchmarks.openloop: 1 process pinned to CPU 1, uvloop, open loop "
        f"(constant arrival rate), {seconds:g} s measured per step after {warmup_s:g} s "
        f"warm-up, HTTP/1.1 keep-alive over {connections} connections without pipelining, "
        f"msgpack/TCP over {connections} connections multiplexed by request id, UDP on one "
        "socket; latency from the scheduled send, an unanswered request counted at the "
        "moment it was given up (answer timeout 1 s); a step is flagged "
        "when the lag p99 exceeds 5 ms or the generator's CPU reaches 90% of a core",
        "workload": f"resolution of existing identifiers, Zipf (s = 1) over {identifiers:,}",
        "ladders": {door: " ".join(str(r) for r in ladders.get(door, [])) for door in DOORS},
        "seed_s": round(seed_s, 1),
    }
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    build_report(run_dir)
    result: dict[str, Any] = {"run_dir": str(run_dir)}
    for door in DOORS:
        best, why = headline(rows, door)
        floor, _ = headline(rows, door, "floor")
        result[door] = {
            "headline_per_s": best["achieved_per_s"] if best else 0,
            "p99_ms": best["p99_ms"] if best else None,
            "limited_by": why,
            "floor_per_s": floor["achieved_per_s"] if floor else 0,
            "ratio_to_floor": (
                round(best["achieved_per_s"] / floor["achieved_per_s"], 2)
                if best and floor
                else None
            ),
        }
    return result


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    print(json.dumps(run(n), indent=2))
