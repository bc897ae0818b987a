"""The resolution cache: records and their already-encoded answers, bounded in bytes, TTL-aware.

Each entry holds one record (or the fact that it does not exist) and, filled lazily, the encoded
answers transports send for it (REST JSON, msgpack body), so a hot identifier is answered without
re-encoding. Any write to a handle invalidates its entry. ``generation`` lets a reader that went to
the store detect that a write happened meanwhile and not cache what may be stale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from node.store import Record

_ENTRY_OVERHEAD_BYTES = 200  #: dict slot, key and entry object, roughly
_VALUE_OVERHEAD_BYTES = 120  #: a HandleValue object beyond its data


class Entry:
    """One cached handle: ``record`` (None: known not to exist) and its encoded answers."""

    __slots__ = ("record", "expires_at", "encoded", "size")

    def __init__(self, record: Record | None, expires_at: float, size: int) -> None:
        self.record = record
        self.expires_at = expires_at
        self.encoded: dict[object, bytes] = {}
        self.size = size


class ResolutionCache:
    """LRU of ``Entry`` by comparison key, at most ``max_bytes`` (records plus encodings)."""

    def __init__(self, max_bytes: int, negative_ttl_s: float = 60.0) -> None:
        self.max_bytes = max_bytes
        self.negative_ttl_s = negative_ttl_s
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.generation = 0  #: bumped by every invalidation
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float, *, count_miss: bool = True) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= now:
            if entry is not None:
                self._drop(key)
            self.misses += count_miss
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: str, record: Record | None, now: float, generation: int) -> Entry:
        """Cache what the store returned, unless a write happened since ``generation`` was read."""
        if record is None:
            expires, size = now + self.negative_ttl_s, _ENTRY_OVERHEAD_BYTES + len(key)
        else:
            expires = min((v.expires_at(now) for v in record.values), default=now)
            size = _ENTRY_OVERHEAD_BYTES + 2 * len(key)
            size += sum(len(v.data) + len(v.type) + _VALUE_OVERHEAD_BYTES for v in record.values)
        entry = Entry(record, expires, size)
        if generation != self.generation or size > self.max_bytes:
            return entry  # answer from it, but do not keep it
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self.bytes += size
        self._shrink()
        return entry

    def encoded(
        self, key: str, entry: Entry, variant: object, encode: Callable[[], bytes]
    ) -> bytes:
        """The encoded answer ``variant`` of ``entry``, made once and charged to the bound."""
        data = entry.encoded.get(variant)
        if data is None:
            data = encode()
            if self._entries.get(key) is entry:
                entry.encoded[variant] = data
                entry.size += len(data)
                self.bytes += len(data)
                self._shrink()
        return data

    def invalidate(self, key: str) -> None:
        self.generation += 1
        if key in self._entries:
            self._drop(key)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()
        self.bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size

    def _shrink(self) -> None:
        while self.bytes > self.max_bytes and self._entries:
            _, entry = self._entries.popitem(last=False)
            self.bytes -= entry.size
