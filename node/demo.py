"""``idnode demo``: a node with a few enterprises and their product identifiers, ready to query.

``prepare`` picks a demo data directory and secret and seeds it once with ``node.seed`` (about
``identifiers`` identifiers of one enterprise in each of four industries, each prefix homed with its
``<prefix>/ADMIN``); a later start finds the manifest and seeds nothing. The seed is fixed, so the
data is the same every time, and ``banner`` names an identifier the manifest lists.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from node import seed
from node.config import Config
from node.industries import select_industries
from node.server import Node

SEED = 2026
DEFAULT_DATA_DIR = "./data"
DEMO_DATA_DIR = "./data/demo"
DEMO_SECRET = "demo-secret"
#: the demo's enterprises lead these industries: 88.118.8, 88.101.1021, 88.106.3 and 88.112.27
INDUSTRIES = ("automobiles", "steel", "electric power", "food and beverage")


def spec(identifiers: int, config: Config) -> seed.SeedSpec:
    return seed.SeedSpec(
        seed=SEED,
        identifiers=identifiers,
        industries=select_industries(",".join(INDUSTRIES)),
        enterprises_per_industry=1,
        case_sensitive_suffix=config.case_sensitive_suffix,
    )


def prepare(config: Config, identifiers: int = 10000) -> Config:
    """The demo's config (``./data/demo``, secret ``demo-secret`` unless given), seeded once."""
    changes: dict[str, str] = {}
    if os.path.normpath(config.data_dir) == os.path.normpath(DEFAULT_DATA_DIR):
        changes["data_dir"] = DEMO_DATA_DIR
    if not config.admin_secret:
        changes["admin_secret"] = DEMO_SECRET
    config = config.merged(changes)
    result = asyncio.run(seed.seed(config, spec(identifiers, config)))
    if result.loaded:
        print(
            f"demo: seeded {result.loaded} identifiers in {config.data_dir}"
            f" ({result.seconds:.1f} s)",
            flush=True,
        )
    else:
        print(f"demo: identifiers already seeded in {config.data_dir}", flush=True)
    return config


def manifest(config: Config) -> dict[str, Any]:
    """The manifest ``prepare`` left in the data dir."""
    text = (Path(config.data_dir) / seed.MANIFEST).read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


def _idnode_command() -> str:
    """How to run ``idnode`` from here: on PATH, next to this Python, or ``python -m node``."""
    if shutil.which("idnode"):
        return "idnode"
    script = Path(sys.executable).parent / "idnode"
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return f"{sys.executable} -m node"


def banner(node: Node) -> str:
    """Ports, the demo prefixes and commands that work against this node as started."""
    config = node.config
    host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    http = f"http://{host}:{node.ports['http']}"
    seeded = manifest(config)
    handle = str(seeded["sample"][0]["handle"])  # the most popular comes first
    prefix = handle.partition("/")[0]
    secret = config.admin_secret if config.admin_secret == DEMO_SECRET else "<admin secret>"
    names = {i["code"]: i["name"] for i in seeded["industries"]}
    prefixes = ", ".join(f"{e['prefix']} ({names[e['industry']]})" for e in seeded["enterprises"])
    user = f"300%3A{prefix}/ADMIN:{secret}"
    lines = [
        "",
        f"idnode demo: enterprises {prefixes}",
        f"  HTTP  {http}  (Handle.net REST API)",
        f"  TCP   {host}:{node.ports['tcp']}  (msgpack, pipelined)",
        f"  UDP   {host}:{node.ports['udp']}  (msgpack)",
        "Try:",
        f"  curl -s {http}/api/handles/{handle}",
        f"  {_idnode_command()} resolve {handle} --url {http}",
        f"  curl -s -u {shlex.quote(user)} '{http}/api/handles?prefix={prefix}&pageSize=5'",
        "",
    ]
    return "\n".join(lines)
