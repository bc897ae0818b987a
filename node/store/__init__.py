"""The store interface every backend implements, and the record it keeps.

Writes go through ``mutate``: the caller passes a pure function from the current record (or None)
to the new record (or ``DELETE``), and the backend runs it atomically inside its write transaction.
That keeps every rule (exists? index taken? case clash?) in the service core while the backend
alone decides how writes are batched and made durable (group commit in SQLite). Homing a prefix
goes through ``home`` the same way: the service says what its admin handle becomes, the backend
writes that and the homed prefix in one transaction.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Final

from protocol.records import HandleValue


@dataclass(frozen=True, slots=True)
class Record:
    """A stored handle: its name as first written and its values in ascending index order."""

    handle: str  #: as written by its creator (case kept)
    values: tuple[HandleValue, ...]  #: ascending index


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE: Final = _Delete()  #: returned by a mutation to delete the record

#: a mutation: current record (None when absent) -> new record, DELETE, or None for "no change"
Mutation = Callable[[Record | None], Record | _Delete | None]
#: the admin handle's part of a homing: (current record or None, whether the prefix is homed
#: anew) -> new record, or None for "no change"
AdminMutation = Callable[[Record | None, bool], Record | None]


class StoreError(Exception):
    """The backend failed (disk full, corrupt file); the request gets ERROR (2), its message
    saying ``reason`` when there is one."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        #: what a client is told went wrong, in a few words ("the disk is full"), or ""
        self.reason = reason


class Store(abc.ABC):
    """Durable storage of handle records and homed prefixes, keyed by comparison key."""

    #: why the storage can no longer be trusted (a read or a write found the file damaged), or
    #: None: the node then says it is not ready (``/readyz`` 503) instead of serving on
    damaged: str | None = None

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or open the storage; after this every call works."""

    @abc.abstractmethod
    async def close(self, timeout: float | None = None) -> None:
        """Finish queued writes and release the storage; with ``timeout``, wait that long at
        most for writes still in progress (never acknowledged ones: their callers are gone)."""

    @abc.abstractmethod
    async def get(self, key: str) -> Record | None:
        """The record stored under ``key``, or None."""

    @abc.abstractmethod
    async def existing(self, keys: Collection[str]) -> set[str]:
        """Which of ``keys`` are stored, read at once however many they are."""

    @abc.abstractmethod
    async def mutate(self, key: str, mutation: Mutation) -> Record | _Delete | None:
        """Apply ``mutation`` atomically and durably; returns what it returned.

        An exception raised by ``mutation`` leaves the record untouched and propagates. Cancelled
        before the store starts it, it is not applied (its caller will never answer).
        """

    @abc.abstractmethod
    async def list_handles(self, prefix: str, offset: int, limit: int) -> tuple[int, list[str]]:
        """Total number of handles under ``prefix`` and one page of them, sorted by key."""

    @abc.abstractmethod
    async def homed_prefixes(self) -> list[str]:
        """Prefixes homed on this node, as first written."""

    @abc.abstractmethod
    async def set_homed(self, prefix: str, homed: bool) -> bool:
        """Home or unhome ``prefix``; False when it already was (or was not) homed."""

    @abc.abstractmethod
    async def home(self, prefix: str, admin_key: str, admin: AdminMutation) -> bool:
        """Home ``prefix`` and apply ``admin`` to the record under ``admin_key``, atomically and
        durably: both or neither, so a crash never leaves a prefix half-homed. ``admin`` gets
        that record (None when absent) and whether ``prefix`` is homed anew; False when it
        already was homed.

        An exception raised by ``admin`` leaves both untouched and propagates.
        """

    @abc.abstractmethod
    async def bulk_load(self, records: Iterable[tuple[str, Record]]) -> int:
        """Insert many new records quickly (seeding); existing keys are replaced."""

    @abc.abstractmethod
    async def identifier_counts(self) -> dict[str, int]:
        """How many handles each homed prefix (as first written) has, exact as of the last
        commit, whichever process wrote them."""

    @abc.abstractmethod
    async def count(self) -> int:
        """How many handles are stored."""
