"""``idnode serve --workers 2``: shared ports, one store, coherent caches, merged metrics, shutdown.

Each test runs a real two-worker node as a subprocess and talks to it over fresh connections (a new
TCP connection or UDP socket per request), so the kernel's SO_REUSEPORT spreading sends requests to
both workers. Coherence is the point: after a write is acknowledged, no worker may answer what it
cached before, whichever transport asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from node.workers import METRICS_INTERVAL_S, MetricsFiles
from protocol.codes import ResponseCode
from protocol.messages import (
    Credential,
    HomePrefixRequest,
    ResolveRequest,
    ResolveResponse,
    Response,
    UnhomePrefixRequest,
)
from tests.node.conftest import (
    PREFIX,
    SECRET,
    NodeProcess,
    basic,
    create,
    http,
    next_request_id,
    tcp_request,
    udp_request,
    value,
)

pytestmark = pytest.mark.timeout(120)
NODE_ADMIN = Credential(f"0.NA/{PREFIX}", 300, SECRET)
WORKERS = ["--workers", "2", "--log-level", "WARNING"]
MISSING = "missing"
NOT_HERE = "not responsible"
FOUND = "found"  #: a record without a value at index 1


def worker_pids(node: NodeProcess) -> list[int]:
    """The parent's worker processes (not multiprocessing's resource tracker)."""
    pids = []
    for child in psutil.Process(node.proc.pid).children():
        with contextlib.suppress(psutil.ZombieProcess, psutil.NoSuchProcess):  # one just dead
            if "resource_tracker" not in " ".join(child.cmdline()):
                pids.append(child.pid)
    return pids


def _spawn(spawn_node: Any, tmp_path: Path) -> NodeProcess:
    node: NodeProcess = spawn_node(tmp_path / "data", extra=WORKERS)
    assert re.search(r" workers=2\b", node.line), node.line
    return node


async def _gather(n: int, one: Callable[[], Awaitable[Any]], concurrency: int = 32) -> list[Any]:
    gate = asyncio.Semaphore(concurrency)

    async def bounded() -> Any:
        async with gate:
            return await one()

    return await asyncio.gather(*(bounded() for _ in range(n)))


def _msgpack_outcome(response: Response) -> str:
    if isinstance(response, ResolveResponse):
        return next((v.data.decode() for v in response.values if v.index == 1), FOUND)
    if response.code == ResponseCode.HANDLE_NOT_FOUND:
        return MISSING
    if response.code == ResponseCode.SERVER_NOT_RESPONSIBLE:
        return NOT_HERE
    return f"code {int(response.code)}"


def outcomes(node: NodeProcess, handle: str, n: int = 60) -> dict[str, list[str]]:
    """What ``n`` resolutions of ``handle`` per transport answered (index 1's data, or why not),
    each over a fresh connection."""

    async def over_http(session: aiohttp.ClientSession) -> str:
        async with session.get(node.url(f"/api/handles/{handle}")) as resp:
            body = await resp.json()
        if resp.status == 200:
            return next((str(v["data"]["value"]) for v in body["values"] if v["index"] == 1), FOUND)
        if body.get("responseCode") == int(ResponseCode.HANDLE_NOT_FOUND):
            return MISSING
        if body.get("responseCode") == int(ResponseCode.SERVER_NOT_RESPONSIBLE):
            return NOT_HERE
        return f"status {resp.status}"

    async def go() -> dict[str, list[str]]:
        connector = aiohttp.TCPConnector(force_close=True)  # one connection per request
        async with aiohttp.ClientSession(connector=connector) as session:
            by_http = await _gather(n, lambda: over_http(session))
        tcp = await _gather(
            n,
            lambda: tcp_request(
                node.ports["tcp"], ResolveRequest(request_id=next_request_id(), handle=handle)
            ),
        )
        udp = await _gather(
            n,
            lambda: udp_request(
                node.ports["udp"], ResolveRequest(request_id=next_request_id(), handle=handle)
            ),
        )
        return {
            "http": by_http,
            "tcp": [_msgpack_outcome(r) for r in tcp],
            "udp": [_msgpack_outcome(r) for r in udp],
        }

    return asyncio.run(asyncio.wait_for(go(), 60))


def assert_all(node: NodeProcess, handle: str, expected: str) -> None:
    got = outcomes(node, handle)
    wrong = {t: [o for o in answers if o != expected] for t, answers in got.items()}
    assert not any(wrong.values()), f"expected only {expected!r}, also got {wrong}"


def served(snapshot: dict[str, Any], transport: str) -> int:
    ops = snapshot["transports"][transport]["ops"].values()
    return sum(o["success"] + sum(o["codes"].values()) for o in ops)


def wait_snapshots(node: NodeProcess, check: Callable[[dict[int, Any]], bool]) -> dict[int, Any]:
    """The workers' published metrics once ``check`` holds (they lag by up to a second; a
    replaced worker publishes once it has started, which a loaded machine slows down)."""
    deadline = time.monotonic() + 30 * METRICS_INTERVAL_S
    while True:
        snaps = MetricsFiles.read_all(node.data_dir)
        if check(snaps) or time.monotonic() > deadline:
            return snaps
        time.sleep(0.1)


def test_listening_line_and_both_workers_serve_every_transport(
    tmp_path: Path, spawn_node: Any
) -> None:
    node = _spawn(spawn_node, tmp_path)
    assert node.ports["tcp"] == node.ports["udp"] and 0 not in node.ports.values()
    create(node, f"{PREFIX}/spread", value(1, "URL", "https://spread/1"))
    got = outcomes(node, f"{PREFIX}/spread", n=100)
    assert all(o == "https://spread/1" for answers in got.values() for o in answers), got

    def both_served(snaps: dict[int, Any]) -> bool:
        return len(snaps) == 2 and all(
            served(s, t) > 0 for s in snaps.values() for t in ("http", "tcp", "udp")
        )

    snaps = wait_snapshots(node, both_served)
    assert both_served(snaps), {
        w: {t: served(s, t) for t in ("http", "tcp", "udp")} for w, s in snaps.items()
    }
    assert node.terminate() == 0


def test_a_write_in_one_worker_is_seen_by_every_worker_at_once(
    tmp_path: Path, spawn_node: Any
) -> None:
    node = _spawn(spawn_node, tmp_path)
    handle = f"{PREFIX}/coherent"
    # a not-found cached in both workers, then created: found everywhere immediately
    assert_all(node, handle, MISSING)
    create(node, handle, value(1, "URL", "https://v/1"))
    assert_all(node, handle, "https://v/1")  # also warms both workers' caches
    snaps = wait_snapshots(
        node, lambda s: len(s) == 2 and all(x["cache"][0] > 0 for x in s.values())
    )
    assert all(s["cache"][0] > 0 for s in snaps.values()), "a worker never answered from its cache"
    for version in range(2, 5):  # modify: never the old value
        create(node, handle, value(1, "URL", f"https://v/{version}"))
        assert_all(node, handle, f"https://v/{version}")
    reply = http(node, "DELETE", f"/api/handles/{handle}", auth=True)
    assert reply.status == 200, reply.body
    assert_all(node, handle, MISSING)  # delete: never the old record
    assert node.terminate() == 0


def test_a_changed_secret_is_not_remembered_by_other_workers(
    tmp_path: Path, spawn_node: Any
) -> None:
    node = _spawn(spawn_node, tmp_path)
    user = f"{PREFIX}/user"
    seckey = {"index": 300, "type": "HS_SECKEY", "data": {"format": "string", "value": "old"}}
    create(node, user, value(1, "URL", "https://u"), seckey)
    old = basic(f"300%3A{user}", "old")
    new = basic(f"300%3A{user}", "new")
    for _ in range(20):  # both workers verify (and remember) the old secret
        assert http(node, "GET", f"/api/handles/{user}", headers=old).status == 200
    seckey["data"] = {"format": "string", "value": "new"}
    create(node, user, value(1, "URL", "https://u"), seckey)
    for _ in range(20):
        reply = http(node, "GET", f"/api/handles/{user}", headers=old)
        assert reply.status != 200, reply.body  # the old secret, remembered nowhere
        assert http(node, "GET", f"/api/handles/{user}", headers=new).status == 200
    assert node.terminate() == 0


def test_a_prefix_homed_in_one_worker_is_served_by_every_worker(
    tmp_path: Path, spawn_node: Any
) -> None:
    node = _spawn(spawn_node, tmp_path)
    other = "88.100.7"
    assert_all(node, f"{other}/ADMIN", NOT_HERE)  # both workers know it is not theirs
    homed = asyncio.run(
        tcp_request(
            node.ports["tcp"],
            HomePrefixRequest(request_id=next_request_id(), prefix=other, credential=NODE_ADMIN),
        )
    )
    assert homed.code == ResponseCode.SUCCESS, homed
    assert_all(node, f"{other}/ADMIN", FOUND)
    assert node.terminate() == 0


def resolutions(node: NodeProcess) -> dict[str, float]:
    """Successful resolutions per transport, as the node's ``/metrics`` counts them."""
    text = http(node, "GET", "/metrics").body.decode()
    pattern = r'idnode_requests_total\{code="1",op="resolution",transport="(\w+)"\} (\S+)'
    return {transport: float(n) for transport, n in re.findall(pattern, text)}


