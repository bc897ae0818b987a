"""The recursive users against a real three-level topology on 127.0.0.1.

Two secondary nodes are seeded by ``python -m node seed`` (automobiles 88.118, steel 88.101: two
enterprise prefixes each) and run, with a top-level node they register with and a recursive node
that walks top-level -> secondary, each ``node.server.Node`` on port 0 in a thread with its own
event loop (as ``tests/node/conftest.py`` does). A ``topology.json`` shaped as ``idnode topology
up`` writes it names them. Then headless ``locust`` runs (subprocesses: the pytest process never
imports Locust):

- ``--topology`` alone: only the recursive users run (TCP, UDP, HTTP), resolving keys of both
  manifests with no failure, and both secondary nodes answered the recursive node;
- the explicit ``--recursive-*`` flags with a manifest of a prefix no node serves: every
  resolution fails with the recursive node's ``response code 301 SERVER_NOT_RESPONSIBLE``.

The reading of ``topology.json`` and the merging of manifests are tested without Locust.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.locust.manifest import parse
from benchmarks.locust.recursive import merge, read_topology, target
from benchmarks.locust.workload import WorkloadError
from tests.benchmarks.test_locust import UNHOMED, locust_headless, manifest_for, read_csv, stats
from tests.node.conftest import HOST, ROOT, SECRET, RunningNode, http, make_config, running_node

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="locust is not installed (bench extra)"
)

INDUSTRIES = {"118": "automobiles", "101": "steel"}  #: code -> name, one secondary node each
TYPES = ("TCP", "UDP", "GET")  #: RecursiveTcpUser, RecursiveUdpUser, RecursiveHttpUser
FAST = {"heartbeat_interval_s": 0.2, "hop_timeout_s": 1.0, "shutdown_grace_s": 0.5}


@dataclass
class Topology:
    base: Path
    toplevel: RunningNode
    secondaries: dict[str, RunningNode]  #: industry code -> node
    recursive: RunningNode
    manifests: dict[str, Path]  #: industry code -> its seed manifest
    file: Path  #: topology.json


def seed(data_dir: Path, industry: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "node", "seed", "--data-dir", str(data_dir)]
    command += ["--industries", industry, "--identifiers", "300"]
    command += ["--enterprises-per-industry", "2", "--admin-secret", SECRET, "--quiet"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def delegations(top: RunningNode) -> dict[str, str]:
    reply = http(top, "GET", "/api/delegations")
    assert reply.status == 200, reply.body
    return {row["prefix"]: row["state"] for row in reply.json["delegations"]}


def entry(role: str, name: str, node: RunningNode, **extra: Any) -> dict[str, Any]:
    """A node as ``node.topology`` records it in ``topology.json``."""
    return {
        "role": role,
        "name": name,
        "prefixes": list(node.config.home),
        "host": HOST,
        "ports": {k: node.ports[k] for k in ("http", "tcp", "udp")},
        "pid": 0,
        "data_dir": node.config.data_dir,
        **extra,
    }


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    base = tmp_path_factory.mktemp("recursive")
    dirs = {code: base / "nodes" / code for code in INDUSTRIES}
    seeding = {code: seed(dirs[code], name) for code, name in INDUSTRIES.items()}
    for code, proc in seeding.items():
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"seeding {code}: {output.decode(errors='replace')[-2000:]}"
    manifests = {code: d / "manifest.json" for code, d in dirs.items()}
    with contextlib.ExitStack() as stack:
        top_cfg = make_config(base / "toplevel", role="toplevel", home=[], workers=1, **FAST)
        top = stack.enter_context(running_node(top_cfg))
        above = f"{HOST}:{top.ports['tcp']}"
        secondaries = {
            code: stack.enter_context(
                running_node(
                    make_config(dirs[code], home=[f"88.{code}"], toplevel=above, workers=1, **FAST)
                )
            )
            for code in INDUSTRIES
        }
        rec_cfg = make_config(
            base / "recursive", role="recursive", home=[], toplevel=above, workers=1, **FAST
        )
        rec = stack.enter_context(running_node(rec_cfg))
        # every secondary's prefixes registered with the top-level, as `topology up` waits for
        deadline = time.monotonic() + 20
        wanted = {f"88.{code}" for code in INDUSTRIES}
        while not all(delegations(top).get(p) == "alive" for p in wanted):
            assert time.monotonic() < deadline, delegations(top)
            time.sleep(0.1)
        for code, path in manifests.items():  # a seeded key resolves end to end
            handle = json.loads(path.read_text())["sample"][0]["handle"]
            reply = http(rec, "GET", f"/api/handles/{handle}")
            assert reply.status == 200, (code, handle, reply.body)
        file = base / "topology.json"
        nodes = [entry("toplevel", "toplevel", top)]
        for code, node in secondaries.items():
            # one path as written by `topology up` (absolute), one relative to the file
            path = manifests[code] if code == "118" else manifests[code].relative_to(base)
            nodes.append(
                entry("secondary", f"secondary-{code}", node, industry=code, manifest=str(path))
            )
        nodes.append(entry("recursive", "recursive", rec))
        record = {"version": 1, "state": "up", "dir": str(base), "nodes": nodes}
        record.update(toplevel=nodes[0], recursive=nodes[-1])
        file.write_text(json.dumps(record, indent=1))
        yield Topology(base, top, secondaries, rec, manifests, file)


def resolutions(node: RunningNode) -> float:
    """Successful resolutions ``node`` answered, every transport (its Prometheus counter)."""
    reply = http(node, "GET", "/metrics")
    assert reply.status == 200
    return sum(
        s.value
        for family in text_string_to_metric_families(reply.body.decode())
        for s in family.samples
        if s.name == "idnode_requests_total"
        and s.labels.get("op", "").startswith("resol")
        and s.labels.get("code") == "1"
    )


# ------------------------------------------------------------------------------------------------


def test_recursive_users_resolve_through_the_topology(topology: Topology, tmp_path: Path) -> None:
    before = {code: resolutions(node) for code, node in topology.secondaries.items()}
    out = tmp_path / "run"
    rc, output = locust_headless(
        out,
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "4s",
        "--topology",
        str(topology.file),
        "--not-found-share",
        "0.1",
        "--cross-share",
        "0.5",
    )
    assert rc == 0, output[-4000:]
    table = stats(out)
    # only the recursive users ran: no --manifest, so the node users were left out
    assert {name for _, name in table} <= {
        "recursive resolve",
        "recursive resolve (not found)",
        "recursive resolve via TCP",
    }, sorted(table)
    for request_type in TYPES:
        for name in ("recursive resolve", "recursive resolve (not found)"):
            requests, failures = table.get((request_type, name), (0, 0))
            assert requests > 0, f"no {request_type} {name}: {sorted(table)}\n{output[-3000:]}"
            assert failures == 0, f"{request_type} {name} failed {failures}x\n{output[-3000:]}"
    assert read_csv(Path(f"{out}_failures.csv")) == []
    assert "recursive 127.0.0.1" in output and "2 manifests" in output, output[-3000:]
    # keys of both manifests went through: each secondary answered the recursive node
    for code, node in topology.secondaries.items():
        assert resolutions(node) > before[code], f"secondary 88.{code} saw no resolution"


def test_unserved_prefix_fails_with_the_recursive_nodes_code(
    topology: Topology, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.json"
    handles = [(f"{UNHOMED}/PRD-{i:04d}", 1.0) for i in range(5)]
    wrong.write_text(json.dumps(manifest_for(handles, [UNHOMED])))
    rec = topology.recursive
    out = tmp_path / "wrong"
    rc, output = locust_headless(
        out,
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "3s",
        "--recursive-host",
        HOST,
        "--recursive-port",
        str(rec.ports["tcp"]),
        "--recursive-udp-port",
        str(rec.ports["udp"]),
        "--recursive-http-port",
        str(rec.ports["http"]),
        "--recursive-manifest",
        str(wrong),
        "--not-found-share",
        "0",
        "RecursiveTcpUser",
        "RecursiveUdpUser",
        "RecursiveHttpUser",
    )
    assert rc == 1, output[-4000:]  # Locust's exit status when requests failed
    table = stats(out)
    for request_type in TYPES:
        requests, failures = table.get((request_type, "recursive resolve"), (0, 0))
        assert requests > 0 and failures == requests, (request_type, table, output[-3000:])
    rows = read_csv(Path(f"{out}_failures.csv"))
    assert {row["Method"] for row in rows} == set(TYPES), rows
    for row in rows:
        assert row["Name"] == "recursive resolve", row
        assert "response code 301 SERVER_NOT_RESPONSIBLE" in row["Error"], row


# ------------------------------------------------------------------------------------------------
# topology.json and the flags, without Locust


def options(**given: Any) -> argparse.Namespace:
    """Parsed options as Locust gives them: every flag present, None when not given."""
    names = "topology recursive_host recursive_port recursive_udp_port recursive_http_port"
    names += " recursive_manifest manifest"
    return argparse.Namespace(**{n: given.get(n) for n in names.split()})


def test_topology_file_and_flags(tmp_path: Path) -> None:
    rec: dict[str, Any] = {"role": "recursive", "name": "recursive", "host": "127.0.0.1"}
    rec["ports"] = {"http": 8080, "tcp": 3641, "udp": 3642}
    nodes = [
        {"role": "toplevel", "name": "toplevel", "ports": {"http": 1, "tcp": 2, "udp": 2}},
        {"role": "secondary", "name": "secondary-118", "manifest": "/abs/118/manifest.json"},
        {"role": "secondary", "name": "secondary-101", "manifest": "nodes/101/manifest.json"},
        {"role": "secondary", "name": "secondary-102"},  # a node without a manifest
        rec,
    ]
    file = tmp_path / "topology.json"
    file.write_text(json.dumps({"version": 1, "state": "up", "nodes": nodes}))
    found = read_topology(file)
    assert (found.host, found.tcp_port, found.udp_port, found.http_port) == (
        "127.0.0.1",
        3641,
        3642,
        8080,
    )
    assert found.manifests == ("/abs/118/manifest.json", str(tmp_path / "nodes/101/manifest.json"))
    # everything from the file; flags win over it
    got = target(options(topology=str(file)))
    assert (got.tcp_port, got.udp_port, got.http_url) == (3641, 3642, "http://127.0.0.1:8080")
    assert got.manifests == found.manifests
    got = target(options(topology=str(file), recursive_port=4000, recursive_manifest="a.json,b"))
    assert (got.tcp_port, got.udp_port, got.manifests) == (4000, 4000, ("a.json", "b"))
    # flags alone: no HTTP port unless given; the node users' manifest as a last resort
    got = target(options(recursive_port=3641, manifest="m.json"))
    assert (got.host, got.http_url, got.manifests) == ("127.0.0.1", None, ("m.json",))
    with pytest.raises(WorkloadError, match="no recursive node"):
        target(options(manifest="m.json"))
    with pytest.raises(WorkloadError, match="no seed manifest"):
        target(options(recursive_port=3641))
    # the `manifests` map of the record when the nodes name none; a topology that is down
    file.write_text(json.dumps({"state": "up", "recursive": rec, "manifests": {"s": "m.json"}}))
    assert read_topology(file).manifests == (str(tmp_path / "m.json"),)
    file.write_text(json.dumps({"state": "down", "nodes": nodes}))
    with pytest.raises(WorkloadError, match="down"):
        read_topology(file)
    file.write_text(json.dumps({"state": "up", "nodes": nodes[:2]}))
    with pytest.raises(WorkloadError, match="no node of role 'recursive'"):
        read_topology(file)
    with pytest.raises(WorkloadError, match="cannot read"):
        read_topology(tmp_path / "missing.json")


def test_manifests_merge() -> None:
    a = parse(manifest_for([("88.1.1/A", 1.0), ("88.1.1/B", 0.5)], ["88.1.1", "88.1.2"]))
    b = parse(manifest_for([("88.2.1/C", 1.0), ("88.1.1/A", 1.0)], ["88.2.1"]))
    merged = merge([a, b])
    assert [k.handle for k in merged.keys] == ["88.1.1/A", "88.1.1/B", "88.2.1/C"]
    assert merged.prefixes == ("88.1.1", "88.1.2", "88.2.1")
    assert (merged.seed, merged.identifiers) == (1, 4)


def test_no_locust_in_this_process() -> None:
    assert "locust" not in sys.modules and "gevent.monkey" not in sys.modules
