"""Cache coherence between worker processes: version counters in memory every worker maps.

With ``--workers N`` every worker keeps its own resolution cache and verified-secret memo, so a
write answered by worker A must make worker B stop answering what it cached before. ``Versions``
is an array of 64-bit counters (``DEFAULT_BUCKETS`` of them, plus one slot for the homed-prefix
epoch) in shared memory: a handle's cache key hashes (``zlib.crc32``, spread) to one bucket.

- A writer bumps the key's bucket AFTER its store commit and BEFORE its answer is sent.
- A reader notes the bucket's version BEFORE its store read; what it caches carries that version,
  and a cache hit is valid only while the bucket still holds it (otherwise it is a miss).

So once a client has a write's answer, every worker's next lookup sees a bumped bucket and reads
the store, which holds the commit. A collision (two keys in one bucket) only costs a spurious miss.
Bumps take a lock shared by the workers: an unlocked read-modify-write could lose an increment and,
worse, write an old value back (A reads v, B bumps to v+1, C caches at v+1, D bumps to v+2, A writes
v+1), which would make a stale entry valid again. Reads take no lock: an aligned 8-byte load is
atomic on the machines we run on, and counters only grow (2**64 bumps never wrap in practice).

The array is ``multiprocessing.RawArray`` from the spawn context rather than ``shared_memory``: it
travels to spawned workers as a process argument and needs no name, unlink or resource tracker.
A single process uses the same code with a private array and no lock (one code path, not two).
"""

from __future__ import annotations

import contextlib
import zlib
from multiprocessing.context import SpawnContext
from typing import Any

DEFAULT_BUCKETS = 65536  #: version counters at least; 512 KiB of memory
_CACHE_BYTES_PER_BUCKET = 256  #: a cached handle takes 1-2 KiB: several buckets for each


def buckets_for(cache_max_bytes: int) -> int:
    """Buckets for a cache of this bound: a write then makes few other entries miss spuriously
    (one in ten, on average, when the cache is full of records like the benchmark's)."""
    buckets = DEFAULT_BUCKETS
    while buckets * _CACHE_BYTES_PER_BUCKET < cache_max_bytes:
        buckets *= 2
    return buckets


class Versions:
    """Version counters by bucket, and the homed-prefix epoch; see the module docstring."""

    __slots__ = ("buckets", "array", "lock", "_view", "_epoch_slot")

    def __init__(self, buckets: int = DEFAULT_BUCKETS, array: Any = None, lock: Any = None) -> None:
        self.buckets = buckets
        #: the shared ``RawArray`` (None: private to this process)
        self.array = array
        self.lock = lock
        raw = bytearray(8 * (buckets + 1)) if array is None else array
        self._view = memoryview(raw).cast("B").cast("Q")
        self._epoch_slot = buckets

    @classmethod
    def shared(cls, ctx: SpawnContext, buckets: int = DEFAULT_BUCKETS) -> Versions:
        """Counters to hand to workers: ``attach(v.array, v.lock, v.buckets)`` in each."""
        return cls(buckets, ctx.RawArray("Q", buckets + 1), ctx.Lock())

    def bucket(self, key: str) -> int:
        # CRC-32's low bits cluster for similar keys (PRD-0000001, PRD-0000002...): a Fibonacci
        # multiply spreads all 32 bits, and the high bits of the product times ``buckets`` pick one
        spread = (zlib.crc32(key.encode()) * 0x9E3779B1) & 0xFFFFFFFF
        return (spread * self.buckets) >> 32

    def __getitem__(self, bucket: int) -> int:
        return int(self._view[bucket])

    def bump(self, bucket: int) -> None:
        """Advance ``bucket``: every cached thing that carries its old version is stale."""
        with self.lock if self.lock is not None else contextlib.nullcontext():
            self._view[bucket] += 1

    def bump_key(self, key: str) -> None:
        self.bump(self.bucket(key))

    def repair(self, wait_s: float = 1.0) -> bool:
        """After a worker died unasked: free the lock if it died holding it (True then), and
        advance every counter, the homed epoch too. It may have committed a write and died
        before bumping: no worker may keep answering what it cached before.

        A live holder keeps the lock for a microsecond; one not free after ``wait_s`` belongs to
        the dead (a lock of ``multiprocessing`` may be released by another process).
        """
        stuck = False
        if self.lock is not None:
            stuck = not self.lock.acquire(timeout=wait_s)  # else held by the dead: taken over
        try:
            view = self._view
            for i in range(len(view)):
                view[i] += 1
        finally:
            if self.lock is not None:
                self.lock.release()
        return stuck

    @property
    def homed_epoch(self) -> int:
        """Advanced by every home and unhome, in any worker."""
        return int(self._view[self._epoch_slot])

    def bump_homed(self) -> None:
        self.bump(self._epoch_slot)
