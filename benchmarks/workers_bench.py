"""Resolution throughput of ``idnode serve --workers 2`` against ``--workers 1``, same generator.

One seeded data set (``node_bench.dataset``), one node at a time, started unpinned on the loopback;
the load comes from ``benchmarks.loadgen``: ONE closed-loop process (asyncio, ``concurrency``
connections) running on the same machine. On a 2-core machine the generator competes with the node
for the CPUs, so the ratio understates what two workers give a node with cores of its own: every
figure carries the generator's CPU share (CPU seconds per wall second; 1.0 is a whole core). Runs
alternate (1, 2, 1, 2, ...) so that drift hits both alike; the ratio is of the best rounds.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from typing import Any

from benchmarks.loadgen import LoadResult, http_get, run_load
from benchmarks.node_bench import SECRET, _fig, _key, dataset
from protocol.codes import OpFlag
from protocol.messages import ResolveRequest
from protocol.wire import encode_message, frame


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

    def pin() -> None:  # the workers it spawns inherit the set
        if cpus is not None and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, set(cpus))

    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, preexec_fn=pin)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "idnode listening on HOST: http=N tcp=M udp=M [workers=N]"
    ports = {k: int(v) for k, v in (p.split("=") for p in line.split(": ", 1)[1].split())}
    return proc, ports


def resolutions(sample: list[int]) -> dict[str, list[bytes]]:
    """Anonymous resolutions of the benchmark keys numbered ``sample``, per transport."""
    return {
        "http": [http_get(f"/api/handles/{_key(i)}") for i in sample],
        "tcp": [
            frame(
                encode_message(
                    ResolveRequest(handle=_key(i), request_id=n, flags=OpFlag.PUBLIC_ONLY)
                )
            )
            for n, i in enumerate(sample)
        ],
    }


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
    best: dict[tuple[int, str], LoadResult] = {}
    for _ in range(rounds):
        for workers in (1, 2):
            proc, ports = start(data_dir, workers)
            try:
                for kind, requests in plans.items():
                    r = run_load(kind, ports[kind], requests, concurrency, warmup_s, seconds)
                    if (workers, kind) not in best or r.rate > best[workers, kind].rate:
                        best[workers, kind] = r
            finally:
                stop(proc)
            time.sleep(0.5)
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
