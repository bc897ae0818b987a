"""Resolution through a recursive node against resolution at the secondary node, same run.

A three-level hierarchy on the loopback: a top-level node, one secondary node serving the node
benchmark's data set (``node_bench.dataset``, prefix 88.118.8) and registered with the top-level,
and a recursive node pointed at the top-level; each one process, all pinned to CPU 0, the
generator (``benchmarks.loadgen``, one process, closed loop) on CPU 1.

* Warm cache: after a warm-up through the recursive node, the same keys are resolved directly at
  the secondary and through the recursive node, alternately, round after round (goal: through the
  recursive node at least 0.8x direct), over msgpack/TCP and HTTP.
* Cold cache, per hop, one request at a time on keys no node has cached: the top-level's
  referral (hop 1), the secondary's answer read from its store (hop 2), and the whole walk
  through the recursive node (its referral cached, the answer not: hop 1 is then skipped, so the
  walk costs its own hop plus hop 2), p50 and p99 of each.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.loadgen import LoadResult, http_get, run_load
from benchmarks.node_bench import (
    PREFIX,
    _fig,
    _key,
    _pin,
    _Proc,
    cache_counts,
    dataset,
    serve_args,
)
from protocol.codes import OpFlag
from protocol.messages import ResolveRequest
from protocol.wire import encode_message, frame


def _framed(keys: list[int]) -> list[bytes]:
    return [
        frame(
            encode_message(ResolveRequest(handle=_key(i), request_id=n, flags=OpFlag.PUBLIC_ONLY))
        )
        for n, i in enumerate(keys)
    ]


def _wait_registered(toplevel_http: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"http://127.0.0.1:{toplevel_http}/api/delegations"
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=5) as reply:
            rows = json.loads(reply.read())["delegations"]
        if any(r["prefix"] == PREFIX and r["state"] == "alive" for r in rows):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{PREFIX} did not register with the top-level node in {timeout_s} s")


def run(
    identifiers: int = 200_000,
    seconds: float = 3.0,
    concurrency: int = 32,
    rounds: int = 3,
    warmup_s: float = 8.0,
    cold_s: float = 2.0,
) -> dict[str, Any]:
    data_dir = dataset(identifiers)
    _pin(1)()
    rng = random.Random(7)
    half = identifiers // 2
    # warm traffic: 50,000 requests over 10,000 keys of the first half, all cached by the warm-up
    hot = rng.sample(range(half), 10_000)
    warm = [rng.choice(hot) for _ in range(40_000)]
    warm_up = _framed(hot)
    fresh = rng.sample(range(half, identifiers), half)  # the second half: each used once
    cold = {name: fresh[n::3] for n, name in enumerate(("hop1", "hop2", "walk"))}
    warm_tcp = _framed(warm)
    warm_http = [http_get(f"/api/handles/{_key(i)}") for i in warm]
    tmp = tempfile.mkdtemp(prefix="idnode-recursion-")
    top = _Proc([*serve_args(Path(tmp, "top")), "--role", "toplevel", "--heartbeat-stale-s", "30"])
    above = f"127.0.0.1:{top.ports['tcp']}"
    secondary = _Proc([*serve_args(data_dir), "--role", "secondary", "--toplevel", above])
    recursive = _Proc([*serve_args(Path(tmp, "rec")), "--role", "recursive", "--toplevel", above])
    runs: dict[str, list[LoadResult]] = {}
    try:
        _wait_registered(top.ports["http"])
        sec, rec = secondary.ports, recursive.ports
        # cold, per hop, one at a time (concurrency 1), before anything else touches these keys
        cold_runs = {
            "hop1_toplevel_referral": ("tcp", top.ports["tcp"], _framed(cold["hop1"])),
            "hop2_secondary_store_read": ("tcp", sec["tcp"], _framed(cold["hop2"])),
            "walk_through_recursive": ("tcp", rec["tcp"], _framed(cold["walk"])),
        }
        run_load("tcp", rec["tcp"], _framed(fresh[:1]), 1, 0.0, 0.2)  # caches the referral
        cold_figures = {
            name: run_load(kind, port, reqs, 1, 0.0, cold_s)
            for name, (kind, port, reqs) in cold_runs.items()
        }
        for port in (rec["tcp"], sec["tcp"]):  # every hot key once, then the traffic
            run_load("tcp", port, warm_up, concurrency, 0.0, warmup_s)
            run_load("tcp", port, warm_tcp, concurrency, 0.0, 1.0)
        before = cache_counts(rec["http"])
        plan = {
            "tcp_direct": ("tcp", sec["tcp"], warm_tcp),
            "tcp_recursive": ("tcp", rec["tcp"], warm_tcp),
            "http_direct": ("http", sec["http"], warm_http),
            "http_recursive": ("http", rec["http"], warm_http),
        }
        for _ in range(rounds):
            for name, (kind, port, reqs) in plan.items():
                result = run_load(kind, port, reqs, concurrency, 1.0, seconds)
                runs.setdefault(name, []).append(result)
        after = cache_counts(rec["http"])
        rss = {
            "toplevel": top.rss_mb(),
            "secondary": secondary.rss_mb(),
            "recursive": recursive.rss_mb(),
        }
    finally:
        for proc in (recursive, secondary, top):
            proc.stop()
    best = {name: sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for name, rs in runs.items()}
    out: dict[str, Any] = {
        "identifiers": identifiers,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "concurrency": concurrency,
        "generator": "benchmarks.loadgen: 1 process pinned to CPU 1, closed loop",
        "servers": "top-level, secondary and recursive node: 1 process each, pinned to CPU 0",
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "warm": {name: _fig(r) for name, r in best.items()},
        "cold_per_hop": {
            name: {
                "requests": r.requests,
                "p50_ms": round(r.p50_ms, 3),
                "p99_ms": round(r.p99_ms, 3),
                "non_success": r.errors,  # hop 1's answers are all referrals (303), as meant
            }
            for name, r in cold_figures.items()
        },
        "rss_mb": {name: round(v, 1) for name, v in rss.items()},
        "recursive_cache_during_warm_runs": {
            name: after[name] - before[name] for name in ("hits", "misses")
        },
    }
    rate = {name: r.rate for name, r in best.items()}
    out["ratios"] = {
        "tcp_recursive_warm_vs_direct (goal >= 0.8)": round(
            rate["tcp_recursive"] / rate["tcp_direct"], 2
        ),
        "http_recursive_warm_vs_direct (goal >= 0.8)": round(
            rate["http_recursive"] / rate["http_direct"], 2
        ),
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
