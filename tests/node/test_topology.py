"""``idnode topology up|status|down``: real processes on 127.0.0.1, a tiny topology, bounded time.

Three secondary nodes (two in one host process, one in another), a top-level and a recursive node,
a few dozen identifiers each: ``up`` must leave every process running and described in
``topology.json``, ``status`` must see them alive, a second ``up`` must refuse, and ``down`` must
leave no process behind, twice. The synthetic industries behind large topologies are checked here
too: stable codes clear of the real ones, and data as realistic as a real industry's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node import seed, topocli, topology
from node.industries import (
    INDUSTRIES,
    SYNTHETIC_FIRST,
    industry_by_code,
    select_industries,
    synthetic_codes,
    synthetic_industry,
)
from tests.node.conftest import ROOT

UP_ARGS = [
    "--secondaries", "3", "--identifiers-per-node", "40", "--enterprises-per-industry", "2",
    "--nodes-per-process", "2", "--start-timeout-s", "30", "--log-level", "WARNING",
]  # fmt: skip


def idnode(*args: str, timeout: float = 90.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
    return subprocess.run(
        [sys.executable, "-m", "node", "topology", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def pids(record: dict[str, Any]) -> list[tuple[int, str | None]]:
    return [(p["pid"], p["start_time"]) for p in record["processes"]]


@pytest.fixture
def topo_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for a topology, torn down whatever the test did."""
    root = tmp_path / "topo"
    yield root
    topology.down(root, timeout_s=5.0)


def _free_port() -> int:
    with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
        t.bind(("127.0.0.1", 0))
        port = int(t.getsockname()[1])
        u.bind(("127.0.0.1", port))
    return port


