"""Which keys the store may hold: a Bloom filter every worker maps, so most misses read nothing.

A handle that does not exist is answered from the resolution cache while its not-found answer is
kept (``negative_cache_ttl_s``); after that, or for one never asked before (a client walking
serial numbers), the store would be read. ``KeyFilter`` answers "not stored" for nearly all of
them in a few microseconds, with no store read.

It never hides a stored key: the node adds every key the store already holds once it has started
(``Service.build_key_filter``, in the background, page by page; until that is done the filter
answers "may be stored" for everything), and adds each key it writes BEFORE the write, so a write
acknowledged by any worker is never filtered out. A deleted key stays in, and a false "may be
stored" (about one in 100,000 at a million keys with the default 8 MiB) only costs the store read
every miss cost without the filter.

Bits are set under a lock: two unlocked read-modify-writes of one byte could lose a bit, which
would hide a key. Reads take none: a byte load is atomic and bits are only ever set. The byte
after the bits holds the filter's state (empty, being built, ready).

Like ``node.coherence.Versions``, the filter is a ``multiprocessing.RawArray`` from the spawn
context when workers share it (handed to each as a process argument), and private memory in a
single process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from hashlib import blake2b
from multiprocessing.context import SpawnContext
from typing import Any

HASHES = 4  #: bits per key
_EMPTY, _BUILDING, _READY = 0, 1, 2
_STATES = ("waiting", "building", "ready")


def filter_bytes(requested: int) -> int:
    """The filter size for a configured size: the largest power of two not above it (0: off)."""
    return 1 << (requested.bit_length() - 1) if requested > 0 else 0


class KeyFilter:
    """A Bloom filter of store keys; see the module docstring."""

    __slots__ = ("size", "array", "lock", "_view", "_mask")

    def __init__(self, size: int, array: Any = None, lock: Any = None) -> None:
        self.size = filter_bytes(size)  #: bytes of bits; 0: no filter (everything may be stored)
        #: the shared ``RawArray`` (None: private to this process)
        self.array = array
        self.lock = lock if lock is not None else threading.Lock()
        raw = bytearray(self.size + 1) if array is None else array
        self._view = memoryview(raw).cast("B")
        self._mask = self.size * 8 - 1

    @classmethod
    def shared(cls, ctx: SpawnContext, size: int) -> KeyFilter:
        """A filter to hand to workers: ``KeyFilter(f.size, f.array, f.lock)`` in each."""
        return cls(size, ctx.RawArray("B", filter_bytes(size) + 1), ctx.Lock())

    def _bits(self, key: str) -> list[int]:
        h = int.from_bytes(blake2b(key.encode(), digest_size=8).digest(), "little")
        step = (h >> 32) | 1  # odd: every bit reachable (double hashing)
        mask = self._mask
        return [(h + i * step) & mask for i in range(HASHES)]

    def add(self, keys: Iterable[str]) -> None:
        """Mark ``keys`` as possibly stored; call before writing them."""
        if not self.size:
            return
        view = self._view
        with self.lock:
            for key in keys:
                for bit in self._bits(key):
                    view[bit >> 3] |= 1 << (bit & 7)

    def may_hold(self, key: str) -> bool:
        """False only when ``key`` is certainly not stored (the filter is built and lacks it)."""
        view = self._view
        if view[self.size] != _READY:
            return True
        return all(view[bit >> 3] & (1 << (bit & 7)) for bit in self._bits(key))

    def claim(self) -> bool:
        """Whether the caller is the one to build the filter (the first to ask, once)."""
        with self.lock:
            if not self.size or self._view[self.size] != _EMPTY:
                return False
            self._view[self.size] = _BUILDING
            return True

    def built(self) -> None:
        """Every key stored when building began has been added: answer "not stored" from now."""
        self._view[self.size] = _READY

    @property
    def state(self) -> str:
        """off (no filter), waiting (to be built), building, or ready."""
        return _STATES[self._view[self.size]] if self.size else "off"