def test_metrics_on_any_worker_add_up_every_worker(tmp_path: Path, spawn_node: Any) -> None:
    node = _spawn(spawn_node, tmp_path)
    create(node, f"{PREFIX}/m", value(1, "URL", "https://m"))
    sent = 150
    outcomes(node, f"{PREFIX}/m", n=sent // 3)

    expected = {"http": sent // 3, "tcp": sent // 3, "udp": sent // 3}
    deadline = time.monotonic() + 3 * METRICS_INTERVAL_S + 2
    while (got := resolutions(node)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == expected
    text = http(node, "GET", "/metrics").body.decode()
    assert re.search(rf'idnode_identifiers\{{prefix="{re.escape(PREFIX)}"\}} 2\.0', text), text
    assert node.terminate() == 0


def test_readyz_counts_the_cache_of_every_worker(tmp_path: Path, spawn_node: Any) -> None:
    """Each worker has its own cache: /readyz, answered by either, sums them (it showed the
    one answering, hits and misses that did not add up to the resolutions made)."""
    node = _spawn(spawn_node, tmp_path)
    create(node, f"{PREFIX}/r", value(1, "URL", "https://r"))
    outcomes(node, f"{PREFIX}/r", n=40)  # 40 per transport, each on a new connection
    deadline = time.monotonic() + 3 * METRICS_INTERVAL_S + 2
    while True:
        seen = [http(node, "GET", "/readyz").json["cache"] for _ in range(6)]
        if all(c["hits"] + c["misses"] == 120 for c in seen) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert all(c["hits"] + c["misses"] == 120 for c in seen), seen
    assert all(0 < c["bytes"] <= c["max_bytes"] for c in seen), seen
    assert node.terminate() == 0


def test_no_total_goes_back_whichever_worker_answers_a_scrape(
    tmp_path: Path, spawn_node: Any
) -> None:
    """Prometheus reads a lower counter as a reset: scrapes right after load, and during
    writes, each on a new connection (so either worker answers), must never see a total go
    down. (A worker published one snapshot and merged a later one: the next scrape through the
    other worker read the published one and went back by the commits in between.)"""
    node = _spawn(spawn_node, tmp_path)
    create(node, f"{PREFIX}/mono", value(1, "URL", "https://m"))
    outcomes(node, f"{PREFIX}/mono", n=60)
    resolutions = re.compile(
        r'idnode_requests_total\{code="1",op="resolution",transport="\w+"\} (\S+)'
    )
    commits = re.compile(r"^idnode_store_fsyncs_total (\S+)", re.M)
    writing = threading.Event()

    def write() -> None:
        n = 0
        while not writing.is_set():
            create(node, f"{PREFIX}/mono-{n}", value(1, "URL", "https://m"))
            n += 1

    writers = [threading.Thread(target=write) for _ in range(4)]
    for t in writers:
        t.start()
    totals = []
    try:
        for _ in range(150):
            text = http(node, "GET", "/metrics").body.decode()
            totals.append(
                (sum(float(n) for n in resolutions.findall(text)), float(commits.findall(text)[0]))
            )
    finally:
        writing.set()
        for t in writers:
            t.join()
    for kind in (0, 1):
        seen = [t[kind] for t in totals]
        assert all(a <= b for a, b in zip(seen, seen[1:], strict=False)), seen
    assert totals[-1][1] > totals[0][1]  # the writes were committed during the scrapes
    assert node.terminate() == 0


def _homing(node: NodeProcess, prefix: str, home: bool = True) -> None:
    kind = HomePrefixRequest if home else UnhomePrefixRequest
    asked = kind(request_id=next_request_id(), prefix=prefix, credential=NODE_ADMIN)
    assert asyncio.run(tcp_request(node.ports["tcp"], asked)).code == ResponseCode.SUCCESS


def _identifier_counts(node: NodeProcess, scrapes: int = 12) -> set[tuple[tuple[str, str], ...]]:
    """The distinct ``idnode_identifiers`` series sets of ``scrapes`` scrapes, each on a new
    connection (either worker may answer)."""
    pattern = re.compile(r'idnode_identifiers\{prefix="([^"]+)"\} (\S+)')
    return {
        tuple(pattern.findall(http(node, "GET", "/metrics").body.decode())) for _ in range(scrapes)
    }


def test_identifier_counts_are_exact_whichever_worker_answers(
    tmp_path: Path, spawn_node: Any
) -> None:
    """Counts come from the store, at once and the same through every worker: homing an
    already homed prefix, or unhoming and homing it again, recounts nothing twice (one worker's
    recount plus the other's creates since its start did), and a prefix homed or unhomed in one
    worker is in or out of every scrape."""
    node = _spawn(spawn_node, tmp_path)
    for n in range(12):  # through both workers (each request a new connection)
        create(node, f"{PREFIX}/again-{n}", value(1, "URL", f"https://a/{n}"))
    other = "88.100.7"
    for _ in range(3):
        _homing(node, PREFIX)
    assert _identifier_counts(node) == {((PREFIX, "13.0"),)}  # twelve, and the ADMIN handle
    _homing(node, PREFIX, home=False)
    _homing(node, PREFIX)
    _homing(node, other)
    assert _identifier_counts(node) == {((PREFIX, "13.0"), (other, "1.0"))}
    _homing(node, other, home=False)
    assert _identifier_counts(node) == {((PREFIX, "13.0"),)}
    assert node.terminate() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_worker(tmp_path: Path, spawn_node: Any, sig: signal.Signals) -> None:
    node = _spawn(spawn_node, tmp_path)
    workers = worker_pids(node)
    assert len(workers) == 2, workers
    assert http(node, "GET", "/healthz").status == 200
    node.proc.send_signal(sig)
    assert node.proc.wait(15) == 0, node.stderr()[-2000:]
    _gone(workers)
    node.close()


def test_kill_9_of_the_parent_takes_the_workers_down(tmp_path: Path, spawn_node: Any) -> None:
    node = _spawn(spawn_node, tmp_path)
    workers = worker_pids(node)
    assert len(workers) == 2, workers
    node.kill()
    _gone(workers)


def test_a_worker_killed_is_replaced_and_no_total_goes_back(
    tmp_path: Path, spawn_node: Any
) -> None:
    """Every core stays in use: a worker that dies unasked is replaced with its id, the other
    serving meanwhile; what the dead one counted stays in the totals."""
    node = _spawn(spawn_node, tmp_path)
    create(node, f"{PREFIX}/kept", value(1, "URL", "https://k"))
    outcomes(node, f"{PREFIX}/kept", n=60)
    first, second = worker_pids(node)

    def resolved() -> float:
        return sum(resolutions(node).values())

    deadline = time.monotonic() + 30 * METRICS_INTERVAL_S  # published within a second, unloaded
    while (before := resolved()) < 3 * 60 and time.monotonic() < deadline:  # 60 per transport
        time.sleep(0.2)
    assert before == 3 * 60
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = worker_pids(node)
        if len(now) == 2 and first not in now:
            break
        time.sleep(0.2)
    assert second in now and len(now) == 2, now
    wait_snapshots(node, lambda snaps: len(snaps) == 2)  # the new one is serving
    assert resolved() == before  # the dead one's answers still counted
    assert_all(node, f"{PREFIX}/kept", "https://k")
    assert "died with exit code -9: starting a new one" in node.stderr()
    assert node.terminate() == 0


def test_the_data_dir_stays_locked_until_the_last_worker_exits(
    tmp_path: Path, spawn_node: Any
) -> None:
    """After a kill -9 of the parent its workers drain for a while (idle msgpack clients keep
    them lingering): a new node started then would serve the directory next to them, each
    answering stale what the other wrote. The lock must outlive the parent."""
    node = _spawn(spawn_node, tmp_path)
    workers = worker_pids(node)
    idle = [socket.create_connection(("127.0.0.1", node.ports["tcp"])) for _ in range(4)]
    try:
        node.proc.kill()
        node.proc.wait(10)
        with (tmp_path / "data" / "idnode.lock").open("a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = False
            except BlockingIOError:
                locked = True
        still = [pid for pid in workers if _running(pid)]
        assert still, "the workers were gone before the check: it proves nothing"
        assert locked, f"workers {still} still serve an unlocked data directory"
    finally:
        for sock in idle:
            sock.close()
    _gone(workers)
    node.close()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie holds no file
    except psutil.NoSuchProcess:
        return False


def _gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            try:  # a zombie is gone too (its parent, the test's child, reaps it)
                if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"worker {pid} still running")
