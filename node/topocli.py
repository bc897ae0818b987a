"""``idnode topology up|status|down`` on the command line, and what ``status`` looks at.

``up`` and ``down`` are ``node.topology``'s; ``status`` reads ``D/topology.json`` and, for every
node, whether its process runs, whether ``GET /healthz`` answers, and for a secondary node the
top-level's view of it (``GET /api/delegations``: alive or stale; unknown where the top-level has
no such endpoint). It exits 0 when the topology is up (its ``up`` finished: ``state`` up) and
everything is alive, else 1, and shows the resident memory of every process (``VmRSS``): a host
process's memory is shared by its nodes, so a node's figure is its share. ``topology host``
(hidden) is the process ``node.topohost`` runs nodes in.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from node import processes, seed, topology
from node.topology import HOST, Options, TopologyError


def add_commands(subparsers: Any) -> None:
    """Add ``topology`` and its subcommands to ``idnode``'s subparsers."""
    parser = subparsers.add_parser("topology", help="an emulated national topology on this machine")
    sub = parser.add_subparsers(dest="topology_command", required=True, metavar="{up,status,down}")
    up = sub.add_parser(
        "up",
        help="start a top-level, N secondary and a recursive node",
        description="Start a top-level, N secondary and a recursive node on 127.0.0.1, detached."
        " In a directory used before, the top-level and recursive nodes start empty, and a"
        " secondary keeps its data only when it was seeded with the same options (seed,"
        " identifiers, enterprises, admin secret); otherwise it is seeded again. Interrupted"
        " (Ctrl-C, SIGTERM, SIGHUP), it stops what it started.",
    )
    status = sub.add_parser("status", help="one line per node: process, health, delegation")
    down = sub.add_parser("down", help="stop every process of the topology")
    for p in (up, status, down):
        p.add_argument("--dir", default=topology.DEFAULT_DIR, help="(default ./topology)")
    d = Options()
    up.add_argument(
        "--secondaries", type=int, default=d.secondaries,
        help=f"secondary nodes (default {d.secondaries}, one per industry; more get synthetic"
        " industries)",
    )  # fmt: skip
    up.add_argument(
        "--identifiers-per-node", type=int, default=d.identifiers_per_node,
        help=f"product identifiers seeded in each secondary (default {d.identifiers_per_node})",
    )  # fmt: skip
    up.add_argument(
        "--enterprises-per-industry", type=int, default=d.enterprises_per_industry,
        help=f"enterprise prefixes of each secondary, 1 to {seed.MAX_ENTERPRISES}"
        f" (default {d.enterprises_per_industry})",
    )  # fmt: skip
    up.add_argument(
        "--nodes-per-process", type=int, default=0,
        help="secondary nodes in one process (default: spread over the CPUs)",
    )  # fmt: skip
    up.add_argument("--admin-secret", default=d.admin_secret, help="one secret for every node")
    up.add_argument("--seed", type=int, default=d.seed, help="same seed, same data")
    up.add_argument(
        "--cache-mb", type=float, default=d.cache_bytes / 2**20,
        help="each secondary's resolution cache bound (default 16)",
    )  # fmt: skip
    up.add_argument("--log-level", default=d.log_level, help="of every node (default INFO)")
    up.add_argument(
        "--recursive-port", type=int, default=d.recursive_port,
        help="the recursive node's Handle port, TCP and UDP, 0-65535 (3641 as nationally;"
        " default 0: any free)",
    )  # fmt: skip
    up.add_argument(
        "--start-timeout-s", type=float, default=0.0,
        help="how long a process may take to start, more than 0 (default 0: from its work)",
    )  # fmt: skip
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.add_argument("--timeout-s", type=float, default=2.0, help="per HTTP request")
    host = sub.add_parser("host")  # started by ``up``, not by people
    host.add_argument("--spec", required=True)


def main(args: argparse.Namespace) -> int:
    command = args.topology_command
    if command == "host":
        from node import topohost

        return topohost.main(args.spec)
    root = Path(args.dir)
    try:
        if command == "up":
            return _up(root, args)
        if command == "down":
            stopped, seconds = topology.down(root)
            print(f"topology down: {stopped} processes stopped in {seconds:.1f} s")
            return 0
    except TopologyError as exc:
        print(f"idnode topology {command}: {exc}", file=sys.stderr)
        return 1
    return status(root, as_json=args.json, timeout_s=args.timeout_s)


def _up(root: Path, args: argparse.Namespace) -> int:
    options = Options(
        secondaries=args.secondaries,
        identifiers_per_node=args.identifiers_per_node,
        enterprises_per_industry=args.enterprises_per_industry,
        nodes_per_process=args.nodes_per_process,
        admin_secret=args.admin_secret,
        seed=args.seed,
        # nan or inf: refused by ``topology.check`` as any other bound out of range
        cache_bytes=int(args.cache_mb * 2**20) if math.isfinite(args.cache_mb) else -1,
        log_level=args.log_level,
        start_timeout_s=args.start_timeout_s,
        recursive_port=args.recursive_port,
    )
    record = topology.up(root, options)
    top, rec = record["toplevel"]["ports"], record["recursive"]["ports"]
    hosts = sum(1 for p in record["processes"] if p["role"] == "host")
    print(
        f"topology up in {record['up_seconds']:.1f} s: {options.secondaries} secondary nodes in"
        f" {hosts} processes\n"
        f"  top-level  http={top['http']} tcp={top['tcp']} udp={top['udp']}\n"
        f"  recursive  http={rec['http']} tcp={rec['tcp']} udp={rec['udp']}\n"
        f"  nodes, ports and seed manifests: {Path(record['dir']) / topology.TOPOLOGY}"
    )
    return 0


