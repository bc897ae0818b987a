"""The resolution cache: bounds, TTLs, invalidation, and not-found keys kept apart."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node.cache import ResolutionCache, public_values
from node.coherence import DEFAULT_BUCKETS, Versions, buckets_for
from node.config import Config
from node.metrics import StoreMetrics
from node.service import MAX_PARSED_KEY_CHARS, Service
from node.store import Record
from node.store.sqlite import SQLiteStore
from protocol.records import HandleValue, Reference


def record(name: str, ttl: int = 86400, size: int = 100) -> Record:
    return Record(name, (HandleValue(1, "URL", b"x" * size, ttl=ttl),))


def test_hit_miss_and_ttl() -> None:
    cache = ResolutionCache(1 << 20)
    assert cache.get("A/1", 0.0) is None
    cache.put("A/1", record("a/1", ttl=10), 0.0, cache.generation)
    entry = cache.get("A/1", 5.0)
    assert entry is not None and entry.record == record("a/1", ttl=10)
    assert cache.get("A/1", 10.0) is None  # expired at fetch time + ttl
    assert (cache.hits, cache.misses) == (1, 2)


def test_an_answer_already_expired_is_not_kept() -> None:
    """A TTL of 0 (or an absolute one past) answers its request, but kept it would only push
    live entries out of the bound."""
    cache = ResolutionCache(8 * 2000)
    cache.put("A/HOT", record("a/hot", size=500), 0.0, cache.generation)
    for i in range(40):
        entry = cache.put(f"A/{i}", record(f"a/{i}", ttl=0, size=500), 0.0, cache.generation)
        assert entry.record == record(f"a/{i}", ttl=0, size=500)
    assert len(cache) == 1 and cache.get("A/HOT", 0.0) is not None


def test_bound_evicts_least_recently_used() -> None:
    cache = ResolutionCache(8 * 2000)
    for i in range(40):
        cache.put(f"A/{i}", record(f"a/{i}", size=500), 0.0, cache.generation)
        cache.get("A/0", 0.0)  # keep the first one hot
    assert cache.used_bytes <= cache.max_bytes
    assert cache.get("A/0", 0.0) is not None
    assert cache.get("A/1", 0.0) is None


def test_not_found_keys_cannot_evict_found_records() -> None:
    cache = ResolutionCache(64 * 1024)
    cache.put("A/HOT", record("a/hot"), 0.0, cache.generation)
    for i in range(10_000):  # a scan of identifiers that do not exist
        cache.put(f"A/MISSING-{i}", None, 0.0, cache.generation)
    assert cache.get("A/HOT", 0.0) is not None
    assert cache.used_bytes <= cache.max_bytes


def test_write_during_read_is_not_cached() -> None:
    cache = ResolutionCache(1 << 20)
    generation = cache.generation  # a reader starts
    cache.invalidate("A/1")  # a write commits meanwhile
    cache.put("A/1", record("a/1"), 0.0, generation)
    assert cache.get("A/1", 0.0) is None


def test_encodings_are_made_once_and_dropped_on_invalidate() -> None:
    cache = ResolutionCache(1 << 20)
    entry = cache.put("A/1", record("a/1"), 0.0, cache.generation)
    calls = []

    def encode() -> bytes:
        calls.append(1)
        return b"{}" * 50

    before = cache.used_bytes
    assert cache.encoded("A/1", entry, "json", encode) == b"{}" * 50
    assert cache.encoded("A/1", entry, "json", encode) == b"{}" * 50
    assert len(calls) == 1 and cache.used_bytes == before + 100
    cache.invalidate("A/1")
    assert cache.get("A/1", 0.0) is None and cache.used_bytes == 0


def test_a_burst_of_writes_leaves_most_cached_entries_valid() -> None:
    """Writes bump version buckets that other keys share; a bigger cache gets more buckets,
    so 10,000 writes to other handles leave at least 95% of 20,000 cached entries hits."""
    bound = 96 * 1024 * 1024
    assert buckets_for(16 * 1024 * 1024) == DEFAULT_BUCKETS
    assert buckets_for(bound) >= bound // 256
    cache = ResolutionCache(bound, versions=Versions(buckets_for(bound)))
    for i in range(20_000):
        cache.put(f"A/{i}", record(f"a/{i}"), 0.0, cache.generation)
    for i in range(10_000):
        cache.invalidate(f"A/NEW-{i}")
    hits = sum(cache.get(f"A/{i}", 0.0) is not None for i in range(20_000))
    assert hits >= 19_500


def test_public_values_share_the_record_when_all_are_public() -> None:
    values = record("a/1").values
    assert public_values(values) is values
    private = HandleValue(2, "secret", b"s", permissions=0x1)
    assert [v.index for v in public_values((*values, private))] == [1]


def test_an_entry_keeps_its_record_out_of_the_garbage_collector() -> None:
    """A cached record comes back equal, every field included, from plain tuples the collector
    does not walk: a full cache is hundreds of thousands of entries."""
    ref = Reference("a/2", 7)
    values = (
        HandleValue(1, "URL", b"u", 300, 1, 1764324000, 0xA),
        HandleValue(2, "X", b"x", references=(ref,)),
    )
    cache = ResolutionCache(1 << 20)
    entry = cache.put("A/1", Record("a/1", values), 0.0, 0)
    assert entry.found and entry.record == Record("a/1", values)
    plain = cache.put("A/3", Record("a/3", values[:1]), 0.0, 0)
    gc.collect()
    assert not gc.is_tracked(plain._packed)
    missing = ResolutionCache(1 << 20).put("A/2", None, 0.0, 0)
    assert not missing.found and missing.record is None


def test_parsed_handle_memo_is_bounded_in_characters(tmp_path: Path) -> None:
    """Resolving many long distinct handles cannot grow the parse memo past its bound."""

    async def resolve_all() -> dict[str, object]:
        store = SQLiteStore(tmp_path)
        await store.open()
        try:
            service = Service(Config(data_dir=str(tmp_path)), store)
            await service.start()
            long_suffix = "x" * 2000
            for i in range(6000):  # 12 million characters of handle text, none served here
                assert service.cached_entry(f"88.100.1/{i}-{long_suffix}") is None
            return dict(service._keys)
        finally:
            await store.close()

    kept = asyncio.run(resolve_all())
    assert 0 < len(kept) < 6000
    assert sum(len(text) for text in kept) <= MAX_PARSED_KEY_CHARS


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@contextlib.asynccontextmanager
async def _started(
    tmp_path: Path, clock: _Clock, metrics: StoreMetrics | None = None
) -> AsyncIterator[tuple[Service, SQLiteStore]]:
    """A started service homing 88.100.1 (admin secret "s") on a fresh store, timed by ``clock``."""
    store = SQLiteStore(tmp_path, metrics=metrics)
    await store.open()
    config = Config(data_dir=str(tmp_path), home=["88.100.1"], admin_secret="s")
    service = Service(config, store, clock=clock)
    try:
        await service.start()
        yield service, store
    finally:
        await store.close()


def _renewal_scenario(tmp_path: Path, write: str) -> list[object]:
    """A not-found answer cached at 0 s and asked for at 40, 90 and 130 s; each ask in the
    second half of its 60 s starts a background store read that confirms it. The handle is
    created through the node after the confirmation at 40 s (``write`` "service"), behind its
    back before the ask at 40 s ("store"), or not at all (""). What each ask gives, and whether
    it read the store itself."""
    from protocol.messages import CreateRequest, Credential, ResolveRequest

    handle = "88.100.1/LATER"

    async def main() -> list[object]:
        clock = _Clock()
        async with _started(tmp_path, clock) as (service, store):
            seen: list[object] = []

            async def ask_at(at: float) -> None:
                clock.now = 1_000_000.0 + at
                misses = service.cache.misses
                response = (await service.resolve(ResolveRequest(handle=handle)))[0]
                seen.append((response.code, service.cache.misses - misses))
                if service.renewing is not None:  # the confirmation, if one started
                    await service.renewing

            await ask_at(0)  # read, not found, cached for 60 s
            if write == "store":
                await store.mutate(handle.upper(), lambda current: record(handle))
            await ask_at(40)  # a hit, confirmed in the background
            if write == "service":
                value = HandleValue(1, "URL", b"https://later")
                credential = Credential("88.100.1/ADMIN", 300, "s")
                create = CreateRequest(handle=handle, values=(value,), credential=credential)
                assert (await service.handle(create)).code == 1
            await ask_at(90)
            await ask_at(130)
            return seen

    return asyncio.run(main())


def test_a_not_found_asked_for_steadily_is_renewed_off_the_request_path(tmp_path: Path) -> None:
    # found at 90 s with no read although 60 s had passed; renewed again at 90 s, so 130 s too
    assert _renewal_scenario(tmp_path, "") == [(100, 1), (100, 0), (100, 0), (100, 0)]


def test_a_renewal_never_outlives_a_create(tmp_path: Path) -> None:
    assert _renewal_scenario(tmp_path, "service") == [(100, 1), (100, 0), (1, 1), (1, 0)]


def test_a_renewal_that_finds_the_handle_lets_the_answer_expire(tmp_path: Path) -> None:
    """Written behind the node's back (no invalidation): found once the 60 s are over."""
    assert _renewal_scenario(tmp_path, "store") == [(100, 1), (100, 0), (1, 1), (1, 0)]


