"""The resolution cache: records and their already-encoded answers, bounded in bytes, TTL-aware.

Each entry holds one record (or the fact that it does not exist) and, filled lazily, the encoded
answers transports send for it (REST JSON, msgpack body), so a hot identifier is answered without
re-encoding. Any write to a handle invalidates its entry, in this process and, through the shared
version counters of ``node.coherence``, in every other worker: an entry carries the version of its
key's bucket read before the store read, and is a hit only while the bucket still holds it.
``generation`` (this process) and the bucket version let a reader that went to the store detect
that a write happened meanwhile and not cache what may be stale.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from node.coherence import Versions
from node.store import Record
from protocol.records import HandleValue, new_value

_ENTRY_OVERHEAD_BYTES = 200  #: dict slot, key and entry object, roughly
_VALUE_OVERHEAD_BYTES = 120  #: a HandleValue object beyond its data


#: a record as one flat tuple: its handle, then each value's ``_FIELDS`` fields in order
Packed = tuple[object, ...]
_FIELDS = 8  #: a ``HandleValue``'s fields, all of them, in declaration order (``new_value``)


class Entry:
    """One cached handle: its record (None: known not to exist) and its encoded answers.

    The record is kept packed (``Packed``) and rebuilt when asked for: the garbage collector stops
    tracking a tuple of strings, bytes and ints at its first collection, while a record is about
    eight objects it would walk in every full collection. A full cache holds hundreds of thousands
    of entries, and such a collection took 250 ms. The hot paths answer from ``encoded`` and never
    rebuild it.
    """

    __slots__ = (
        "found",
        "_packed",
        "expires_at",
        "encoded",
        "size",
        "bucket",
        "version",
        "renewing",
    )

    def __init__(
        self, record: Record | None, expires_at: float, size: int, bucket: int, version: int
    ) -> None:
        self.found = record is not None  #: whether the handle exists
        self._packed: Packed | None = None
        if record is not None:
            packed: list[object] = [record.handle]
            for v in record.values:
                packed += (v.index, v.type, v.data, v.ttl, v.ttl_type, v.timestamp)
                packed += (v.permissions, v.references)
            self._packed = tuple(packed)
        self.expires_at = expires_at
        self.encoded: dict[object, bytes] = {}
        self.size = size
        self.bucket = bucket  #: the key's version bucket (``node.coherence``)
        self.version = version  #: the bucket's version read before the store read
        #: a not-found answer's confirmation has started (``renewal_due``); still True after one
        #: that found the handle or failed: the answer then expires at its time
        self.renewing = False

    @property
    def record(self) -> Record | None:
        """The record, rebuilt (a new object each time, equal to the one cached)."""
        packed = self._packed
        if packed is None:
            return None
        values = [new_value(*packed[at : at + _FIELDS]) for at in range(1, len(packed), _FIELDS)]
        return Record(packed[0], tuple(values))  # type: ignore[arg-type]

    def variant(self, encoding: str, asked: str) -> object:
        """The ``encoded`` key of the plain answer in ``encoding`` to handle ``asked``: a record's
        answer names its own handle, so one serves every spelling of it; HANDLE_NOT_FOUND names
        the handle as asked, so each spelling has its own."""
        return encoding if self.found else (encoding, asked)


def public_values(values: tuple[HandleValue, ...]) -> tuple[HandleValue, ...]:
    """The publicly readable ``values`` (what anonymous resolution returns): ``values`` itself
    when all are, the usual case."""
    public = tuple([v for v in values if v.public_read])
    return values if len(public) == len(values) else public


class _LRU:
    """Entries by key in use order, evicted oldest first above ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[str, Entry] = OrderedDict()

    def add(self, key: str, entry: Entry) -> None:
        self.drop(key)
        self.entries[key] = entry
        self.grow(entry.size)

    def grow(self, size: int) -> None:
        self.bytes += size
        while self.bytes > self.max_bytes and self.entries:
            _, old = self.entries.popitem(last=False)
            self.bytes -= old.size

    def drop(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry.size


class ResolutionCache:
    """Found records and their encodings, and (apart, in an eighth of the bound) not-found keys.

    Keeping the two apart means a scan of identifiers that do not exist cannot evict the hot
    records that real traffic resolves.
    """

    def __init__(
        self, max_bytes: int, negative_ttl_s: float = 60.0, versions: Versions | None = None
    ) -> None:
        self.max_bytes = max_bytes
        #: shared with the other workers, or private to this process
        self.versions = versions if versions is not None else Versions()
        self.negative_ttl_s = negative_ttl_s
        self.hits = 0
        self.misses = 0
        self.generation = 0  #: bumped by every invalidation
        self._found = _LRU(max_bytes - max_bytes // 8)
        self._missing = _LRU(max_bytes // 8)

    def __len__(self) -> int:
        return len(self._found.entries) + len(self._missing.entries)

    @property
    def used_bytes(self) -> int:
        return self._found.bytes + self._missing.bytes

    def get(
        self, key: str, now: float, *, count_miss: bool = True, count_hit: bool = True
    ) -> Entry | None:
        tier = self._found
        entry = tier.entries.get(key)
        if entry is None:
            tier = self._missing
            entry = tier.entries.get(key)
        if (
            entry is None
            or entry.expires_at <= now
            or self.versions[entry.bucket] != entry.version  # written since, maybe elsewhere
        ):
            if entry is not None:
                tier.drop(key)
            self.misses += count_miss
            return None
        tier.entries.move_to_end(key)
        self.hits += count_hit
        return entry

    def count_hit(self) -> None:
        """A resolution answered from an entry got with ``count_hit=False``."""
        self.hits += 1

    def renewal_due(self, entry: Entry, now: float) -> bool:
        """Whether a not-found answer just used is in the second half of its time, and nothing
        is confirming it yet: the caller then reads the store and, still absent, ``renew``s it.
        So a not-found asked for steadily stays cached, and the reads that keep it happen off the
        requests' path instead of one per request once it has expired."""
        if entry.found or entry.renewing or entry.expires_at - now > self.negative_ttl_s / 2:
            return False
        entry.renewing = True
        return True

    def renew(self, key: str, entry: Entry, now: float) -> bool:
        """The store, read after ``renewal_due``, still has no ``key``: keep ``entry`` for another
        ``negative_ttl_s``, unless it has left the cache or been written since (then it stays
        invalid: a write bumps its bucket, before or after this)."""
        entry.renewing = False
        if (
            self._missing.entries.get(key) is not entry
            or self.versions[entry.bucket] != entry.version
        ):
            return False
        entry.expires_at = now + self.negative_ttl_s
        return True

    def version(self, key: str) -> int:
        """The version of ``key``'s bucket; read it before the store read, pass it to ``put``."""
        versions = self.versions
        return versions[versions.bucket(key)]

    def put(
        self,
        key: str,
        record: Record | None,
        now: float,
        generation: int,
        version: int | None = None,
    ) -> Entry:
        """Cache what the store returned, unless a write happened since ``generation`` and
        ``version`` (``version(key)``; None: now) were read."""
        versions = self.versions
        bucket = versions.bucket(key)
        current = versions[bucket]
        if version is None:
            version = current
        if record is None:
            expires, size = now + self.negative_ttl_s, _ENTRY_OVERHEAD_BYTES + len(key)
        else:
            expires = min((v.expires_at(now) for v in record.values), default=now)
            size = _ENTRY_OVERHEAD_BYTES + 2 * len(key)
            size += sum(len(v.data) + len(v.type) + _VALUE_OVERHEAD_BYTES for v in record.values)
        entry = Entry(record, expires, size, bucket, version)
        tier = self._found if record is not None else self._missing
        if (
            generation == self.generation
            and version == current
            and size <= tier.max_bytes
            and expires > now  # a TTL of 0, or one already past, would only evict live entries
        ):
            self._drop(key)
            tier.add(key, entry)
        return entry  # when not kept, still good to answer this one request from

    def encoded(
        self, key: str, entry: Entry, variant: object, encode: Callable[[], bytes]
    ) -> bytes:
        """The encoded answer ``variant`` of ``entry``, made once and charged to the bound."""
        data = entry.encoded.get(variant)
        if data is None:
            data = encode()
            tier = self._found if entry.found else self._missing
            if tier.entries.get(key) is entry:
                entry.encoded[variant] = data
                entry.size += len(data)
                tier.grow(len(data))
        return data

    def invalidate(self, key: str) -> None:
        """After a committed write of ``key``, before its answer: here and in every worker."""
        self.versions.bump_key(key)
        self.generation += 1
        self._drop(key)

    def clear(self) -> None:
        self.generation += 1
        self._found = _LRU(self._found.max_bytes)
        self._missing = _LRU(self._missing.max_bytes)

    def _drop(self, key: str) -> None:
        self._found.drop(key)
        self._missing.drop(key)