def _healthy(port: int, timeout_s: float) -> bool:
    try:
        return bool(topology.http_json(f"http://{HOST}:{port}/healthz", timeout_s))
    except (OSError, ValueError):
        return False


def collect(root: Path, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """What ``status`` shows, as one JSON object; None when ``root`` holds no topology."""
    record = topology.read_record(root.resolve())
    if record is None:
        return None
    procs = []
    for p in record.get("processes", []):
        live = processes.alive(p["pid"], p.get("start_time"))
        rss = processes.rss_bytes(p["pid"]) if live else None
        procs.append({"pid": p["pid"], "role": p["role"], "name": p["name"], "alive": live,
                      "rss_bytes": rss})  # fmt: skip
    by_pid = {p["pid"]: p for p in procs}
    nodes: list[dict[str, Any]] = record.get("nodes", [])
    with ThreadPoolExecutor(max_workers=min(32, len(nodes) + 1)) as pool:
        health = list(pool.map(lambda n: _healthy(n["ports"]["http"], timeout_s), nodes))
    views = None
    top = record.get("toplevel")
    if top is not None and by_pid.get(top["pid"], {}).get("alive"):
        views = topology.delegations(top["ports"]["http"], timeout_s)
    sharing: dict[int, int] = {}
    for n in nodes:
        sharing[n["pid"]] = sharing.get(n["pid"], 0) + 1
    out = []
    for n, healthy in zip(nodes, health, strict=True):
        proc = by_pid.get(n["pid"], {"alive": False, "rss_bytes": None})
        delegation = None
        if n["role"] == "secondary":
            delegation = (
                "unknown" if views is None else views.get(n["prefixes"][0].upper(), "absent")
            )
        rss = proc["rss_bytes"]
        ok = proc["alive"] and healthy and delegation in (None, "alive", "unknown")
        out.append({
            "role": n["role"], "name": n["name"], "prefixes": n["prefixes"], "host": n["host"],
            "ports": n["ports"], "pid": n["pid"], "process_alive": proc["alive"],
            "healthz": healthy, "delegation": delegation, "ok": ok,
            "rss_share_bytes": None if rss is None else rss // sharing[n["pid"]],
        })  # fmt: skip
    total = sum(p["rss_bytes"] or 0 for p in procs)
    return {
        "dir": record["dir"],
        "state": record.get("state"),
        # a record left ``starting`` by an ``up`` killed half way is not a topology
        "ok": record.get("state") == "up"
        and bool(out)
        and all(n["ok"] for n in out)
        and all(p["alive"] for p in procs),
        "nodes": out,
        "processes": procs,
        "total_rss_bytes": total,
        "checked_at": time.time(),
    }


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}MB"


def status(root: Path, *, as_json: bool = False, timeout_s: float = 2.0) -> int:
    """Print the topology's status; 0 when every process and node is alive, else 1."""
    found = collect(root, timeout_s)
    if found is None:
        print(f"idnode topology status: no topology in {root}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(found, indent=1))
        return 0 if found["ok"] else 1
    for n in found["nodes"]:
        ports = " ".join(f"{k}={v}" for k, v in n["ports"].items())
        delegation = f" delegation={n['delegation']}" if n["delegation"] else ""
        print(
            f"{n['role']:<10} {n['name']:<16} {ports:<30} pid={n['pid']:<7}"
            f" process={'alive' if n['process_alive'] else 'DEAD'}"
            f" healthz={'ok' if n['healthz'] else 'FAIL'}{delegation}"
            f" rss={_mb(n['rss_share_bytes'])}"
        )
    live = sum(1 for p in found["processes"] if p["alive"])
    # the memory of the host processes alive (a dead one has none), shared by their secondaries
    secondaries = [n for n in found["nodes"] if n["role"] == "secondary" and n["process_alive"]]
    hosts = [p for p in found["processes"] if p["role"] == "host"]
    host_rss = sum(p["rss_bytes"] or 0 for p in hosts)
    per = f", {_mb(host_rss // len(secondaries))} per secondary" if secondaries else ""
    print(
        f"{found['state'] or '?'}: {live}/{len(found['processes'])} processes alive,"
        f" {sum(n['ok'] for n in found['nodes'])}/{len(found['nodes'])} nodes ok;"
        f" total RSS {_mb(found['total_rss_bytes'])}{per}"
    )
    if found["state"] != "up" and live:
        print(
            f"not up: unless a topology up is still starting, stop what is left with"
            f" idnode topology down --dir {found['dir']}"
        )
    return 0 if found["ok"] else 1
