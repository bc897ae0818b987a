"""The key filter (node.keyfilter): not-found resolutions without a store read, and never a stored
key hidden: not the ones stored before the node started, not the ones written since, in any
worker."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

from node.keyfilter import KeyFilter, filter_bytes
from node.store import Record
from node.store.sqlite import SQLiteStore
from protocol.records import HandleValue
from tests.node.conftest import (
    PREFIX,
    SECRET,
    RunningNode,
    create,
    http,
    make_config,
    resolve,
    running_node,
    value,
)
from tests.node.test_metrics import sample, scrape


def test_filter_holds_every_key_added_and_answers_only_once_built() -> None:
    keys = KeyFilter(1 << 16)
    stored = [f"88.100.1/K-{i}" for i in range(5000)]
    absent = [f"88.100.1/NOT-{i}" for i in range(5000)]
    keys.add(stored)
    assert keys.state == "waiting"
    assert all(map(keys.may_hold, absent))  # not built: everything may be stored
    assert keys.claim() and keys.state == "building"
    assert not keys.claim()  # one builder
    keys.built()
    assert keys.state == "ready"
    assert all(map(keys.may_hold, stored))
    let_through = sum(map(keys.may_hold, absent))
    assert let_through < 50, f"{let_through} of 5,000 absent keys let through"
    keys.add(["88.100.1/LATE"])
    assert keys.may_hold("88.100.1/LATE")


def test_a_filter_of_size_zero_is_off() -> None:
    keys = KeyFilter(0)
    keys.add(["88.100.1/A"])
    assert not keys.claim()
    assert keys.state == "off"
    assert keys.may_hold("88.100.1/ANYTHING")
    assert filter_bytes(0) == 0
    assert filter_bytes(3 * 1024 * 1024) == 2 * 1024 * 1024


def _add_in_child(size: int, array: Any, lock: Any, first: int) -> None:
    KeyFilter(size, array, lock).add(f"K-{i}" for i in range(first, first + 20_000))


def test_processes_adding_at_once_lose_no_key() -> None:
    """Workers set bits of the same bytes at the same time: the lock keeps every bit."""
    ctx = multiprocessing.get_context("spawn")
    shared = KeyFilter.shared(ctx, 4096)  # small: the children's bits share bytes all the time
    procs = [
        ctx.Process(target=_add_in_child, args=(shared.size, shared.array, shared.lock, n * 20_000))
        for n in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    shared.claim()
    shared.built()
    assert all(shared.may_hold(f"K-{i}") for i in range(60_000))


def _wait_ready(node: RunningNode) -> None:
    deadline = time.monotonic() + 20
    while http(node, "GET", "/readyz").json["key_filter"] != "ready":
        assert time.monotonic() < deadline, "the key filter was never built"
        time.sleep(0.02)


def _reads(node: RunningNode) -> float:
    return sample(scrape(node), "idnode_store_operation_duration_seconds_count", operation="read")


def test_keys_stored_before_start_are_found_and_others_cost_no_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    seeded = [f"{PREFIX}/SEEDED-{i}" for i in range(10_000)]

    async def seed() -> None:
        store = SQLiteStore(data_dir)
        await store.open()
        try:
            records = [
                (h.upper(), Record(h, (HandleValue(1, "URL", h.encode(), timestamp=1),)))
                for h in seeded
            ]
            await store.bulk_load(records)
        finally:
            await store.close()

    asyncio.run(seed())
    # pages of 4,096 keys: the build reads three pages and then one short one
    with running_node(make_config(data_dir)) as node:
        _wait_ready(node)
        for handle in seeded[::997] + [seeded[-1]]:
            assert resolve(node, handle).status == 200, handle
        before = _reads(node)
        for i in range(200):  # never asked before: no cached not-found to answer them
            assert resolve(node, f"{PREFIX}/NEVER-{i}").status == 404
        assert _reads(node) - before < 5  # the few the filter lets through


def test_a_key_written_after_the_build_is_found(node: RunningNode) -> None:
    _wait_ready(node)
    handle = f"{PREFIX}/later"
    assert resolve(node, handle).status == 404
    assert create(node, handle, value(1, "URL", "https://later")).status == 201
    reply = resolve(node, handle)
    assert reply.status == 200 and reply.json["values"][0]["data"]["value"] == "https://later"
    assert resolve(node, "88.300/ADMIN").json["responseCode"] == 301  # not homed here
    node.on_node(lambda: node.node.service.home_prefix("88.300", SECRET))
    assert resolve(node, "88.300/ADMIN").status == 200  # homing wrote it: found too


def test_off_when_configured_so(tmp_path: Path) -> None:
    with running_node(make_config(tmp_path / "data", key_filter_bytes=0)) as node:
        assert http(node, "GET", "/readyz").json["key_filter"] == "off"
        assert create(node, f"{PREFIX}/x", value(1, "URL", "https://x")).status == 201
        assert resolve(node, f"{PREFIX}/x").status == 200
        assert resolve(node, f"{PREFIX}/y").status == 404
