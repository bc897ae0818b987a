"""The capacity report, rebuilt from a run's CSVs alone: ``build_report(run_dir)``.

A run directory (``benchmarks/reports/<timestamp>/``, written by ``benchmarks.capacity``) holds
one ``steps-<door>.csv`` per front door, one row per step of the load ladder, for the node and
for its floor; ``meta.json`` (machine, package versions, generator settings) is optional. From
them this module writes ``report.md`` and three plots: ``throughput.png`` (achieved against
offered), ``latency.png`` (p50/p95/p99 against offered) and ``errors.png`` (error rate against
offered).

The headline of a front door is the highest achieved throughput of a step whose p99 (from the
scheduled time) is under ``P99_LIMIT_MS`` and whose errors and timeouts are under
``ERROR_LIMIT`` of its requests, among the steps where the generator kept its schedule; a step
where it did not is plotted with a cross and never chosen. ``python -m benchmarks.report DIR``;
input it cannot use (a missing column, a short row, a cell that is not a number, a broken
``meta.json``) is refused with the file and line (``ReportInputError``, exit status 2).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

P99_LIMIT_MS = 10.0
ERROR_LIMIT = 0.001  #: share of requests

#: one row per ladder step, in this order
COLUMNS = [
    "door",  # http, udp or tcp
    "server",  # node or floor
    "offered_per_s",
    "achieved_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "send_p50_ms",
    "send_p99_ms",
    "requests",
    "errors",
    "timeouts",
    "lag_p99_ms",
    "lag_max_ms",
    "generator_cpu",
    "generator_ok",
    "generator_note",
]
_TEXT = {"door", "server", "generator_note"}
DOORS = ("http", "udp", "tcp")
PLOTS = ("throughput.png", "latency.png", "errors.png")

Row = dict[str, Any]


def write_steps(path: Path, rows: Sequence[Row]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


class ReportInputError(ValueError):
    """A run folder the report cannot be built from; the message names the file and line."""


def read_steps(run_dir: Path) -> list[Row]:
    """Every step of ``run_dir``'s CSVs; ``ReportInputError`` for a missing column, a short row
    (a run killed while writing) or a cell that is not a number."""
    rows: list[Row] = []
    for path in sorted(Path(run_dir).glob("steps-*.csv")):
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if missing := [c for c in COLUMNS if c not in (reader.fieldnames or [])]:
                raise ReportInputError(f"{path}: no column {', '.join(missing)}")
            for raw in reader:
                where = f"{path} line {reader.line_num}"
                if None in raw or None in raw.values():
                    raise ReportInputError(f"{where}: {len(COLUMNS)} fields expected")
                row: Row = {}
                for key in COLUMNS:
                    value = raw[key].strip()
                    if key in _TEXT:
                        row[key] = value
                    elif key == "generator_ok":
                        row[key] = value.lower() in ("true", "1", "yes")
                    else:
                        try:
                            row[key] = float(value) if value else 0.0
                        except ValueError:
                            raise ReportInputError(
                                f"{where}: {key} {value!r} is not a number"
                            ) from None
                rows.append(row)
    return rows


def error_share(row: Row) -> float:
    requests = row["requests"]
    bad = row["errors"] + row["timeouts"]
    return bad / requests if requests else (1.0 if bad else 0.0)


def passes(row: Row) -> bool:
    return (
        bool(row["generator_ok"])
        and row["requests"] > 0
        and row["p99_ms"] < P99_LIMIT_MS
        and error_share(row) < ERROR_LIMIT
    )


def headline(rows: Sequence[Row], door: str, server: str = "node") -> tuple[Row | None, str]:
    """The best passing step of ``door``/``server`` and what stopped the ladder above it."""
    steps = sorted(
        (r for r in rows if r["door"] == door and r["server"] == server),
        key=lambda r: r["offered_per_s"],
    )
    good = [r for r in steps if passes(r)]
    if not good:
        return None, "no step passed"
    best = max(good, key=lambda r: r["achieved_per_s"])
    above = [r for r in steps if r["offered_per_s"] > best["offered_per_s"]]
    if not above:
        return best, "ladder top (not saturated)"
    # capacity retries a step where the generator fell behind: a try at that rate where it kept
    # its schedule says what the server did there
    tries = [r for r in above if r["offered_per_s"] == above[0]["offered_per_s"]]
    nxt = next((r for r in tries if r["generator_ok"]), tries[0])
    if not nxt["generator_ok"]:
        return best, f"generator ({nxt['generator_note']})"
    if nxt["p99_ms"] >= P99_LIMIT_MS:
        return best, f"p99 {nxt['p99_ms']:.1f} ms at {nxt['offered_per_s']:,.0f}/s"
    return best, f"errors {error_share(nxt):.2%} at {nxt['offered_per_s']:,.0f}/s"


def _plots(run_dir: Path, rows: Sequence[Row]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doors = [d for d in DOORS if any(r["door"] == d for r in rows)] or sorted(
        {r["door"] for r in rows}
    )

    def series(door: str, server: str) -> list[Row]:
        return sorted(
            (r for r in rows if r["door"] == door and r["server"] == server),
            key=lambda r: r["offered_per_s"],
        )

    def flagged(ax: Any, steps: list[Row], key: str, scale: float = 1.0) -> None:
        bad = [r for r in steps if not r["generator_ok"]]
        if bad:
            ax.plot(
                [r["offered_per_s"] for r in bad],
                [r[key] * scale if key != "_err" else error_share(r) * 100 for r in bad],
                "rx",
                markersize=9,
                label="generator behind/saturated",
            )

    def figure(title: str) -> tuple[Any, list[Any]]:
        fig, axes = plt.subplots(1, len(doors), figsize=(5 * len(doors), 4), squeeze=False)
        fig.suptitle(title)
        return fig, list(axes[0])

    fig, axes = figure("Achieved vs offered throughput (open loop)")
    for ax, door in zip(axes, doors, strict=True):
        top = 1.0
        for server, style in (("node", "o-"), ("floor", "s--")):
            steps = series(door, server)
            if steps:
                x = [r["offered_per_s"] for r in steps]
                ax.plot(x, [r["achieved_per_s"] for r in steps], style, label=server)
                flagged(ax, steps, "achieved_per_s")
                top = max(top, *x)
        ax.plot([0, top], [0, top], ":", color="grey", label="achieved = offered")
        ax.set(title=door, xlabel="offered req/s", ylabel="achieved req/s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "throughput.png", dpi=100)
    plt.close(fig)

    fig, axes = figure("Latency from the scheduled send vs offered load")
    for ax, door in zip(axes, doors, strict=True):
        node = series(door, "node")
        for key, style in (("p50_ms", "o-"), ("p95_ms", "^-"), ("p99_ms", "s-")):
            ax.plot([r["offered_per_s"] for r in node], [r[key] for r in node], style, label=key)
        flagged(ax, node, "p99_ms")
        floor = series(door, "floor")
        if floor:
            ax.plot(
                [r["offered_per_s"] for r in floor],
                [r["p99_ms"] for r in floor],
                "--",
                color="grey",
                label="floor p99_ms",
            )
        ax.axhline(P99_LIMIT_MS, color="red", linewidth=0.8, label=f"{P99_LIMIT_MS:g} ms")
        ax.set_yscale("log")
        ax.set(title=f"{door} (node)", xlabel="offered req/s", ylabel="ms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "latency.png", dpi=100)
    plt.close(fig)

    fig, axes = figure("Errors + timeouts vs offered load")
    for ax, door in zip(axes, doors, strict=True):
        for server, style in (("node", "o-"), ("floor", "s--")):
            steps = series(door, server)
            if steps:
                ax.plot(
                    [r["offered_per_s"] for r in steps],
                    [error_share(r) * 100 for r in steps],
                    style,
                    label=server,
                )
                flagged(ax, steps, "_err")
        ax.axhline(ERROR_LIMIT * 100, color="red", linewidth=0.8, label=f"{ERROR_LIMIT:.1%}")
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set(title=door, xlabel="offered req/s", ylabel="% of requests")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "errors.png", dpi=100)
    plt.close(fig)


def headline_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        f"| front door | node req/s (p99 < {P99_LIMIT_MS:g} ms, errors < {ERROR_LIMIT:.1%}) "
        "| p50 ms | p99 ms | at offered/s | node limited by | floor req/s (same rule) "
        "| ratio to floor |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for door in DOORS:
        if not any(r["door"] == door for r in rows):
            continue
        best, why = headline(rows, door, "node")
        floor, floor_why = headline(rows, door, "floor")
        if best is None:
            lines.append(f"| {door} | none | | | | {why} | | |")
            continue
        if floor is None:
            floor_cell, ratio = "not measured", ""
        else:
            floor_cell = f"{floor['achieved_per_s']:,.0f} ({floor_why})"
            ratio = f"{best['achieved_per_s'] / floor['achieved_per_s']:.2f}x"
            if not (why.startswith(("p99", "errors")) and floor_why.startswith(("p99", "errors"))):
                ratio += " (a ladder stopped short of saturation: indicative only)"
        lines.append(
            f"| {door} | {best['achieved_per_s']:,.0f} | {best['p50_ms']:.2f} "
            f"| {best['p99_ms']:.2f} | {best['offered_per_s']:,.0f} | {why} | {floor_cell} "
            f"| {ratio} |"
        )
    return lines


def _steps_table(rows: Sequence[Row]) -> list[str]:
    lines = [
        "| door | server | offered/s | achieved/s | p50 | p95 | p99 | max | send p99 "
        "| errors | timeouts | lag p99 | gen CPU | generator |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["door"], r["server"], r["offered_per_s"])):
        lines.append(
            f"| {r['door']} | {r['server']} | {r['offered_per_s']:,.0f} "
            f"| {r['achieved_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['send_p99_ms']:.2f} "
            f"| {r['errors']:.0f} | {r['timeouts']:.0f} | {r['lag_p99_ms']:.2f} "
            f"| {r['generator_cpu']:.0%} | {r['generator_note']} |"
        )
    return lines


def build_report(run_dir: Path | str) -> Path:
    """Write ``report.md`` and the three plots in ``run_dir`` from its CSVs; returns report.md."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportInputError(f"{run_dir}: not a folder")
    rows = read_steps(run_dir)
    if not rows:
        raise ReportInputError(f"{run_dir}: no ladder step in any steps-*.csv")
    meta_path = run_dir / "meta.json"
    meta: dict[str, Any] = {}
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise ReportInputError(f"{meta_path}: not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise ReportInputError(f"{meta_path}: not a JSON object")
    _plots(run_dir, rows)
    lines = [f"# Capacity report: {meta.get('started', run_dir.name)}", ""]
    lines += [
        f"Headline per front door: the highest achieved throughput of a ladder step with p99 "
        f"(from the scheduled send, coordinated omission corrected) under {P99_LIMIT_MS:g} ms "
        f"and errors + timeouts under {ERROR_LIMIT:.1%}, among steps where the generator kept "
        "its schedule; the floor (a bare server on the same machine, same generator, same "
        "ladder) by the same rule, in the same run.",
        "",
        *headline_table(rows),
        "",
        "![achieved vs offered](throughput.png)",
        "",
        "![latency vs offered](latency.png)",
        "",
        "![errors vs offered](errors.png)",
        "",
        "## Setup",
        "",
    ]
    if meta:
        for key, value in meta.items():
            if isinstance(value, dict):
                value = ", ".join(f"{k} {v}" for k, v in value.items())
            lines.append(f"- **{key}**: {value}")
    else:
        lines.append("- machine and settings not recorded (no meta.json)")
    lines += ["", "## Every step", "", *_steps_table(rows), ""]
    lines += [
        "Latencies in ms. `send p99`: from the actual send (what a closed loop would report); "
        "`lag p99`: how late the generator issued requests against their schedule. Raw data: "
        + ", ".join(f"`{p.name}`" for p in sorted(run_dir.glob("steps-*.csv")))
        + ".",
        "",
    ]
    report = run_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description="rebuild report.md of a capacity run folder"
    )
    parser.add_argument("run_dir", type=Path, help="a folder under benchmarks/reports/")
    args = parser.parse_args(argv)
    try:
        print(build_report(args.run_dir))
    except ReportInputError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
