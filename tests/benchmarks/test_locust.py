"""The Locust users against a real node: headless ``locust`` runs as subprocesses, judged by their CSV.

One node (``python -m node serve`` on 127.0.0.1, ports 0, two homed prefixes) is seeded over HTTP
with a few handles, one of them too big for a UDP answer, and described by a manifest written here
(the shape ``idnode seed`` writes). Then:

- every user type (REST, msgpack/TCP, msgpack/UDP) runs every operation with no failure, the UDP
  user falls back to TCP on a truncated answer, and the generator CPU summary is printed and saved;
- a manifest whose keys live under a prefix the node does not home makes every user type record
  failures that carry response code 301, and a CPU threshold of 0 flags the generator;
- the step-ladder shape with the open model steps 1, 2, 3 users and stops by itself, the request
  rate stays bounded by the schedule, and scheduled latencies are reported beside the actual ones,
  over two forked worker processes;
- a web server that is not the node answers the not-found share with 404 pages: failures, not
  not-found answers; starts without --host, or with ladder steps of 0 or less, are refused in a line.

The pytest process never imports Locust (its gevent monkey-patching would change every socket here);
the pure workload and manifest modules are tested directly.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from benchmarks.locust.manifest import ManifestError, parse
from benchmarks.locust.workload import (
    NOT_FOUND_SUFFIX,
    KeySpace,
    Workload,
    WorkloadError,
    load_toml,
    parse_mix,
)
from tests.node.conftest import PREFIX, ROOT, SECRET, NodeProcess, basic, http, value

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="locust is not installed (bench extra)"
)

OTHER = "88.100.2"  #: a second homed prefix, for cross-industry lookups
UNHOMED = "88.999.9"  #: a prefix the node does not serve
LOCUSTFILE = "benchmarks/locustfile.py"
LADDER = "benchmarks/locust/ladder.py"
HTTP_TYPES = ("GET", "PUT", "DELETE")
OPERATIONS = {
    "HTTP": [
        ("GET", "resolve"),
        ("GET", "resolve (not found)"),
        ("PUT", "create"),
        ("PUT", "modify"),
        ("DELETE", "delete"),
    ],
    "TCP": [("TCP", n) for n in ("resolve", "resolve (not found)", "create", "modify", "delete")],
    "UDP": [("UDP", n) for n in ("resolve", "resolve (not found)", "create", "modify", "delete")],
}


# ------------------------------------------------------------------------------------------------
# fixtures: one seeded node for the module, manifests


def manifest_for(handles: list[tuple[str, float]], prefixes: list[str]) -> dict[str, Any]:
    return {
        "version": 1,
        "seed": 1,
        "identifiers": len(handles),
        "industries": [{"code": "100", "name": "Test", "prefix": "88.100", "class": "C"}],
        "enterprises": [
            {"prefix": p, "industry": "100", "name": f"Enterprise {p}", "identifiers": 10}
            for p in prefixes
        ],
        "sample": [{"handle": h, "popularity": pop} for h, pop in handles],
        "admin_secret_hint": "the node's --admin-secret",
    }


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, Path]]:
    """A running node with handles under two prefixes, and the manifest describing them."""
    base = tmp_path_factory.mktemp("locust")
    node = NodeProcess(base / "data", extra=["--home", OTHER]).wait_listening()
    try:
        handles: list[tuple[str, float]] = []
        for prefix in (PREFIX, OTHER):
            auth = basic(f"300%3A{prefix}/ADMIN", SECRET)
            for i in range(8):
                handle = f"{prefix}/PRD-{i:04d}"
                body = {"values": [value(1, "URL", f"https://example.com/{handle}")]}
                reply = http(node, "PUT", f"/api/handles/{handle}", body=body, headers=auth)
                assert reply.status == 201, reply.body
                handles.append((handle, 1.0 / (i + 1)))
        # an answer over 1,400 bytes: UDP sends a truncated stub, the client asks over TCP
        big = f"{PREFIX}/BIG-0001"
        body = {"values": [value(1, "URL", "https://example.com/" + "x" * 2000)]}
        auth = basic(f"300%3A{PREFIX}/ADMIN", SECRET)
        assert http(node, "PUT", f"/api/handles/{big}", body=body, headers=auth).status == 201
        handles.append((big, 5.0))  # the most popular key
        path = base / "manifest.json"
        path.write_text(json.dumps(manifest_for(handles, [PREFIX, OTHER])))
        yield node, base
    finally:
        node.terminate()


def run_locust(
    node: NodeProcess,
    out: Path,
    *args: str,
    files: str = LOCUSTFILE,
    timeout: float = 60.0,
) -> tuple[int, str]:
    """``locust --headless`` against ``node``; returns the exit status and the combined output."""
    target = ["--host", node.base_url, "--tcp-port", str(node.ports["tcp"])]
    target += ["--udp-port", str(node.ports["udp"]), "--admin-secret", SECRET]
    return locust_headless(out, *target, *args, files=files, timeout=timeout)


def locust_headless(
    out: Path, *args: str, files: str = LOCUSTFILE, timeout: float = 60.0
) -> tuple[int, str]:
    """``locust --headless`` with ``args``, statistics to ``out``; the exit status and output."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("IDNODE_", "LOCUST_", "PYTEST_"))
    }
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        files,
        "--headless",
        "--csv",
        str(out),
        "--loglevel",
        "INFO",
        *args,
    ]
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace")
        raise AssertionError(f"locust did not stop within {timeout}s:\n{output[-4000:]}") from None
    return done.returncode, done.stdout.decode(errors="replace")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def stats(out: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """(type, name) -> (requests, failures), without the Aggregated row."""
    return {
        (row["Type"], row["Name"]): (int(row["Request Count"]), int(row["Failure Count"]))
        for row in read_csv(Path(f"{out}_stats.csv"))
        if row["Name"] != "Aggregated"
    }


# ------------------------------------------------------------------------------------------------
# runs against the node


def test_every_user_type_succeeds(seeded: tuple[NodeProcess, Path], tmp_path: Path) -> None:
    node, base = seeded
    out = tmp_path / "run"
    rc, output = run_locust(
        node,
        out,
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "5s",
        "--manifest",
        str(base / "manifest.json"),
        "--mix",
        "resolve=60,create=20,modify=10,delete=10",
        "--not-found-share",
        "0.1",
        "--cross-share",
        "0.3",
        "--batch-size",
        "3",
    )
    assert rc == 0, output[-4000:]
    table = stats(out)
    for user, operations in OPERATIONS.items():
        for key in operations:
            requests, failures = table.get(key, (0, 0))
            assert requests > 0, f"{user} recorded no {key}: {sorted(table)}\n{output[-3000:]}"
            assert failures == 0, f"{user} {key} failed {failures} times\n{output[-3000:]}"
    assert sum(f for _, f in table.values()) == 0, table
    assert read_csv(Path(f"{out}_failures.csv")) == []
    # no recursive node configured: the recursive users were left out
    assert not [key for key in table if key[1].startswith("recursive")], sorted(table)
    # the big key: UDP answered with a truncated stub, asked again over TCP
    assert table.get(("UDP", "resolve via TCP"), (0, 0))[0] > 0, sorted(table)
    assert ("TCP", "resolve via TCP") not in table
    # the generator's CPU, per process
    assert "generator CPU local" in output, output[-3000:]
    cpu_rows = read_csv(Path(f"{out}_generator_cpu.csv"))
    assert [r["Process"] for r in cpu_rows] == ["local"]
    assert int(cpu_rows[0]["Samples"]) >= 3


def test_unhomed_prefix_fails_with_301(seeded: tuple[NodeProcess, Path], tmp_path: Path) -> None:
    node, _ = seeded
    manifest = tmp_path / "wrong.json"
    handles = [(f"{UNHOMED}/PRD-{i:04d}", 1.0) for i in range(5)]
    manifest.write_text(json.dumps(manifest_for(handles, [UNHOMED])))
    out = tmp_path / "wrong"
    rc, output = run_locust(
        node,
        out,
        "-u",
        "3",
        "-r",
        "3",
        "-t",
        "3s",
        "--manifest",
        str(manifest),
        "--mix",
        "resolve=100",
        "--cpu-warn-percent",
        "0",
    )
    assert rc == 1, output[-4000:]  # Locust's exit status when requests failed
    table = stats(out)
    for request_type in ("GET", "TCP", "UDP"):
        requests, failures = table.get((request_type, "resolve"), (0, 0))
        assert requests > 0 and failures == requests, (request_type, table)
    failures = read_csv(Path(f"{out}_failures.csv"))
    assert {row["Method"] for row in failures} == {"GET", "TCP", "UDP"}, failures
    for row in failures:
        assert "response code 301 SERVER_NOT_RESPONSIBLE" in row["Error"], row
    assert "WARNING generator CPU saturated" in output, output[-3000:]


class _NotAHandleServer(BaseHTTPRequestHandler):
    """A web server that is not the node: 404 and a page for every path."""

    def do_GET(self) -> None:
        body = b"<html><body>Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_404_from_another_server_is_no_not_found_answer(tmp_path: Path) -> None:
    """--host at the wrong web server: its 404s carry no responseCode 100, so the not-found
    share fails like every other lookup (it used to count them as successful answers)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotAHandleServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        manifest = tmp_path / "manifest.json"
        handles = [(f"{PREFIX}/PRD-{i:04d}", 1.0) for i in range(5)]
        manifest.write_text(json.dumps(manifest_for(handles, [PREFIX])))
        out = tmp_path / "elsewhere"
        args = ["--host", f"http://127.0.0.1:{server.server_address[1]}", "--manifest"]
        args += [str(manifest), "--mix", "resolve=1", "--not-found-share", "1"]
        rc, output = locust_headless(out, *args, "-u", "1", "-r", "1", "-t", "2s", "HttpApiUser")
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 1, output[-4000:]
    requests, failures = stats(out).get(("GET", "resolve (not found)"), (0, 0))
    assert requests > 0 and failures == requests, (requests, failures)
    errors = {row["Error"] for row in read_csv(Path(f"{out}_failures.csv"))}
    assert errors and all("HTTP 404 without a responseCode" in e for e in errors), errors


def test_ladder_open_model_steps_and_stops(
    seeded: tuple[NodeProcess, Path], tmp_path: Path
) -> None:
    node, base = seeded
    out = tmp_path / "ladder"
    rate, step_s, top = 20, 2.0, 3
    rc, output = run_locust(
        node,
        out,
        "--manifest",
        str(base / "manifest.json"),
        "--mix",
        "resolve=90,create=10",
        "--rate-per-user",
        str(rate),
        "--ladder-step-users",
        "1",
        "--ladder-step-time",
        str(step_s),
        "--ladder-max-users",
        str(top),
        "--csv-full-history",
        "--processes",
        "2",
        files=f"{LOCUSTFILE},{LADDER}",
    )
    assert rc == 0, output[-4000:]
    table = stats(out)
    duration = step_s * top
    for user, types in (("HTTP", HTTP_TYPES), ("TCP", ("TCP",)), ("UDP", ("UDP",))):
        rows = {(t, n): count for (t, n), (count, _) in table.items() if t in types}
        actual = sum(c for (_, n), c in rows.items() if not n.endswith(" [scheduled]"))
        scheduled = sum(c for (_, n), c in rows.items() if n.endswith(" [scheduled]"))
        # at most one user of each type, sending at the fixed rate: far below a closed loop
        assert 0 < actual <= rate * duration + 5, (user, rows)
        # every request reported twice: from its send and from its scheduled start
        assert scheduled == actual, (user, rows)
        for (t, n), c in rows.items():
            if not n.endswith(" [scheduled]"):
                assert rows.get((t, n + " [scheduled]")) == c, (user, rows)
    # users stepped up 1, 2, 3 over time, never beyond
    history = read_csv(Path(f"{out}_stats_history.csv"))
    counts = [int(r["User Count"]) for r in history if r["Name"] == "Aggregated"]
    assert max(counts) == top, counts
    assert {1, 2, 3} <= set(counts), counts
    firsts = [counts.index(n) for n in (1, 2, 3)]
    assert firsts == sorted(firsts), counts
    # the master gathered the CPU figures of its two workers
    assert "generator CPU master" in output, output[-3000:]
    processes = {r["Process"] for r in read_csv(Path(f"{out}_generator_cpu.csv"))}
    assert processes == {"master", "worker 0", "worker 1"}, processes


# ------------------------------------------------------------------------------------------------
# the workload model and the manifest, without Locust


def test_a_refused_start_with_processes_ends_every_process(tmp_path: Path) -> None:
    """The master refuses (no secret for a mix that writes) before its workers connect: they end
    with it, instead of waiting a minute for its heartbeat (which held the output pipe open)."""
    manifest = tmp_path / "manifest.json"
    handles = [(f"88.1.1/K{i}", 1.0) for i in range(10)]
    manifest.write_text(json.dumps(manifest_for(handles, ["88.1.1"])))
    args = ("--host", "http://127.0.0.1:9", "--manifest", str(manifest), "--processes", "2")
    status, output = locust_headless(tmp_path / "out", *args, "-u", "1", "-t", "5s", timeout=20)
    assert status == 1 and "cannot start" in output, output[-2000:]


def test_http_user_without_host_is_refused(tmp_path: Path) -> None:
    """Without --host, Locust printed a traceback per HTTP user and exited 0 after no requests."""
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_for([("88.1.1/K0", 1.0)], ["88.1.1"])))
    args = ("--manifest", str(manifest), "--mix", "resolve=1", "-u", "1", "-t", "3s")
    status, output = locust_headless(tmp_path / "out", *args, timeout=20)
    assert status == 1 and "cannot start: HttpApiUser needs" in output, output[-2000:]
    assert "Traceback" not in output, output[-2000:]


@pytest.mark.parametrize(
    ("flag", "given"),
    [("--ladder-step-time", "0"), ("--ladder-step-time", "nan"), ("--ladder-step-users", "-10")],
)
def test_ladder_flags_out_of_range_are_refused(tmp_path: Path, flag: str, given: str) -> None:
    """A step time of 0 or less ran a ladder of 0.1 s steps, a step of 0 users one of 1, silently."""
    status, output = locust_headless(tmp_path / "out", flag, given, files=f"{LOCUSTFILE},{LADDER}")
    assert status == 2 and f"argument {flag}: " in output, output[-2000:]


def small_manifest(prefixes: tuple[str, ...] = ("88.1.1", "88.2.2"), per: int = 50) -> Any:
    handles = [(f"{p}/K{i}", float(per - i)) for p in prefixes for i in range(per)]
    return parse(manifest_for(handles, list(prefixes)))


def test_mix_and_toml(tmp_path: Path) -> None:
    assert parse_mix("resolve=1,delete=2") == {
        "resolve": 1.0,
        "create": 0.0,
        "modify": 0.0,
        "delete": 2.0,
    }
    for bad in ("resolve", "list=3", "resolve=x"):
        with pytest.raises(WorkloadError):
            parse_mix(bad)
    with pytest.raises(WorkloadError):
        Workload().with_overrides({"mix": "resolve=0"})
    with pytest.raises(WorkloadError):
        Workload(not_found_share=1.5)
    toml = tmp_path / "w.toml"
    toml.write_text(
        'mix = {resolve = 70, create = 30}\npopularity = "uniform"\nbatch_size = 4\n'
        'manifest = "seed/manifest.json"\n'
    )
    workload, extra = load_toml(toml)
    assert workload.mix == {"resolve": 70.0, "create": 30.0, "modify": 0.0, "delete": 0.0}
    assert (workload.popularity, workload.batch_size) == ("uniform", 4)
    assert extra["manifest"] == str(tmp_path / "seed" / "manifest.json")
    # flags override the file; unset flags (None) leave it alone
    assert workload.with_overrides({"batch_size": 2, "zipf_s": None}).batch_size == 2
    assert Workload().writes and not Workload(mix={"resolve": 1}).writes
    toml.write_text("batch_size = 0\n")
    with pytest.raises(WorkloadError, match="batch_size"):
        load_toml(toml)
    toml.write_text("zipf = 1.2\n")  # a typo of zipf_s is refused, not ignored
    with pytest.raises(WorkloadError, match="zipf"):
        load_toml(toml)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mix": "resolve=nan"}, "mix weight of resolve"),
        ({"mix": "resolve=1,create=inf"}, "mix weight of create"),
        ({"zipf_s": float("nan")}, "zipf_s"),
        ({"rate_per_user": float("nan")}, "rate_per_user"),
        ({"rate_per_user": float("inf")}, "rate_per_user"),
        ({"request_timeout_s": float("nan")}, "request_timeout_s"),
        ({"not_found_share": float("nan")}, "not_found_share"),
    ],
)
def test_non_finite_numbers_are_refused(settings: dict[str, Any], message: str) -> None:
    """A NaN rate used to start the run and crash every user; an infinite one ran a closed loop
    reported as open."""
    with pytest.raises(WorkloadError, match=message):
        Workload().with_overrides(settings)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('mix = {resolve = "x"}', "mix weight of resolve"),  # was a ValueError traceback
        ("mix = {resolve = 1, create = true}", "mix weight of create"),
        ("mix = 5", "mix must be a table"),
        ("batch_size = 2.5", "batch_size must be a whole number"),  # was a crash in every task
        ("batch_size = true", "batch_size must be a whole number"),
        ("not_found_share = true", "not_found_share"),
        ('zipf_s = "1.2"', "zipf_s must be a finite number"),
        ("manifest = 5", "manifest must be a path"),
        ("request_timeout = 1\nrequest_timeout_s = 2", "one setting"),
    ],
)
def test_workload_file_wrong_types_are_refused(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "w.toml"
    toml.write_text(text + "\n")
    with pytest.raises(WorkloadError, match=message):
        load_toml(toml)


def test_workload_file_takes_the_flag_names(tmp_path: Path) -> None:
    """The README and --help say the file's keys are the flags' names with underscores:
    ``request_timeout`` (``--request-timeout``) was refused as an unknown setting."""
    toml = tmp_path / "w.toml"
    toml.write_text("request_timeout = 0.5\n")
    assert load_toml(toml)[0].request_timeout_s == 0.5
    toml.write_text("request_timeout_s = 0.25\n")  # the field's name still works
    assert load_toml(toml)[0].request_timeout_s == 0.25


def test_picker_shares_and_popularity() -> None:
    manifest = small_manifest()
    workload = Workload(not_found_share=0.2, cross_share=0.25, zipf_s=1.2)
    space = KeySpace(manifest, workload)
    assert space.homes == ("88.1.1", "88.2.2")
    picker = space.picker("88.1.1", random.Random(5))
    draws = [picker.lookup() for _ in range(20000)]
    missing = [h for h, found in draws if not found]
    assert all(NOT_FOUND_SUFFIX in h for h in missing)
    assert 0.18 < len(missing) / len(draws) < 0.22
    found = [h for h, ok in draws if ok]
    cross = sum(1 for h in found if not h.startswith("88.1.1/"))
    assert 0.22 < cross / len(found) < 0.28
    # Zipf: the most popular key of the home prefix is drawn far more often than the least
    counts = Counter(found)
    assert counts["88.1.1/K0"] > 10 * max(counts["88.1.1/K49"], 1)
    ops = Counter(picker.operation() for _ in range(20000))
    assert 0.88 < ops["resolve"] / 20000 < 0.92 and ops["create"] > ops["delete"] > 0
    fresh = {picker.fresh() for _ in range(100)}
    assert len(fresh) == 100 and all(h.startswith("88.1.1/LOAD-") for h in fresh)
    # uniform: every key about as likely
    uniform = KeySpace(manifest, Workload(popularity="uniform", not_found_share=0, cross_share=0))
    flat = uniform.picker("88.2.2", random.Random(1))
    picks = Counter(flat.lookup()[0] for _ in range(10000))
    assert set(picks) == {f"88.2.2/K{i}" for i in range(50)}
    assert max(picks.values()) < 2.5 * min(picks.values())
    # a single-prefix manifest has nothing "cross": lookups stay home rather than failing
    lone = KeySpace(small_manifest(("88.3.3",)), Workload(cross_share=1.0, not_found_share=0))
    assert lone.picker("88.3.3").lookup()[0].startswith("88.3.3/")


def test_manifest_checks() -> None:
    good = manifest_for([("88.1.1/A", 1.0)], ["88.1.1", "88.7.7"])
    manifest = parse(good)
    assert manifest.prefixes == ("88.1.1", "88.7.7") and manifest.seed == 1
    # a key's prefix missing from the enterprise list is still a prefix
    assert parse({**good, "enterprises": []}).prefixes == ("88.1.1",)
    for broken in (
        {**good, "version": 2},
        {**good, "sample": []},
        {**good, "sample": [{"handle": "no-slash"}]},
        {**good, "sample": [{"handle": "88.1/A", "popularity": -1}]},
        [],
    ):
        with pytest.raises(ManifestError):
            parse(broken)


def test_no_locust_in_this_process() -> None:
    """Locust monkey-patches sockets with gevent on import: the test process must not import it."""
    assert "locust" not in sys.modules and "gevent.monkey" not in sys.modules
