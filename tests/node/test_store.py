"""The store contract (node.store.Store), run against every backend.

``backend`` is parametrized by name; add ``"postgres"`` to ``BACKENDS`` (and a branch to
``_make_store``) when that backend exists, and every test here runs against it too.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from node.store import DELETE, Record, Store, StoreError
from node.store.sqlite import SQLiteStore
from protocol.records import HandleValue, Reference

T = TypeVar("T")

BACKENDS = ["sqlite"]


class Refused(Exception):
    """Raised by test mutations to refuse a change."""


def _make_store(backend: str, data_dir: Path) -> Store:
    if backend == "sqlite":
        return SQLiteStore(data_dir)
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def open_store(backend: str, tmp_path: Path) -> Callable[..., Any]:
    """``open_store(fn)`` runs ``await fn(store)`` on a freshly opened store, then closes it."""

    def run(fn: Callable[[Store], Awaitable[T]], data_dir: Path | None = None) -> T:
        async def main() -> T:
            store = _make_store(backend, data_dir or tmp_path / "data")
            await store.open()
            try:
                return await asyncio.wait_for(fn(store), 60)
            finally:
                await store.close()

        return asyncio.run(main())

    return run


def rec(handle: str, *values: tuple[int, str, str]) -> Record:
    return Record(
        handle, tuple(HandleValue(i, t, d.encode(), timestamp=1_700_000_000) for i, t, d in values)
    )


def put(record: Record) -> Callable[[Record | None], Record]:
    return lambda current: record


def create(record: Record) -> Callable[[Record | None], Record]:
    def mutation(current: Record | None) -> Record:
        if current is not None:
            raise Refused("exists")
        return record

    return mutation


def _integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_get_missing_is_none(open_store: Any) -> None:
    async def fn(store: Store) -> Any:
        return await store.get("88.100.1/NOPE")

    assert open_store(fn) is None


def test_existing_names_the_stored_keys_among_many(open_store: Any) -> None:
    async def fn(store: Store) -> tuple[set[str], set[str]]:
        for key in ("P/A", "P/B/C"):
            await store.mutate(key, put(rec(key.lower(), (1, "URL", "u"))))
        asked = ["P/A", "P/B/C", "P/MISSING", 'P/"QUOTED"', *(f"P/N{i}" for i in range(3000))]
        return await store.existing(asked), await store.existing([])

    assert open_store(fn) == ({"P/A", "P/B/C"}, set())


def test_mutate_get_roundtrip_keeps_every_field(open_store: Any) -> None:
    value = HandleValue(
        7,
        "URL",
        b"https://example.org/\xe4",
        ttl=3600,
        ttl_type=1,
        timestamp=1_700_000_123,
        permissions=0xC,
        references=(Reference("88.100.1/other", 3), Reference("0.NA/88.100.1", 200)),
    )
    record = Record("88.100.1/MixedCase", (HandleValue(1, "EMAIL", b"a@b.c"), value))

    async def fn(store: Store) -> Any:
        returned = await store.mutate("88.100.1/MIXEDCASE", put(record))
        return returned, await store.get("88.100.1/MIXEDCASE")

    returned, got = open_store(fn)
    assert returned == record
    assert got == record
    assert got.handle == "88.100.1/MixedCase"  # case as written is kept


def test_values_come_back_in_ascending_index(open_store: Any) -> None:
    record = rec("88.100.1/o", (30, "C", "c"), (1, "A", "a"), (20, "B", "b"))

    async def fn(store: Store) -> Any:
        await store.mutate("88.100.1/O", put(record))
        return await store.get("88.100.1/O")

    got = open_store(fn)
    assert [v.index for v in got.values] == [1, 20, 30]


def test_mutation_sees_current_and_replaces_whole_record(open_store: Any) -> None:
    seen: list[Record | None] = []

    def change(current: Record | None) -> Record:
        seen.append(current)
        return rec("88.100.1/x", (2, "URL", "two"))

    async def fn(store: Store) -> Any:
        await store.mutate("88.100.1/X", put(rec("88.100.1/x", (1, "URL", "one"), (5, "E", "e"))))
        await store.mutate("88.100.1/X", change)
        return await store.get("88.100.1/X")

    got = open_store(fn)
    assert seen[0] is not None and [v.index for v in seen[0].values] == [1, 5]
    assert got == rec("88.100.1/x", (2, "URL", "two"))  # index 1 and 5 are gone


def test_mutation_returning_none_changes_nothing(open_store: Any) -> None:
    original = rec("88.100.1/x", (1, "URL", "one"))

    async def fn(store: Store) -> Any:
        await store.mutate("88.100.1/X", put(original))
        result = await store.mutate("88.100.1/X", lambda current: None)
        return result, await store.get("88.100.1/X")

    result, got = open_store(fn)
    assert result is None
    assert got == original


def test_delete(open_store: Any) -> None:
    async def fn(store: Store) -> Any:
        await store.mutate("88.100.1/X", put(rec("88.100.1/x", (1, "URL", "one"))))
        await store.mutate("88.100.1/Y", put(rec("88.100.1/y", (1, "URL", "y"))))
        result = await store.mutate("88.100.1/X", lambda current: DELETE)
        return (
            result,
            await store.get("88.100.1/X"),
            await store.get("88.100.1/Y"),
            await store.count(),
        )

    result, x, y, count = open_store(fn)
    assert result is DELETE
    assert x is None
    assert y is not None
    assert count == 1


def test_raising_mutation_leaves_data_untouched(open_store: Any) -> None:
    original = rec("88.100.1/x", (1, "URL", "one"), (2, "EMAIL", "e@x"))

    def explode(current: Record | None) -> Record:
        raise Refused("no")

    async def fn(store: Store) -> Any:
        await store.mutate("88.100.1/X", put(original))
        with pytest.raises(Refused):
            await store.mutate("88.100.1/X", explode)
        with pytest.raises(Refused):
            await store.mutate("88.100.1/NEW", explode)
        # a refused op in the same batch as good ones does not undo them, nor they it
        results = await asyncio.gather(
            store.mutate("88.100.1/A", put(rec("88.100.1/a", (1, "URL", "a")))),
            store.mutate("88.100.1/X", explode),
            store.mutate("88.100.1/B", put(rec("88.100.1/b", (1, "URL", "b")))),
            return_exceptions=True,
        )
        return (
            results,
            await store.get("88.100.1/X"),
            await store.get("88.100.1/NEW"),
            await store.count(),
        )

    results, x, new, count = open_store(fn)
    assert isinstance(results[1], Refused)
    assert x == original
    assert new is None
    assert count == 3  # X, A, B


def test_list_handles_pages_sorted_by_key_and_scoped_to_prefix(open_store: Any) -> None:
    names = ["88.100.1/b", "88.100.1/A", "88.100.1/c/d", "88.100.1/B2", "88.100.1/a:1"]
    others = ["88.100.10/x", "88.100.1.5/y", "88.100/z", "88.100.0/w"]

    async def fn(store: Store) -> Any:
        for name in names + others:
            prefix, _, suffix = name.partition("/")
            await store.mutate(f"{prefix.upper()}/{suffix.upper()}", put(rec(name, (1, "T", "v"))))
        return (
            await store.list_handles("88.100.1", 0, 100),
            await store.list_handles("88.100.1", 1, 2),
            await store.list_handles("88.100.1", 10, 2),
            await store.list_handles("88.100.1", 0, 100)
            == await store.list_handles("88.100.1", 0, 100),
            await store.list_handles("88.999", 0, 10),
        )

    full, page, past, _, empty = open_store(fn)
    by_key = sorted(names, key=lambda n: n.upper())
    assert full == (5, by_key)
    assert page == (5, by_key[1:3])
    assert past == (5, [])
    assert empty == (0, [])


def test_homed_prefixes(open_store: Any) -> None:
    async def fn(store: Store) -> Any:
        first = await store.set_homed("88.100.1", True)
        again = await store.set_homed("88.100.1", True)
        clash = await store.set_homed("88.100.1".lower(), True)
        await store.set_homed("88.7", True)
        listed = await store.homed_prefixes()
        removed = await store.set_homed("88.7", False)
        removed_again = await store.set_homed("88.7", False)
        return first, again, clash, listed, removed, removed_again, await store.homed_prefixes()

    first, again, clash, listed, removed, removed_again, after = open_store(fn)
    assert first is True
    assert again is False
    assert clash is False
    assert sorted(listed) == ["88.100.1", "88.7"]
    assert removed is True
    assert removed_again is False
    assert after == ["88.100.1"]


def test_homed_prefix_keeps_case_as_written(open_store: Any) -> None:
    async def fn(store: Store) -> Any:
        await store.set_homed("88.ab.Cd", True)
        return await store.homed_prefixes()

    assert open_store(fn) == ["88.ab.Cd"]


def test_homing_writes_the_prefix_and_its_admin_handle_together(open_store: Any) -> None:
    """``home`` is one transaction: an admin mutation that is refused, or a record the backend
    cannot store, leaves neither the homed prefix nor the admin handle; one that succeeds leaves
    both, with the prefix counted. Homed anew, the mutation is told so (and may replace what a
    half-done homing left); homed already, it sees the record it made."""
    key = "88.100.1/ADMIN"
    old = rec("88.100.1/ADMIN", (300, "HS_SECKEY", "old"))
    new = rec("88.100.1/ADMIN", (100, "HS_ADMIN", "a"), (300, "HS_SECKEY", "new"))
    unstorable = Record(key, (HandleValue(300, "HS_SECKEY", b"x", timestamp=2**70),))
    seen: list[tuple[Record | None, bool]] = []

    def admin(current: Record | None, anew: bool) -> Record | None:
        seen.append((current, anew))
        return new if anew or current is None else None

    def refuse(current: Record | None, anew: bool) -> Record:
        raise Refused

    async def state(store: Store) -> Any:
        return (
            await store.homed_prefixes(),
            await store.get(key),
            await store.identifier_counts(),
        )

    async def fn(store: Store) -> Any:
        with pytest.raises(Refused):
            await store.home("88.100.1", key, refuse)
        refused = await state(store)
        with pytest.raises((OverflowError, StoreError)):  # SQLite cannot bind it
            await store.home("88.100.1", key, lambda current, anew: unstorable)
        unbound = await state(store)
        await store.mutate(key, put(old))  # what a homing killed between two commits left
        await store.mutate("88.100.1/X", put(rec("88.100.1/x", (1, "URL", "x"))))
        first = await store.home("88.100.1", key, admin)
        homed = await state(store)
        again = await store.home("88.100.1".lower(), key, admin)
        return refused, unbound, first, homed, again, await state(store)

    refused, unbound, first, homed, again, after = open_store(fn)
    assert refused == unbound == ([], None, {})
    assert first is True
    assert homed == (["88.100.1"], new, {"88.100.1": 2})
    assert again is False
    assert after == homed
    assert seen == [(old, True), (new, False)]


def test_bulk_load_and_count(open_store: Any) -> None:
    records = [(f"88.100.1/B{i}", rec(f"88.100.1/b{i}", (1, "URL", f"u{i}"))) for i in range(500)]

    async def fn(store: Store) -> Any:
        await store.mutate("88.100.1/B7", put(rec("88.100.1/b7", (9, "OLD", "old"))))
        loaded = await store.bulk_load(records)
        return loaded, await store.count(), await store.get("88.100.1/B7")

    loaded, count, b7 = open_store(fn)
    assert loaded == 500
    assert count == 500
    assert b7 == rec("88.100.1/b7", (1, "URL", "u7"))  # existing key replaced, old value gone


def test_identifier_counts_are_exact_for_every_store_on_the_file(
    backend: str, open_store: Any, tmp_path: Path
) -> None:
    """Counts per homed prefix live in the store, kept by the commits that change them: two
    stores on one file (as two workers) read the same, exact numbers whichever wrote, and a
    bulk load, a refused write, a re-homing and a reopening keep them exact."""
    data_dir = tmp_path / "shared"
    records = [(f"88.100.2/B{i}", rec(f"88.100.2/b{i}", (1, "URL", f"u{i}"))) for i in range(30)]

    async def fn(first: Store) -> Any:
        second = _make_store(backend, data_dir)
        await second.open()
        try:
            await first.set_homed("88.100.1", True)
            await first.set_homed("88.100.2", True)
            for n in range(5):
                store = (first, second)[n % 2]
                await store.mutate(f"88.100.1/N{n}", put(rec(f"88.100.1/n{n}", (1, "T", "t"))))
            await second.mutate("88.100.1/N0", lambda current: DELETE)
            await first.mutate("88.100.1/N1", put(rec("88.100.1/n1", (2, "T", "again"))))
            with pytest.raises(Refused):
                await first.mutate("88.100.1/N9", _refuse)
            counted = [await s.identifier_counts() for s in (first, second)]
            await second.bulk_load(records)
            loaded = [await s.identifier_counts() for s in (first, second)]
            await first.set_homed("88.100.1", False)
            await second.set_homed("88.100.1", True)
            rehomed = [await s.identifier_counts() for s in (first, second)]
            return counted, loaded, rehomed
        finally:
            await second.close()

    counted, loaded, rehomed = open_store(fn, data_dir)
    assert counted == [{"88.100.1": 4, "88.100.2": 0}] * 2
    assert loaded == rehomed == [{"88.100.1": 4, "88.100.2": 30}] * 2

    async def reopened(store: Store) -> dict[str, int]:
        return await store.identifier_counts()

    assert open_store(reopened, data_dir) == {"88.100.1": 4, "88.100.2": 30}


def _refuse(current: Record | None) -> Record:
    raise Refused


def test_count_counts_handles_not_values(open_store: Any) -> None:
    async def fn(store: Store) -> Any:
        empty = await store.count()
        await store.mutate("88.100.1/A", put(rec("88.100.1/a", (1, "A", "a"), (2, "B", "b"))))
        return empty, await store.count()

    assert open_store(fn) == (0, 1)


def test_group_commit_batches_concurrent_writes(open_store: Any) -> None:
    async def fn(store: Store) -> Any:
        # every backend counts its commits in ``commits`` (metrics, benchmarks)
        counted: Any = store
        await store.mutate("88.100.1/WARM", put(rec("88.100.1/warm", (1, "T", "w"))))
        before = counted.commits
        await asyncio.gather(
            *(
                store.mutate(f"88.100.1/G{i}", put(rec(f"88.100.1/g{i}", (1, "URL", str(i)))))
                for i in range(200)
            )
        )
        commits = counted.commits - before
        got = [await store.get(f"88.100.1/G{i}") for i in range(200)]
        return commits, got, await store.count()

    commits, got, count = open_store(fn)
    assert 1 <= commits < 200, f"200 concurrent writes took {commits} commits"
    assert all(g == rec(f"88.100.1/g{i}", (1, "URL", str(i))) for i, g in enumerate(got))
    assert count == 201


def test_commit_waits_for_more_writes_only_under_concurrent_writes(tmp_path: Path) -> None:
    """After a burst of concurrent writes, writes arriving every 5 ms take fewer commits when
    ``batch_wait_s`` lets a commit wait for more of them. A lone write after a pause never
    waits."""

    async def main(data_dir: Path, wait_s: float) -> tuple[int, float]:
        store = SQLiteStore(data_dir, batch_wait_s=wait_s)
        await store.open()

        def write(name: str) -> Awaitable[Any]:
            key = f"88.100.1/{name}"
            return store.mutate(key, put(rec(key.lower(), (1, "URL", key))))

        try:
            await asyncio.gather(*(write(f"BURST-{i}") for i in range(8)))  # one batch: busy
            before = store.commits
            trickle = []
            for i in range(40):
                trickle.append(asyncio.ensure_future(write(f"TRICKLE-{i}")))
                await asyncio.sleep(0.005)
            await asyncio.gather(*trickle)
            commits = store.commits - before
            await asyncio.sleep(0.1)  # quiet: no longer busy
            started = asyncio.get_running_loop().time()
            await write("LONE")
            return commits, asyncio.get_running_loop().time() - started
        finally:
            await store.close()

    apart, _ = asyncio.run(main(tmp_path / "apart", 0.0))
    waited, lone_s = asyncio.run(main(tmp_path / "waited", 0.5))
    assert waited <= max(3, apart // 2), f"40 writes: {waited} commits waiting, {apart} not"
    assert lone_s < 0.25  # it did not wait for company


def test_concurrent_creates_of_one_key_exactly_one_wins(open_store: Any) -> None:
    async def fn(store: Store) -> Any:
        results = await asyncio.gather(
            *(
                store.mutate("88.100.1/RACE", create(rec("88.100.1/race", (1, "URL", str(i)))))
                for i in range(100)
            ),
            return_exceptions=True,
        )
        return results, await store.get("88.100.1/RACE"), await store.count()

    results, got, count = open_store(fn)
    winners = [r for r in results if isinstance(r, Record)]
    losers = [r for r in results if isinstance(r, Refused)]
    assert len(winners) == 1
    assert len(losers) == 99
    assert got == winners[0]
    assert count == 1


def test_writes_queued_together_apply_in_order(open_store: Any) -> None:
    """Writes that reach the store together (one group commit, where the backend batches) act as
    if applied one after another: each sees what the ones before it left, a refused one changes
    nothing, and homing in the middle sees the writes before it."""

    def append(tag: str) -> Callable[[Record | None], Record]:
        def mutation(current: Record | None) -> Record:
            seen.append((tag, current))
            values = current.values if current is not None else ()
            value = HandleValue(len(values) + 1, "T", tag.encode(), timestamp=1_700_000_000)
            return Record("88.100.1/seq", (*values, value))

        return mutation

    def refuse(current: Record | None) -> Record:
        raise Refused("no")

    seen: list[tuple[str, Record | None]] = []
    key = "88.100.1/SEQ"

    async def fn(store: Store) -> Any:
        counted: Any = store  # every backend counts its commits
        before = counted.commits
        results = await asyncio.gather(
            store.mutate(key, append("a")),
            store.mutate(key, refuse),
            store.mutate(key, append("b")),
            store.mutate("88.100.1/GONE", create(rec("88.100.1/gone", (1, "URL", "g")))),
            store.set_homed("88.200", True),
            store.mutate("88.100.1/GONE", lambda current: DELETE),
            store.mutate(key, lambda current: DELETE),
            store.mutate(key, append("c")),
            store.mutate("88.100.1/NEW", create(rec("88.100.1/new", (1, "URL", "n")))),
            store.mutate("88.100.1/NEW", create(rec("88.100.1/new", (1, "URL", "again")))),
            return_exceptions=True,
        )
        commits = counted.commits - before
        got = [await store.get(k) for k in (key, "88.100.1/GONE", "88.100.1/NEW")]
        return results, got, await store.count(), await store.homed_prefixes(), commits

    results, got, count, homed, commits = open_store(fn)
    assert commits < 10  # some of the ten were committed together
    assert isinstance(results[1], Refused) and isinstance(results[9], Refused)
    assert results[5] is DELETE and results[6] is DELETE
    assert [(tag, r and [v.data for v in r.values]) for tag, r in seen] == [
        ("a", None),
        ("b", [b"a"]),
        ("c", None),
    ]
    assert got == [
        Record("88.100.1/seq", (HandleValue(1, "T", b"c", timestamp=1_700_000_000),)),
        None,
        rec("88.100.1/new", (1, "URL", "n")),
    ]
    assert count == 2
    assert homed == ["88.200"]


def test_persistence_across_close_and_reopen(open_store: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "persist"
    record = rec("88.100.1/keep", (1, "URL", "https://x"), (2, "EMAIL", "a@b"))

    async def write(store: Store) -> None:
        await store.set_homed("88.100.1", True)
        await store.mutate("88.100.1/KEEP", put(record))
        await store.mutate("88.100.1/GONE", put(rec("88.100.1/gone", (1, "T", "t"))))
        await store.mutate("88.100.1/GONE", lambda current: DELETE)

    async def read(store: Store) -> Any:
        return (
            await store.get("88.100.1/KEEP"),
            await store.get("88.100.1/GONE"),
            await store.homed_prefixes(),
            await store.count(),
        )

    open_store(write, data_dir)
    assert open_store(read, data_dir) == (record, None, ["88.100.1"], 1)


def test_sqlite_integrity_check_ok(backend: str, open_store: Any, tmp_path: Path) -> None:
    if backend != "sqlite":
        return  # a sqlite-only check; other backends have their own
    data_dir = tmp_path / "integrity"

    async def fn(store: Store) -> None:
        await asyncio.gather(
            *(
                store.mutate(f"88.100.1/I{i}", put(rec(f"88.100.1/i{i}", (1, "URL", str(i)))))
                for i in range(100)
            )
        )
        await store.mutate("88.100.1/I5", lambda current: DELETE)

    open_store(fn, data_dir)
    assert _integrity(data_dir / "idnode.sqlite3") == "ok"


def test_a_write_cancelled_before_the_store_starts_it_is_not_made(open_store: Any) -> None:
    """Its caller is gone (a client that left, a stop past its grace), so it will never be
    answered: made anyway, it would be a write nobody was told of."""
    started, release = threading.Event(), threading.Event()

    def slow(current: Record | None) -> Record:
        started.set()  # the store is busy with this write...
        release.wait(10)
        return rec("88.100.1/first", (1, "URL", "f"))

    async def fn(store: Store) -> Any:
        first = asyncio.ensure_future(store.mutate("88.100.1/FIRST", slow))
        assert await asyncio.to_thread(started.wait, 10)
        late = asyncio.ensure_future(
            store.mutate("88.100.1/LATE", put(rec("88.100.1/late", (1, "URL", "l"))))
        )
        await asyncio.sleep(0.05)  # ...while this one waits behind it
        late.cancel()
        release.set()
        await first
        after = await store.mutate("88.100.1/AFTER", put(rec("88.100.1/after", (1, "URL", "a"))))
        return late.cancelled(), after, await store.get("88.100.1/LATE"), await store.count()

    cancelled, after, late, count = open_store(fn)
    assert cancelled and after is not None
    assert late is None
    assert count == 2


def test_close_does_not_hang_on_a_writer_waiting_for_another_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds the database's write lock: the store's writer waits (up to SQLite's
    busy timeout) with a write whose caller was cancelled. ``close(timeout)`` gives up on it
    after the timeout, says so, and the write is not made once the lock is free."""
    data_dir = tmp_path / "data"

    async def main() -> threading.Thread:
        store = SQLiteStore(data_dir)
        await store.open()
        writer = next(t for t in threading.enumerate() if t.name == "sqlite-write")
        lock = sqlite3.connect(data_dir / "idnode.sqlite3", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            write = asyncio.ensure_future(
                store.mutate("88.100.1/HELD", put(rec("88.100.1/held", (1, "URL", "h"))))
            )
            await asyncio.sleep(0.2)  # the writer took it and waits for the lock
            write.cancel()
            with caplog.at_level(logging.WARNING, logger="idnode.store"):
                await asyncio.wait_for(store.close(timeout=0.3), 5)  # busy timeout: 10 s
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return writer

    writer = asyncio.run(main())
    writer.join(10)
    assert not writer.is_alive()
    assert "writer still busy" in caplog.text
    conn = sqlite3.connect(data_dir / "idnode.sqlite3")
    try:
        assert conn.execute("SELECT COUNT(*) FROM handles").fetchone() == (0,)
    finally:
        conn.close()
