"""Many-core scaling: resolution throughput of ``idnode serve --workers W`` for W = 1, 2, 4, 8...

Meant for a machine with many cores. The node's processes are pinned to W cores of their own and
the load comes from G ``benchmarks.loadgen`` processes (closed loop, 32 connections each), each
pinned to one more core, so node and generator never share a core; G grows with W (one generator
per worker, as many as the cores left allow). A W is measured only where W + 1 cores are free for
it, so on a 2-core machine only W = 1 runs. Every figure carries the generators' CPU share (CPU
seconds per wall second, summed; G generators can give at most G): a figure whose generators are
near G was limited by the load, not by the node. Keys: 10,000 hot identifiers (all cached), the
best of ``rounds`` rounds per W.
"""

from __future__ import annotations

import functools
import multiprocessing
import operator
import random
from typing import Any

from benchmarks.loadgen import LoadResult, run_load
from benchmarks.node_bench import _pin, dataset
from benchmarks.workers_bench import best_of_rounds, resolutions, usable_cpus

CONNECTIONS_PER_GENERATOR = 32


def _generate(
    kind: str, port: int, requests: list[bytes], warmup_s: float, seconds: float, cpu: int
) -> LoadResult:
    """One generator process: pinned to ``cpu``, closed loop for ``seconds`` after a warm-up."""
    _pin(cpu)()
    return run_load(kind, port, requests, CONNECTIONS_PER_GENERATOR, warmup_s, seconds)


def _load(
    kind: str, port: int, requests: list[bytes], cpus: list[int], warmup_s: float, seconds: float
) -> dict[str, Any]:
    """Every generator at once; their rates add up, the latency is the worst generator's."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(len(cpus)) as pool:
        parts = pool.map(
            functools.partial(_generate, kind, port, requests, warmup_s, seconds), cpus, 1
        )
    return {
        "rate_per_s": round(sum(r.rate for r in parts)),
        "p50_ms": round(max(r.p50_ms for r in parts), 3),
        "p99_ms": round(max(r.p99_ms for r in parts), 3),
        "errors": sum(r.errors for r in parts),
        "generators": len(parts),
        "generator_cpu_share": round(sum(r.generator_cpu_s / r.seconds for r in parts), 2),
    }


def run(
    workers: tuple[int, ...] = (1, 2, 4, 8),
    identifiers: int = 100_000,
    seconds: float = 4.0,
    rounds: int = 2,
    warmup_s: float = 2.0,
) -> dict[str, Any]:
    cpus = usable_cpus()
    data_dir = str(dataset(identifiers))
    rng = random.Random(1)
    sample = [rng.randrange(min(identifiers, 10_000)) for _ in range(50_000)]
    plans = resolutions(sample)
    measured = [w for w in workers if w + 1 <= len(cpus)]

    def measure(w: int, kind: str, port: int) -> dict[str, Any]:
        generator_cpus = cpus[w : w + max(1, min(w, len(cpus) - w))]
        return _load(kind, port, plans[kind], generator_cpus, warmup_s, seconds)

    best = best_of_rounds(
        data_dir,
        measured,
        plans,
        rounds,
        measure,
        operator.itemgetter("rate_per_s"),
        lambda w: cpus[:w],
    )
    result: dict[str, Any] = {
        "identifiers": identifiers,
        "cpus": len(cpus),
        "workers_measured": measured,
        "generator": f"benchmarks.loadgen, closed loop, {CONNECTIONS_PER_GENERATOR} connections "
        "per process, one process per node worker, each on a core of its own",
        "node": "idnode serve --workers W, pinned to W cores of its own",
        "seconds_per_run": seconds,
        "rounds": rounds,
    }
    for kind in plans:
        one = best.get((1, kind), {}).get("rate_per_s", 0)
        result[kind] = {
            f"workers_{w}": {
                **best[w, kind],
                "vs_1_worker": round(best[w, kind]["rate_per_s"] / one, 2) if one else 0.0,
            }
            for w in measured
        }
    return result
