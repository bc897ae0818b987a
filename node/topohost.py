"""``idnode topology host --spec FILE``: several emulated nodes in one process, one event loop.

An emulated national topology has a top-level node, up to a few hundred secondary nodes and a
recursive node. A process per secondary node would spend most of the memory on 165 copies of the
interpreter and its imports (about 40 MB each) while the nodes themselves cost about 1 MB each idle;
so ``node.topology`` starts a few host processes, each running its share of ``Node`` objects on
port 0 in one asyncio loop.

The spec (JSON, written by ``node.topology``) lists the nodes: each one's ``Config`` fields and,
for a secondary, the ``SeedSpec`` to seed its data dir with first (once: ``node.seed`` finds its
manifest on a later start). Once every node is listening the host writes the ports file named in
the spec (aside, then renamed: a reader sees all or nothing) and prints ``topology host ready``.
SIGTERM or SIGINT stops every node (``Node.stop`` drains and closes its store) and exits 0, at
once while seeding (the seed is cancelled and its generating process ended); a failure before
that exits 1 with the reason in the log, which ``node.topology`` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import sys
from pathlib import Path
from typing import Any

from node import logs
from node.config import Config

log = logging.getLogger("idnode.topology")

STOP_TIMEOUT_S = 10.0  #: every node of the host stops within this (each drains at most its grace)


def _raise_file_limit() -> None:
    """Each node holds about ten descriptors (three sockets, two SQLite connections with their
    WAL files): a host of a hundred nodes needs more than the usual soft limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def _seed(entries: list[dict[str, Any]]) -> dict[str, str]:
    """Seed every node that asks for it (one after the other: it is CPU-bound);
    returns node name -> manifest path."""
    from node import seed

    manifests: dict[str, str] = {}
    for entry in entries:
        fields = entry.get("seed")
        if not fields:
            continue
        config = Config().merged(entry["config"])
        spec = seed.SeedSpec.from_json(fields)
        result = await seed.seed(config, spec)
        manifests[entry["name"]] = str(result.path)
    return manifests


async def run(spec: dict[str, Any]) -> int:
    """Seed, start and serve the spec's nodes until SIGTERM or SIGINT."""
    from node.server import Node  # the heavy imports, only in the process that serves

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    entries: list[dict[str, Any]] = spec["nodes"]
    # seeding a large spec takes minutes: a stop must not wait for it (cancelling the seed ends
    # its generating process too, see ``seed._load_from_worker``)
    seeding = asyncio.ensure_future(_seed(entries))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait((seeding, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not seeding.done():
        seeding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await seeding
        log.info("stopped while seeding")
        return 0
    manifests = seeding.result()
    nodes: list[Node] = []
    try:
        for entry in entries:
            if stop.is_set():
                return 0
            node = Node(Config().merged(entry["config"]))
            await node.start()
            nodes.append(node)
        report = {
            "pid": os.getpid(),
            "nodes": [
                {
                    "name": entry["name"],
                    "ports": dict(node.ports),
                    "prefixes": sorted(node.service.homed.values()),
                    "manifest": manifests.get(entry["name"]),
                }
                for entry, node in zip(entries, nodes, strict=True)
            ],
        }
        path = Path(spec["ports_file"])
        partial = path.with_name(path.name + ".part")
        partial.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        os.replace(partial, path)
        print(f"topology host ready: {len(nodes)} nodes", flush=True)
        await stop.wait()
    finally:
        if nodes:
            done, pending = await asyncio.wait(
                [asyncio.ensure_future(n.stop()) for n in nodes], timeout=STOP_TIMEOUT_S
            )
            for task in done:
                if task.exception() is not None:
                    log.error("a node failed to stop: %r", task.exception())
            if pending:
                log.error("%d nodes did not stop within %.0f s", len(pending), STOP_TIMEOUT_S)
    return 0


def main(spec_path: str) -> int:
    """The host process's entry point (``idnode topology host --spec FILE``)."""
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    logs.setup(spec.get("log_level", "INFO"))
    _raise_file_limit()
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    try:
        return int(runner(run(spec)))
    except Exception:
        log.exception("topology host failed")
        print("topology host failed", file=sys.stderr, flush=True)
        return 1