def test_up_status_down(topo_dir: Path) -> None:
    started = time.monotonic()
    recursive_port = _free_port()
    up = idnode("up", "--dir", str(topo_dir), *UP_ARGS, "--recursive-port", str(recursive_port))
    assert up.returncode == 0, up.stderr
    record = json.loads((topo_dir / "topology.json").read_text())
    assert record["state"] == "up" and (topo_dir / "running").exists()

    roles = [n["role"] for n in record["nodes"]]
    assert roles == ["toplevel", "secondary", "secondary", "secondary", "recursive"]
    assert record["toplevel"]["prefixes"] == [] and record["recursive"]["prefixes"] == []
    assert [p["role"] for p in record["processes"]] == ["toplevel", "host", "host", "recursive"]
    assert all(topology.alive(pid, start) for pid, start in pids(record))
    secondaries = [n for n in record["nodes"] if n["role"] == "secondary"]
    codes = [i.code for i in INDUSTRIES[:3]]
    assert [n["industry"] for n in secondaries] == codes
    ports = [port for n in record["nodes"] for port in (n["ports"]["http"], n["ports"]["tcp"])]
    assert len(set(ports)) == len(ports) and all(ports)
    for node, code in zip(secondaries, codes, strict=True):
        assert node["name"] == f"secondary-{code}" and node["host"] == "127.0.0.1"
        # the industry prefix first, then the two enterprise prefixes the seed homed
        assert node["prefixes"][0] == f"88.{code}" and len(node["prefixes"]) == 3
        assert all(p.startswith(f"88.{code}.") for p in node["prefixes"][1:])
        assert Path(node["data_dir"]).is_dir()
        manifest = json.loads(Path(record["manifests"][node["name"]]).read_text())
        handle = manifest["sample"][0]["handle"]
        assert handle.partition("/")[0] in node["prefixes"]
        url = f"http://127.0.0.1:{node['ports']['http']}/api/handles/{handle}"
        with urllib.request.urlopen(url, timeout=5) as resp:  # its data answers there
            direct = json.loads(resp.read())
        assert direct["handle"] == handle
        # and through the recursive node, on the port asked for
        rec = record["recursive"]["ports"]
        assert rec["tcp"] == rec["udp"] == recursive_port
        url = f"http://127.0.0.1:{rec['http']}/api/handles/{handle}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert json.loads(resp.read())["values"] == direct["values"]

    status = idnode("status", "--dir", str(topo_dir))
    assert status.returncode == 0, status.stdout + status.stderr
    lines = status.stdout.splitlines()
    assert len(lines) == 6 and "total RSS" in lines[-1]
    assert all("process=alive" in line and "healthz=ok" in line for line in lines[:5])
    shown = idnode("status", "--dir", str(topo_dir), "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert found["ok"] is True and found["total_rss_bytes"] > 0
    assert [n["name"] for n in found["nodes"]] == [n["name"] for n in record["nodes"]]
    for n in found["nodes"]:
        assert n["process_alive"] and n["healthz"] and n["rss_share_bytes"] > 0
        assert n["delegation"] == ("alive" if n["role"] == "secondary" else None)

    again = idnode("up", "--dir", str(topo_dir), *UP_ARGS)
    assert again.returncode == 1 and "already running" in again.stderr
    assert all(topology.alive(pid, start) for pid, start in pids(record))

    down = idnode("down", "--dir", str(topo_dir))
    assert down.returncode == 0, down.stderr
    assert "4 processes stopped" in down.stdout
    assert not any(topology.alive(pid, start) for pid, start in pids(record))
    assert not (topo_dir / "running").exists()
    assert json.loads((topo_dir / "topology.json").read_text())["state"] == "down"
    twice = idnode("down", "--dir", str(topo_dir))
    assert twice.returncode == 0 and "0 processes stopped" in twice.stdout
    assert idnode("status", "--dir", str(topo_dir)).returncode == 1
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_165_secondaries_fit_in_8_gb(topo_dir: Path) -> None:
    """The national scale of 2021 on a laptop: resident memory of every process, and room for
    every secondary's resolution cache to fill up."""
    args = ["--secondaries", "165", "--identifiers-per-node", "20", "--log-level", "WARNING"]
    up = idnode("up", "--dir", str(topo_dir), *args, "--enterprises-per-industry", "1")
    assert up.returncode == 0, up.stderr
    found = topocli.collect(topo_dir)
    assert found is not None and found["ok"], found
    assert len(found["nodes"]) == 167
    total = found["total_rss_bytes"]
    caches = 165 * topology.Options().cache_bytes
    assert total + caches < 8 * 2**30, (total, caches)
    assert idnode("down", "--dir", str(topo_dir)).returncode == 0


def test_failed_up_stops_what_it_started(topo_dir: Path) -> None:
    (topo_dir / "nodes").mkdir(parents=True)
    (topo_dir / "nodes" / INDUSTRIES[0].code).write_text("not a directory")  # seeding fails
    up = idnode("up", "--dir", str(topo_dir), *UP_ARGS)
    assert up.returncode == 1 and "exited with status" in up.stderr, up.stderr
    record = json.loads((topo_dir / "topology.json").read_text())
    assert record["state"] == "failed" and record["processes"]
    assert not any(topology.alive(pid, start) for pid, start in pids(record))
    assert not (topo_dir / "running").exists()
    assert idnode("down", "--dir", str(topo_dir)).returncode == 0


def test_down_without_a_topology(tmp_path: Path) -> None:
    assert topology.down(tmp_path / "nothing") == (0, 0.0)
    assert idnode("status", "--dir", str(tmp_path / "nothing")).returncode == 1


# ------------------------------------------------------------------------------------------------
# the secondaries of a large topology


def test_industry_codes_are_stable_and_distinct() -> None:
    codes = topology.industry_codes(400)
    assert len(set(codes)) == 400
    assert codes[: len(INDUSTRIES)] == tuple(i.code for i in INDUSTRIES)
    assert codes[len(INDUSTRIES)] == str(SYNTHETIC_FIRST)
    assert topology.industry_codes(165) == codes[:165]
    names = [industry_by_code(c).name for c in codes]
    assert len(set(names)) == 400
    assert synthetic_industry("101") is None and synthetic_industry("0201") is None
    with pytest.raises(ValueError):
        industry_by_code("1000")


def test_synthetic_industry_data_is_realistic() -> None:
    code = synthetic_codes(40)[-1]
    industry = industry_by_code(code)
    base = INDUSTRIES[(int(code) - SYNTHETIC_FIRST) % len(INDUSTRIES)]
    assert industry.prefix == f"88.{code}" and industry.anchor is None
    assert industry.products == base.products and industry.template == base.template
    assert select_industries(f"{code},steel") == (code, "101")
    spec = seed.SeedSpec(seed=5, identifiers=200, industries=(code,), enterprises_per_industry=3)
    plan = seed.make_plan(spec)
    assert all(e.prefix.startswith(f"88.{code}.") for e in plan.enterprises)
    records = [r for _, r in seed.generate(plan)]
    assert len(records) == 200
    assert {v.type for v in records[0].values} >= {"URL", "PRODUCT_NAME", "MANUFACTURER"}


# ------------------------------------------------------------------------------------------------
# stopping while starting


def _children(pid: int) -> list[tuple[int, str | None]]:
    """The processes whose parent is ``pid``, with their start times."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if stat.rpartition(")")[2].split()[1] == str(pid):
            found.append((int(entry.name), topology.start_time(int(entry.name))))
    return found


def _wait_for(what: str, check: Any, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)
    return found


def test_host_stops_at_once_while_seeding(tmp_path: Path) -> None:
    """A seed far too large to finish: SIGTERM ends the host and its generating process."""
    options = topology.Options(secondaries=1, identifiers_per_node=10**9, log_level="WARNING")
    entries = topology.secondary_entries(tmp_path, options, "127.0.0.1:1")
    spec = tmp_path / "host.spec.json"
    spec.write_text(json.dumps({"nodes": entries, "ports_file": str(tmp_path / "ports.json")}))
    with (tmp_path / "host.log").open("wb") as log:
        host = subprocess.Popen(
            [sys.executable, "-m", "node", "topology", "host", "--spec", str(spec)],
            cwd=ROOT, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        seeding = _wait_for("generating process", lambda: _children(host.pid))
        host.send_signal(signal.SIGTERM)
        assert host.wait(timeout=10) == 0, (tmp_path / "host.log").read_text()
        assert not any(topology.alive(pid, start) for pid, start in seeding)
    finally:
        host.kill()
        host.wait()
