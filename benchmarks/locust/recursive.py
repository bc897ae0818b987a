"""The recursive node as a load target: where it listens, and which seed manifests give its keys.

A recursive node (``idnode serve --role recursive --toplevel HOST:PORT``) holds no data: it
resolves any identifier by walking top-level -> secondary, and answers over HTTP, msgpack/TCP and
msgpack/UDP like any node (the national one listens on 3641). Its keys are those of the secondary
nodes below it, so the recursive users look up keys of several seed manifests at once.

Where it is comes from flags, or from the ``topology.json`` that ``idnode topology up`` writes
(``--topology``): the node of role ``recursive`` gives the host and the ports, the secondary nodes'
``manifest`` paths give the keys; explicit flags win over the file::

    --topology topology/topology.json                 everything from the file
    --recursive-host 127.0.0.1 --recursive-port 3641  msgpack TCP (and UDP) port
    --recursive-udp-port N --recursive-http-port N    UDP when not the TCP port; the REST API
    --recursive-manifest a/manifest.json,b/manifest.json

No recursive node configured (neither ``--topology`` nor ``--recursive-port``): the recursive users
do not run, and the locustfile's other users run as they always did.

This module does not import Locust (the test process may use it); ``options.recursive_context``
builds the run context from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.locust.manifest import Enterprise, Key, Manifest
from benchmarks.locust.workload import WorkloadError

LOCAL = "127.0.0.1"
_ANY_ADDRESS = ("", "0.0.0.0", "::", "[::]")  #: a node listening everywhere: connect locally


def add_arguments(parser: Any) -> None:
    """Register the recursive node's flags on Locust's parser."""
    parser.add_argument(
        "--topology",
        env_var="IDNODE_TOPOLOGY",
        default=None,
        help="topology.json of `idnode topology up`: the recursive node's address and the "
        "secondary nodes' seed manifests, for the Recursive* users",
    )
    parser.add_argument(
        "--recursive-host",
        env_var="IDNODE_RECURSIVE_HOST",
        default=None,
        help="host of the recursive node (default: from --topology, else 127.0.0.1)",
    )
    parser.add_argument(
        "--recursive-port",
        env_var="IDNODE_RECURSIVE_PORT",
        type=int,
        default=None,
        help="msgpack TCP port of the recursive node (the national one: 3641); with --topology "
        "or this flag the Recursive* users run, else they are left out",
    )
    parser.add_argument(
        "--recursive-udp-port",
        env_var="IDNODE_RECURSIVE_UDP_PORT",
        type=int,
        default=None,
        help="msgpack UDP port of the recursive node (default: from --topology, else "
        "--recursive-port)",
    )
    parser.add_argument(
        "--recursive-http-port",
        env_var="IDNODE_RECURSIVE_HTTP_PORT",
        type=int,
        default=None,
        help="HTTP (REST API) port of the recursive node (default: from --topology; without "
        "one RecursiveHttpUser is left out)",
    )
    parser.add_argument(
        "--recursive-manifest",
        env_var="IDNODE_RECURSIVE_MANIFEST",
        default=None,
        help="seed manifests whose keys the recursive users resolve, comma-separated (default: "
        "the secondary nodes' in --topology, else --manifest)",
    )


@dataclass(frozen=True)
class Target:
    """The recursive node and the manifests of the keys to ask it for."""

    host: str
    tcp_port: int
    udp_port: int
    http_port: int | None
    manifests: tuple[str, ...]
    topology: str | None = None  #: the file it came from, if any

    @property
    def http_url(self) -> str | None:
        if self.http_port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.http_port}"

    def describe(self) -> str:
        http = f" http={self.http_port}" if self.http_port is not None else ""
        source = f" from {self.topology}" if self.topology else ""
        return (
            f"recursive {self.host} tcp={self.tcp_port} udp={self.udp_port}{http}{source},"
            f" {len(self.manifests)} manifests"
        )


@dataclass(frozen=True)
class TopologyFile:
    """What a ``topology.json`` says about the recursive node and the secondary nodes."""

    host: str
    tcp_port: int
    udp_port: int
    http_port: int | None
    manifests: tuple[str, ...]


def configured(parsed: Any) -> bool:
    """Whether a recursive node was named (``--topology`` or ``--recursive-port``)."""
    if parsed is None:
        return False
    return bool(getattr(parsed, "topology", None)) or (
        getattr(parsed, "recursive_port", None) is not None
    )


def http_configured(parsed: Any) -> bool:
    """Whether the recursive node's HTTP port is known (a broken setting counts as known, so that
    checking it reports the problem rather than leaving the user out silently)."""
    if not configured(parsed):
        return False
    try:
        return target(parsed).http_port is not None
    except WorkloadError:
        return True


def _port(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise WorkloadError(f"{what}: {value!r} is not a port")
    return value


def _node_port(node: dict[str, Any], name: str, where: str) -> int | None:
    """``node["ports"][name]``, or a flat ``name`` / ``name_port`` key; None when absent."""
    ports = node.get("ports")
    holder = ports if isinstance(ports, dict) else node
    value = holder.get(name, holder.get(f"{name}_port"))
    return None if value is None else _port(value, f"{where}: {name} port")


def _paths(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str) and v]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, str) and v]
    return []


def read_topology(path: str | Path) -> TopologyFile:
    """The recursive node and the seed manifests of ``path`` (a ``topology.json``); raises
    ``WorkloadError`` when the file is unreadable, the topology is down or has no recursive node.

    Relative manifest paths are taken from the file's directory.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise WorkloadError(f"cannot read the topology {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise WorkloadError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WorkloadError(f"{path}: a topology is a JSON object")
    state = data.get("state")
    if state in ("down", "failed"):
        raise WorkloadError(f"{path}: the topology is {state}; start it: idnode topology up")
    nodes = [n for n in data.get("nodes", []) if isinstance(n, dict)]
    found = data.get("recursive")
    if not isinstance(found, dict):
        found = next((n for n in nodes if n.get("role") == "recursive"), None)
    if found is None:
        raise WorkloadError(f"{path}: no node of role 'recursive'")
    where = f"{path}: recursive node"
    tcp = _node_port(found, "tcp", where)
    if tcp is None:
        raise WorkloadError(f"{where}: no tcp port")
    udp = _node_port(found, "udp", where)
    host = found.get("host")
    host = host if isinstance(host, str) and host not in _ANY_ADDRESS else LOCAL
    listed: list[str] = []
    for node in nodes:
        if node.get("role") == "secondary":
            listed += _paths(node.get("manifest")) + _paths(node.get("manifests"))
    if not listed:
        listed = _paths(data.get("manifests"))
    manifests = dict.fromkeys(str(path.parent / p) for p in listed)  # in order, once each
    return TopologyFile(
        host=host,
        tcp_port=tcp,
        udp_port=tcp if udp is None else udp,
        http_port=_node_port(found, "http", where),
        manifests=tuple(manifests),
    )


