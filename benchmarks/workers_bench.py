"""Resolution throughput of ``idnode serve --workers 2`` against ``--workers 1``, same generator.

One seeded data set (``node_bench.dataset``), one node at a time, started unpinned on the loopback;
the load comes from ``benchmarks.loadgen``: ONE closed-loop process (asyncio, ``concurrency``
connections) running on the same machine. On a 2-core machine the generator competes with the node
for the CPUs, so the ratio understates what two workers give a node with cores of its own: every
figure carries the generator's CPU share (CPU seconds per wall second; 1.0 is a whole core). Runs
alternate (1, 2, 1, 2, ...) so that drift hits both alike; the ratio is of the best rounds.
"""

from __future__ import annotations

import operator
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from benchmarks.loadgen import http_get, run_load
from benchmarks.node_bench import SECRET, _fig, _key, _pin, _resolve_messages, dataset
from protocol.wire import frame

T = TypeVar("T")


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def start(
    data_dir: str, workers: int, cpus: list[int] | None = None
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """``idnode serve --workers N`` on free ports, its processes on ``cpus`` (None: any)."""
    args = [sys.executable, "-m", "node", "serve", "--data-dir", data_dir, "--http-port", "0"]
    args += ["--port", "0", "--admin-secret", SECRET, "--log-level", "WARNING"]
    args += ["--workers", str(workers)]
    # the workers it spawns inherit the set
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, preexec_fn=_pin(*cpus or ()))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "idnode listening on HOST: http=N tcp=M udp=M [workers=N]"
    ports = {k: int(v) for k, v in (p.split("=") for p in line.split(": ", 1)[1].split())}
    return proc, ports


def resolutions(sample: list[int]) -> dict[str, list[bytes]]:
    """Anonymous resolutions of the benchmark keys numbered ``sample``, per transport."""
    return {
        "http": [http_get(f"/api/handles/{_key(i)}") for i in sample],
        "tcp": [frame(m) for m in _resolve_messages(_key(i) for i in sample)],
    }


def best_of_rounds(
    data_dir: str,
    worker_counts: Collection[int],
    kinds: Collection[str],
    rounds: int,
    measure: Callable[[int, str, int], T],
    rate: Callable[[T], float],
    node_cpus: Callable[[int], list[int] | None] = lambda workers: None,
) -> dict[tuple[int, str], T]:
    """For ``rounds`` rounds, start ``idnode serve --workers W`` for each W in turn (on
    ``node_cpus(W)``) and ``measure(W, kind, port)`` each kind against it; the best figure of
    each (W, kind) by ``rate``. Runs alternate so that drift hits every W alike."""
    best: dict[tuple[int, str], T] = {}
    for _ in range(rounds):
        for workers in worker_counts:
            proc, ports = start(data_dir, workers, node_cpus(workers))
            try:
                for kind in kinds:
                    fig = measure(workers, kind, ports[kind])
                    if (workers, kind) not in best or rate(fig) > rate(best[workers, kind]):
                        best[workers, kind] = fig
            finally:
                stop(proc)
            time.sleep(0.5)
    return best


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    if proc.stdout is not None:
        proc.stdout.close()


def run(
    identifiers: int = 100_000,
    seconds: float = 4.0,
    concurrency: int = 64,
    rounds: int = 2,
    warmup_s: float = 2.0,
) -> dict[str, Any]:
    data_dir = str(dataset(identifiers))
    rng = random.Random(1)
    sample = [rng.randrange(identifiers) for _ in range(50_000)]  # all fit in the cache
    plans = resolutions(sample)
    best = best_of_rounds(
        data_dir,
        (1, 2),
        plans,
        rounds,
        lambda workers, kind, port: run_load(
            kind, port, plans[kind], concurrency, warmup_s, seconds
        ),
        operator.attrgetter("rate"),
    )
    result: dict[str, Any] = {
        "identifiers": identifiers,
        "cpus": len(usable_cpus()),
        "generator": f"benchmarks.loadgen, 1 process, closed loop, {concurrency} connections, "
        "on the same machine as the node (competes for its CPUs)",
        "rounds": rounds,
    }
    for kind in plans:
        one, two = best[1, kind], best[2, kind]
        result[kind] = {
            "workers_1": _fig(one),
            "workers_2": _fig(two),
            "ratio_2_over_1": round(two.rate / one.rate, 2) if one.rate else 0.0,
        }
    return result
