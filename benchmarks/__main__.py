"""``python -m benchmarks [name ...]``: run benchmarks, print a table, keep the JSON results.

Each benchmark is a ``run(...) -> dict`` function registered below by ``module:function``, imported
only when it runs (the node benchmark pulls in aiohttp and builds a data set; the codec one needs
nothing). ``capacity`` is the open-loop ladder that writes ``benchmarks/reports/<timestamp>/``,
and ``python -m benchmarks openloop --target udp --rate R --port P ...`` runs the open-loop
generator on its own.
Results go to ``benchmarks/reports/latest-<name>.json`` with when, where and how long, so
two runs can be compared; a new benchmark is one line in ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parent / "reports"

#: name -> "module:function"; the function takes no required argument and returns a JSON-able dict
BENCHMARKS: dict[str, str] = {
    "codec": "benchmarks.codec:run",
    "node": "benchmarks.node_bench:run",
    "seed": "benchmarks.seed_bench:run",
    "capacity": "benchmarks.capacity:run",
    "workers": "benchmarks.workers_bench:run",
    "recursion": "benchmarks.recursion_bench:run",
    "scaling": "benchmarks.scaling_bench:run",
}
#: name -> "module:function" taking its own command line: ``python -m benchmarks openloop ...``
COMMANDS: dict[str, str] = {
    "openloop": "benchmarks.openloop:main",
}


def load(name: str) -> Callable[[], dict[str, Any]]:
    module, _, function = BENCHMARKS[name].partition(":")
    run: Callable[[], dict[str, Any]] = getattr(importlib.import_module(module), function)
    return run


def _rows(result: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Flatten nested dicts into ``a.b.c`` rows; lists of scalars stay on one row."""
    if isinstance(result, dict):
        for key, value in result.items():
            yield from _rows(value, f"{path}.{key}" if path else str(key))
    elif isinstance(result, list) and any(isinstance(v, (dict, list)) for v in result):
        for i, value in enumerate(result):
            yield from _rows(value, f"{path}[{i}]")
    else:
        yield path, result


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(name: str, result: dict[str, Any], wall_s: float) -> str:
    rows = list(_rows(result))
    width = max([len(k) for k, _ in rows] + [10])
    lines = [f"== {name} ({wall_s:.1f} s)"]
    lines += [f"  {key:<{width}}  {_cell(value)}" for key, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        module, _, function = COMMANDS[argv[0]].partition(":")
        command: Callable[[list[str]], int] = getattr(importlib.import_module(module), function)
        return command(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"of {', '.join(BENCHMARKS)} (all by default); or a command with its own flags: "
        f"{', '.join(COMMANDS)}",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--reports", type=Path, default=REPORTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(f"{name:10} {target}" for name, target in BENCHMARKS.items()))
        return 0
    names = args.names or list(BENCHMARKS)
    if unknown := [n for n in names if n not in BENCHMARKS]:
        parser.error(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    args.reports.mkdir(parents=True, exist_ok=True)
    # some benchmarks pin this process to one CPU (the generator's): each starts with them all
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    for name in names:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)
        started = datetime.now(UTC)
        start = time.perf_counter()
        result = load(name)()
        wall_s = time.perf_counter() - start
        print(table(name, result, wall_s), flush=True)
        report = {
            "benchmark": name,
            "started": started.isoformat(timespec="seconds"),
            "wall_s": round(wall_s, 3),
            "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
            "result": result,
        }
        path = args.reports / f"latest-{name}.json"
        path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"  -> {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