def target(parsed: Any) -> Target:
    """The recursive node of the parsed options (flags over ``--topology``); raises
    ``WorkloadError`` when none is configured or something is missing."""
    if not configured(parsed):
        raise WorkloadError(
            "no recursive node: give --topology PATH or --recursive-port PORT (and "
            "--recursive-manifest)"
        )
    topology = getattr(parsed, "topology", None)
    found = read_topology(topology) if topology else None
    tcp = getattr(parsed, "recursive_port", None)
    if tcp is None:
        assert found is not None  # configured() without a port means a topology
        tcp = found.tcp_port
    tcp = _port(tcp, "--recursive-port")
    udp = getattr(parsed, "recursive_udp_port", None)
    if udp is None:
        udp = found.udp_port if found is not None and found.tcp_port == tcp else tcp
    http = getattr(parsed, "recursive_http_port", None)
    if http is None and found is not None:
        http = found.http_port
    host = getattr(parsed, "recursive_host", None) or (found.host if found else LOCAL)
    given = getattr(parsed, "recursive_manifest", None)
    if given:
        manifests = tuple(p.strip() for p in str(given).split(",") if p.strip())
    elif found is not None and found.manifests:
        manifests = found.manifests
    else:
        fallback = getattr(parsed, "manifest", None)
        manifests = (str(fallback),) if fallback else ()
    if not manifests:
        raise WorkloadError(
            "no seed manifest for the recursive users: --recursive-manifest PATH[,PATH...], "
            "a --topology whose secondary nodes have manifests, or --manifest"
        )
    return Target(
        host=host,
        tcp_port=tcp,
        udp_port=_port(udp, "--recursive-udp-port"),
        http_port=None if http is None else _port(http, "--recursive-http-port"),
        manifests=manifests,
        topology=str(topology) if topology else None,
    )


def merge(manifests: Sequence[Manifest]) -> Manifest:
    """One manifest holding the keys and enterprises of ``manifests`` (each once, in order)."""
    keys: dict[str, Key] = {}
    enterprises: dict[str, Enterprise] = {}
    for manifest in manifests:
        for key in manifest.keys:
            keys.setdefault(key.handle, key)
        for enterprise in manifest.enterprises:
            enterprises.setdefault(enterprise.prefix, enterprise)
    seeds = {m.seed for m in manifests}
    counts = [m.identifiers for m in manifests]
    return Manifest(
        keys=tuple(keys.values()),
        enterprises=tuple(enterprises.values()),
        seed=seeds.pop() if len(seeds) == 1 else None,
        identifiers=None if None in counts else sum(c for c in counts if c is not None),
    )