def test_not_found_answers_falling_due_together_are_confirmed_by_one_read(tmp_path: Path) -> None:
    """300 not-found answers cached in one burst are asked again at 40 s: one store read confirms
    them all. At 90 s they are still cached, and in their second half again: one more read."""
    from protocol.messages import ResolveRequest

    handles = [f"88.100.1/GONE-{i}" for i in range(300)]

    async def main() -> list[int]:
        metrics, clock = StoreMetrics(), _Clock()
        async with _started(tmp_path, clock, metrics) as (service, _):
            reads = []
            for at in (0, 40, 90):
                clock.now = 1_000_000.0 + at
                before = sum(metrics.read.counts)
                answers = await asyncio.gather(
                    *(service.resolve(ResolveRequest(handle=h)) for h in handles)
                )
                assert {answer[0].code for answer in answers} == {100}
                if service.renewing is not None:
                    await service.renewing
                reads.append(sum(metrics.read.counts) - before)
            return reads

    first, *then = asyncio.run(main())
    assert first >= 300 and then == [1, 1]  # (the first ask also loads the homed prefixes)


def test_renewal_is_due_once_in_the_second_half_only() -> None:
    cache = ResolutionCache(1 << 20, negative_ttl_s=60)
    entry = cache.put("A/GONE", None, 0.0, cache.generation)
    assert not cache.renewal_due(entry, 29.0)
    assert cache.renewal_due(entry, 31.0)
    assert not cache.renewal_due(entry, 32.0)  # already being confirmed
    assert cache.renew("A/GONE", entry, 32.0) and entry.expires_at == 92.0
    found = cache.put("A/1", record("a/1"), 0.0, cache.generation)
    assert not cache.renewal_due(found, 86_399.0)  # found records keep their own TTL


def _hold_forever(lock: Any, held: Any) -> None:
    lock.acquire()
    held.set()
    time.sleep(60)


@pytest.mark.parametrize("dies_holding", [True, False], ids=["holding", "not-holding"])
def test_repair_after_a_worker_died_frees_its_lock_and_makes_every_cache_stale(
    dies_holding: bool,
) -> None:
    """A worker killed inside ``bump`` would leave every other worker blocked at its next write;
    one killed between its commit and its bump would leave them answering what they cached."""
    ctx = multiprocessing.get_context("spawn")
    versions = Versions.shared(ctx, buckets=64)
    versions.bump(3)
    before = [versions[b] for b in range(64)]
    epoch = versions.homed_epoch
    held = ctx.Event()
    child = ctx.Process(
        target=_hold_forever if dies_holding else time.sleep,
        args=((versions.lock, held) if dies_holding else (60,)),
    )
    child.start()
    if dies_holding:
        assert held.wait(30)
    child.kill()
    child.join(10)
    assert versions.repair(wait_s=0.5) is dies_holding
    assert versions.lock.acquire(timeout=1)  # free again
    versions.lock.release()
    assert [versions[b] for b in range(64)] == [v + 1 for v in before]
    assert versions.homed_epoch == epoch + 1
