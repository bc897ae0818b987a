"""The many-core scaling benchmark, at its smallest: one worker, one generator, real sockets."""

from __future__ import annotations

from benchmarks.scaling_bench import run


def test_one_worker_is_measured_with_its_own_generator() -> None:
    result = run(workers=(1, 64), identifiers=2_000, seconds=0.5, rounds=1, warmup_s=0.2)
    assert result["workers_measured"] == [1]  # 64 workers need 65 cores
    for kind in ("http", "tcp"):
        fig = result[kind]["workers_1"]
        assert fig["rate_per_s"] > 0 and fig["errors"] == 0
        assert fig["generators"] == 1 and fig["vs_1_worker"] == 1.0
