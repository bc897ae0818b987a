"""Was the load generator itself the bottleneck? CPU use of every Locust process, flagged.

A Locust process runs its users on one core (gevent); when that core is saturated, latencies
measure the generator's queueing, not the node. Each process samples its own CPU use (psutil, one
core = 100%) once a second while a test runs; workers send their figures to the master with their
stats, and the master (or the single local process) prints one summary line per process when Locust
quits, a ``WARNING`` line naming the processes that were over the threshold, and, with ``--csv
PREFIX``, writes ``PREFIX_generator_cpu.csv``.

A process counts as saturated when at least a tenth of its samples (and at least one) were above
``--cpu-warn-percent`` (90 by default). Locust's own check logs a warning for any single sample
above 90%; this one is for the record of the run.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import gevent
import psutil
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

log = logging.getLogger("idnode.locust.cpu")
SATURATED_SHARE = 0.1  #: share of samples above the threshold that flags a process
REPORT_KEY = "idnode_cpu"  #: key of the figures in a worker's report to the master


@dataclass(frozen=True)
class CpuSummary:
    """CPU use of one generator process over a test."""

    process: str  #: ``local``, ``master`` or ``worker <index>``
    pid: int
    samples: int  #: one per second of test
    mean_percent: float
    peak_percent: float
    over: int  #: samples above the threshold

    def saturated(self) -> bool:
        return self.over > 0 and self.over >= SATURATED_SHARE * self.samples

    def line(self, threshold: float) -> str:
        flag = "SATURATED" if self.saturated() else "ok"
        return (
            f"generator CPU {self.process} (pid {self.pid}): mean {self.mean_percent:.0f}%, "
            f"peak {self.peak_percent:.0f}%, {self.over}/{self.samples} samples over "
            f"{threshold:g}% -> {flag}"
        )


class CpuMonitor:
    """Samples this process's CPU use once a second between ``start`` and ``stop``."""

    def __init__(self, threshold: float, interval_s: float = 1.0) -> None:
        self.threshold = threshold
        self.interval_s = interval_s
        self.process = psutil.Process()
        self.samples: list[float] = []
        self._greenlet: Any = None

    def start(self) -> None:
        if self._greenlet is not None:
            return
        self.samples = []
        self.process.cpu_percent(None)  # the first call only sets the reference point
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.interval_s)
            self.samples.append(self.process.cpu_percent(None))

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def summary(self, process: str) -> CpuSummary:
        samples = self.samples
        return CpuSummary(
            process=process,
            pid=os.getpid(),
            samples=len(samples),
            mean_percent=sum(samples) / len(samples) if samples else 0.0,
            peak_percent=max(samples, default=0.0),
            over=sum(1 for s in samples if s > self.threshold),
        )


def install(environment: Environment, threshold: float) -> CpuMonitor:
    """Sample this process during tests, and gather and report as this process's role requires."""
    monitor = CpuMonitor(threshold)
    events: Any = environment.events  # locust's EventHook is untyped
    runner = environment.runner
    workers: dict[str, CpuSummary] = {}

    events.test_start.add_listener(lambda **_: monitor.start())
    events.test_stop.add_listener(lambda **_: monitor.stop())

    if isinstance(runner, WorkerRunner):

        def on_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
            data[REPORT_KEY] = asdict(monitor.summary(f"worker {runner.worker_index}"))

        events.report_to_master.add_listener(on_report)
        return monitor

    if isinstance(runner, MasterRunner):

        def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
            figures = data.get(REPORT_KEY)
            if isinstance(figures, dict):
                try:
                    workers[client_id] = CpuSummary(**figures)
                except TypeError:
                    pass  # a worker running another version of this file

        events.worker_report.add_listener(on_worker_report)

    def on_quit(**_: Any) -> None:
        monitor.stop()
        role = "master" if isinstance(runner, MasterRunner) else "local"
        summaries = [monitor.summary(role), *sorted(workers.values(), key=lambda s: s.process)]
        report(summaries, threshold, getattr(environment.parsed_options, "csv_prefix", None))

    events.quit.add_listener(on_quit)
    return monitor


def report(summaries: list[CpuSummary], threshold: float, csv_prefix: str | None) -> None:
    """Log one line per process and a warning for saturated ones; write the CSV when asked."""
    for s in summaries:
        log.info(s.line(threshold))
    hot = [s for s in summaries if s.saturated()]
    if hot:
        names = ", ".join(f"{s.process} (pid {s.pid})" for s in hot)
        log.warning(
            f"WARNING generator CPU saturated in {len(hot)} of {len(summaries)} process(es): "
            f"{names}; the results may measure Locust rather than the node "
            "(add processes with --processes -1, or workers on more machines)"
        )
    else:
        log.info(f"generator CPU below {threshold:g}% in all {len(summaries)} process(es)")
    if csv_prefix:
        with open(f"{csv_prefix}_generator_cpu.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                ["Process", "PID", "Samples", "Mean %", "Peak %", "Samples over", "Saturated"]
            )
            for s in summaries:
                writer.writerow(
                    [
                        s.process,
                        s.pid,
                        s.samples,
                        f"{s.mean_percent:.1f}",
                        f"{s.peak_percent:.1f}",
                        s.over,
                        s.saturated(),
                    ]
                )
