"""The embedded store: SQLite in WAL mode with ``synchronous=FULL`` and group commit.

Tables follow the HANDLE.NET SQL storage: ``handles`` holds one row per value keyed by handle and
index (plus ``hkey``, the case-folded comparison key the node looks records up by), ``nas`` the
homed prefixes. One more, ``na_counts``, holds how many handles each homed prefix has: every
commit that creates or deletes handles updates it in the same transaction, so it is exact
whichever process asks (several workers share one file), and opening the file counts the
prefixes that lack a row.

One writer thread owns the write connection: it takes every queued mutation, runs each in order
on the records as the ones before it left them (a refused one writes nothing), and commits the
whole batch with one fsync, so many concurrent writers share each disk flush and an acknowledged
write is on disk. A write whose caller was cancelled before the writer reached it is not made: it
will never be answered. A batch reads the keys it touches with one statement and writes them back
with one DELETE and one INSERT. Reads run in batches on a reader thread with its own connection,
so SQLite never blocks the event loop.

A read or a commit that SQLite fails raises ``StoreError`` with what a client is told (the disk
is full, the database stayed locked); a failed commit wrote nothing. One that finds the file
damaged also sets ``damaged``, and the node stops saying it is ready. Opening reads a page of
``handles`` too, so a file damaged there is refused at once. A commit first checks that the
database file is still the one opened: one deleted or replaced under the node (its data dir
removed, say) would take every write acknowledged from then on with it, so writes fail instead
and the store is marked ``damaged``.

With ``metrics`` (``node.metrics.StoreMetrics``) the threads time each read and each commit, and
count the commits that wrote (one fsync each).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import functools
import itertools
import json
import logging
import operator
import os
import queue
import sqlite3
import threading
from collections.abc import Collection, Iterable
from pathlib import Path
from sys import intern
from time import perf_counter
from typing import Any

import msgpack

from node.metrics import StoreMetrics
from node.store import AdminMutation, Mutation, Record, Store, StoreError, _Delete
from protocol.identifiers import ascii_upper
from protocol.records import HandleValue, Reference, new_value

log = logging.getLogger("idnode.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS handles (
    hkey TEXT NOT NULL,
    handle TEXT NOT NULL,
    idx INTEGER NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    ttl_type INTEGER NOT NULL,
    ttl INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    refs BLOB,
    admin_read INTEGER NOT NULL,
    admin_write INTEGER NOT NULL,
    pub_read INTEGER NOT NULL,
    pub_write INTEGER NOT NULL,
    PRIMARY KEY (hkey, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nas (
    na_key TEXT PRIMARY KEY,
    na TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS na_counts (
    na_key TEXT PRIMARY KEY,
    handles INTEGER NOT NULL
) WITHOUT ROWID;
"""

#: a record's columns, as ``_record`` takes them
_COLUMNS = (
    "handle, idx, type, data, ttl_type, ttl, timestamp, refs,"
    " admin_read, admin_write, pub_read, pub_write"
)
_SELECT = f"SELECT {_COLUMNS} FROM handles WHERE hkey = ? ORDER BY idx"
_INSERT = "INSERT OR REPLACE INTO handles VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_COUNT_UNDER = "SELECT COUNT(DISTINCT hkey) FROM handles WHERE hkey >= ? AND hkey < ?"
#: handles under the prefix ``nas.na_key`` (in a query on ``nas``)
_COUNT_NA = (
    "(SELECT COUNT(DISTINCT hkey) FROM handles"
    " WHERE hkey >= nas.na_key || '/' AND hkey < nas.na_key || '0')"
)
#: ``na_counts`` rows for homed prefixes that lack one: counted (a database file from before the
#: table, or after a bulk load, which drops the rows of the prefixes it loaded)
_COUNT_MISSING = (
    f"INSERT INTO na_counts SELECT na_key, {_COUNT_NA}"
    " FROM nas WHERE na_key NOT IN (SELECT na_key FROM na_counts)"
)
_COUNT_DELTA = "UPDATE na_counts SET handles = handles + ? WHERE na_key = ?"
_STOP = object()
DISK_FULL = "the disk is full"  #: a full disk, as clients and the start-up refusal say it
#: what a client is told of SQLite's failures, by primary result code (others: nothing more)
_REASONS = {
    sqlite3.SQLITE_FULL: DISK_FULL,
    sqlite3.SQLITE_BUSY: "the database stayed locked by another connection",
    sqlite3.SQLITE_READONLY: "the database cannot be written",
    sqlite3.SQLITE_IOERR: "a disk I/O error",
    sqlite3.SQLITE_CORRUPT: "the database file is damaged",
    sqlite3.SQLITE_NOTADB: "the database file is damaged",
}
_DAMAGED = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_BUSY_BATCH = 4  #: a batch of this many writes means concurrent writers (see ``batch_wait_s``)
_BUSY_S = 0.01  #: ...if it was committed this recently


def _add_na(conn: sqlite3.Connection, prefix: str) -> bool:
    """Add ``prefix`` to ``nas``; False when it (in any case) is there already."""
    cur = conn.execute("INSERT OR IGNORE INTO nas VALUES (?, ?)", (ascii_upper(prefix), prefix))
    return cur.rowcount > 0


def _count_na(conn: sqlite3.Connection, key: str) -> None:
    """Count the handles under the prefix ``key``, homed anew, into ``na_counts``."""
    conn.execute(
        f"INSERT OR REPLACE INTO na_counts SELECT na_key, {_COUNT_NA} FROM nas WHERE na_key = ?",
        (key,),
    )


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    if not readonly:
        # A write, whether or not a count is missing: SQLite opens a file it may not write
        # read-only without a word, and the schema's CREATE ... IF NOT EXISTS writes nothing.
        # Refused here, not at the first request.
        conn.execute(_COUNT_MISSING)
        # Reading the schema touches no page of ``handles``: a damaged root page would
        # otherwise start a node that fails every request. (Damage deeper in is found when a
        # request reads it: see ``SQLiteStore.damaged``.)
        conn.execute("SELECT 1 FROM handles LIMIT 1").fetchall()
    return conn


def _file_id(path: Path) -> tuple[int, int] | None:
    """Which file ``path`` names (device, inode), or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _rows(key: str, record: Record) -> list[tuple[Any, ...]]:
    rows = []
    for v in record.values:
        refs = msgpack.packb([[r.handle, r.index] for r in v.references]) if v.references else None
        p = v.permissions
        rows.append(
            (
                key,
                record.handle,
                v.index,
                v.type,
                v.data,
                v.ttl_type,
                v.ttl,
                v.timestamp,
                refs,
                (p >> 3) & 1,
                (p >> 2) & 1,
                (p >> 1) & 1,
                p & 1,
            )
        )
    return rows


#: TTLs and timestamps repeat across values and records: one int object each (28 bytes saved per
#: use) for as long as the cache keeps the values; cleared when it grows past its bound
_ints: dict[int, int] = {}
_MAX_INTS = 4096


def _record(rows: list[tuple[Any, ...]]) -> Record | None:
    if not rows:
        return None
    values = []
    ints = _ints
    if len(ints) > _MAX_INTS:
        ints.clear()
    for _, idx, type_, data, ttl_type, ttl, ts, refs, ar, aw, pr, pw in rows:
        references: tuple[Reference, ...] = ()
        if refs:
            references = tuple(Reference(h, i) for h, i in msgpack.unpackb(refs))
        perms = (ar << 3) | (aw << 2) | (pr << 1) | pw
        # types repeat across records: one string each, not one per cached value
        ttl = ints.setdefault(ttl, ttl)
        ts = ints.setdefault(ts, ts)
        values.append(new_value(idx, intern(type_), data, ttl, ttl_type, ts, perms, references))
    return Record(rows[0][0], tuple(values))


def _read(conn: sqlite3.Connection, key: str) -> Record | None:
    return _record(conn.execute(_SELECT, (key,)).fetchall())


#: ``hkey`` is one of the keys of a JSON array (one parameter however many keys)
_KEY_IN = "hkey IN (SELECT value FROM json_each(?))"
_SELECT_MANY = f"SELECT hkey, {_COLUMNS} FROM handles WHERE {_KEY_IN} ORDER BY hkey, idx"
_EXISTING = f"SELECT DISTINCT hkey FROM handles WHERE {_KEY_IN}"


def _read_many(conn: sqlite3.Connection, keys: Iterable[str]) -> dict[str, Record | None]:
    """The record of each of ``keys`` (None when absent), read with one statement."""
    found: dict[str, Record | None] = dict.fromkeys(keys)
    rows = conn.execute(_SELECT_MANY, (json.dumps(list(found)),)).fetchall()
    for key, group in itertools.groupby(rows, operator.itemgetter(0)):
        found[key] = _record([row[1:] for row in group])
    return found


# -- bulk loading (seeding) ----------------------------------------------------------------------
#
# SQLite spends about 1.5 us on each value row; binding thirteen parameters per row from Python
# would cost as much again. So a bulk load groups records by *shape* (each value's index, type, TTL
# and permissions, which seeded records share) and inserts a whole record with one statement in
# which those are literals: only key, handle, timestamp and each value's data are bound.

#: records ready to insert, as ``prepare_bulk`` makes them: the keys (each once), then
#: ``(shape, rows)`` groups. A shape (``bulk_shape``) is each value's (index, type, ttl type, ttl,
#: permissions), and its rows are ``(key, handle, timestamp, data of each value...)``; shape None:
#: the rows are ``handles`` rows, one per value. Only tuples, lists, str, bytes and ints, so
#: ``marshal`` carries it from a generating process to the loading one.
BulkRows = tuple[list[str], list[tuple[Any, list[tuple[Any, ...]]]]]
Shape = tuple[tuple[int, str, int, int, int], ...]

_MAX_SHAPE_VALUES = 64  #: a record with more values goes one row per value
#: page cache of a bulk load (KiB): a chunk's new pages stay in memory until its commit instead of
#: being spilled to the WAL early; the connection's usual size comes back after each chunk
_BULK_CACHE_KIB = 128 * 1024
_ANY_IN_RANGE = "SELECT 1 FROM handles WHERE hkey >= ? AND hkey <= ? LIMIT 1"
_DELETE = "DELETE FROM handles WHERE hkey = ?"


_SHAPE_OF = operator.attrgetter("index", "type", "ttl_type", "ttl", "permissions")
_STAMP = operator.attrgetter("timestamp")
_REFERENCES = operator.attrgetter("references")
_DATA = operator.attrgetter("data")
_printable: dict[Shape, bool] = {}  #: shapes seen, and whether every type can be a SQL literal


def bulk_shape(values: tuple[HandleValue, ...]) -> Shape | None:
    """Each value's (index, type, ttl type, ttl, permissions), or None when the record needs the
    general path: no values, too many, references, or values with different timestamps."""
    if not values or len(values) > _MAX_SHAPE_VALUES or any(map(_REFERENCES, values)):
        return None
    stamps = set(map(_STAMP, values))
    return tuple(map(_SHAPE_OF, values)) if len(stamps) == 1 else None


def _literal_types(shape: Shape) -> bool:
    """Every type of ``shape`` can be a SQL string literal (remembered: shapes repeat)."""
    known = _printable.get(shape)
    if known is None:
        if len(_printable) > 4096:
            _printable.clear()
        known = _printable[shape] = all(t.isprintable() for _, t, _, _, _ in shape)
    return known


@functools.lru_cache(maxsize=1024)
def _shape_sql(shape: Shape, records: int = 1) -> str:
    """INSERT of ``records`` records of ``shape``, their rows' parameters one after the other."""
    rows = []
    width = 3 + len(shape)
    for at in range(0, records * width, width):
        for n, (index, type_, ttl_type, ttl, perms) in enumerate(shape):
            if not (isinstance(type_, str) and type_.isprintable()):
                raise ValueError(f"value type {type_!r} cannot be a SQL literal")
            literal = "'" + type_.replace("'", "''") + "'"
            bits = ",".join(str((int(perms) >> shift) & 1) for shift in (3, 2, 1, 0))
            rows.append(
                f"(?{at + 1},?{at + 2},{int(index)},{literal},?{at + n + 4},"
                f"{int(ttl_type)},{int(ttl)},?{at + 3},NULL,{bits})"
            )
    return "INSERT OR REPLACE INTO handles VALUES " + ",".join(rows)


def prepare_bulk(records: Iterable[tuple[str, Record]]) -> BulkRows:
    """Turn ``(key, record)`` pairs into ``BulkRows``; pure, so any process may run it.

    A key given twice keeps its later record. Keys come out sorted: SQLite appends in key order
    much faster than it inserts at random places.
    """
    latest = dict(records)
    keys = sorted(latest)
    groups: dict[Shape | None, list[tuple[Any, ...]]] = {None: []}
    last: Shape | None = None  # neighbours mostly share a shape: compare before hashing
    same: list[tuple[Any, ...]] = []
    for key in keys:
        record = latest[key]
        values = record.values
        shape = bulk_shape(values)
        if shape is not None and (shape == last or _literal_types(shape)):
            if shape != last:
                last, same = shape, groups.setdefault(shape, [])
            row = [key, record.handle, values[0].timestamp]
            row.extend(map(_DATA, values))
            same.append(tuple(row))
        else:
            groups[None].extend(_rows(key, record))
    return keys, [(shape, rows) for shape, rows in groups.items() if rows]


def bulk_records(batch: BulkRows) -> list[tuple[str, Record]]:
    """The ``(key, record)`` pairs of ``batch``, in key order: the inverse of ``prepare_bulk``."""
    found: dict[str, Record] = {}
    for shape, rows in batch[1]:
        if shape is None:
            for key, group in itertools.groupby(rows, operator.itemgetter(0)):
                record = _record([r[1:] for r in group])
                if record is not None:
                    found[key] = record
            continue
        for key, handle, stamp, *data in rows:
            values = tuple(
                HandleValue(index, type_, d, ttl, ttl_type, stamp, permissions)
                for (index, type_, ttl_type, ttl, permissions), d in zip(shape, data, strict=True)
            )
            found[key] = Record(handle, values)
    return [(key, found[key]) for key in batch[0] if key in found]


def _load(conn: sqlite3.Connection, batch: BulkRows) -> int:
    keys, groups = batch
    if not keys:
        return 0
    # every statement first (a bad shape fails here, before anything is written)
    plan: list[tuple[str, list[tuple[Any, ...]]]] = []
    for shape, rows in groups:
        if shape is None:
            plan.append((_INSERT, rows))
            continue
        # Two records per statement: about a fifth faster than one (fewer steps, resets and
        # GIL round trips); more per statement is slower again.
        shape = tuple(shape)
        plan.append(
            (_shape_sql(shape, 2), [a + b for a, b in zip(rows[::2], rows[1::2], strict=False)])
        )
        if len(rows) % 2:
            plan.append((_shape_sql(shape), rows[-1:]))
    try:
        # Replacing means deleting each key's old values first. A fresh load (seeding) writes keys
        # nothing holds yet: one probe of each prefix's key range spares it a DELETE per key.
        ordered = sorted(keys)
        start = 0
        while start < len(ordered):
            prefix = ordered[start].partition("/")[0]
            end = bisect.bisect_left(ordered, prefix + "0", start)  # '0' follows '/'
            if conn.execute(_ANY_IN_RANGE, (ordered[start], ordered[end - 1])).fetchone():
                conn.executemany(_DELETE, [(k,) for k in ordered[start:end]])
            # counted again when a store next opens: counting at every load would cost more
            # than the load (seeding loads a prefix in many calls)
            conn.execute("DELETE FROM na_counts WHERE na_key = ?", (prefix,))
            start = end
        for sql, params in plan:
            if params:
                conn.executemany(sql, params)
    except sqlite3.Error:
        raise
    except Exception as exc:  # a bad parameter (an int over 64 bits...): fail the transaction
        raise sqlite3.DatabaseError(f"bulk load failed: {exc!r}") from exc
    return len(keys)


def _bulk(conn: sqlite3.Connection, batch: BulkRows) -> int:
    (usual,) = conn.execute("PRAGMA cache_size").fetchone()
    conn.execute(f"PRAGMA cache_size={-_BULK_CACHE_KIB}")
    try:
        return _load(conn, batch)
    finally:
        # Shrinking never writes a dirty page out early: the commit that follows writes them all.
        conn.execute(f"PRAGMA cache_size={int(usual)}")


class _Op:
    __slots__ = ("key", "mutation", "future", "result", "error")

    def __init__(self, key: str, mutation: Mutation, future: asyncio.Future[Any]) -> None:
        self.key = key
        self.mutation = mutation
        self.future = future
        self.result: Any = None
        self.error: BaseException | None = None


class _BulkOp(_Op):
    """A bulk load. It runs without a savepoint, which would make SQLite copy every page it
    changes to a sub-journal: it checks what it can before writing, and any failure once it has
    written is a database error, which rolls back the whole transaction."""

    __slots__ = ()


def _hand_back(loop: asyncio.AbstractEventLoop, ops: list[_Op]) -> None:
    """``_deliver`` on ``loop``, unless it is gone: a thread given up on by ``close(timeout)``
    may finish after its loop closed (its callers are gone too)."""
    with contextlib.suppress(RuntimeError):  # closed, even between a check and the call
        loop.call_soon_threadsafe(_deliver, ops)


async def _joined(thread: threading.Thread, deadline: float | None) -> bool:
    """Wait for ``thread`` to end, until ``deadline`` (loop time) at most; whether it ended.
    (Polled: a join in an executor thread would hold the loop's shutdown up as long.)"""
    loop = asyncio.get_running_loop()
    while thread.is_alive():
        if deadline is not None and loop.time() >= deadline:
            return False
        await asyncio.sleep(0.005)
    return True


def _deliver(ops: list[_Op]) -> None:
    for op in ops:
        if op.future.done():  # the caller went away (its write made if it had started)
            continue
        if op.error is not None:
            op.future.set_exception(op.error)
        else:
            op.future.set_result(op.result)


class SQLiteStore(Store):
    """SQLite file ``<data_dir>/idnode.sqlite3``; see the module docstring."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        max_batch: int = 512,
        batch_wait_s: float = 0.0,
        metrics: StoreMetrics | None = None,
    ) -> None:
        self.path = Path(data_dir) / "idnode.sqlite3"
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self.metrics = metrics
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._read_queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  #: the database file opened (``_file_id``)
        self.commits = 0  #: transactions committed (group commits; tests count them)
        self._writing = 0  #: ops in the batch the writer is committing (0 between batches)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._write_conn = _connect(self.path)
        self._file = _file_id(self.path)
        self._reader_thread = threading.Thread(
            target=self._read_loop, name="sqlite-read", daemon=True
        )
        self._reader_thread.start()
        self._writer = threading.Thread(target=self._write_loop, name="sqlite-write", daemon=True)
        self._writer.start()

    async def close(self, timeout: float | None = None) -> None:
        """Stop the threads once the writes queued so far are done, then checkpoint and close.

        With ``timeout``, give up after that many seconds on a writer still busy (waiting for
        another connection's lock, up to SQLite's busy timeout, or for a slow disk) instead of
        hanging on it: what it still holds was never acknowledged, so it is left to the thread
        (a write either commits whole or not at all), and a log line says how much that was.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._reader_thread is not None:  # stops while the writer finishes
            self._read_queue.put(_STOP)
        if self._writer is not None:
            self._queue.put(_STOP)
            if not await _joined(self._writer, deadline):
                log.warning(
                    "store closed with its writer still busy after %.1fs (waiting for the"
                    " database lock or the disk): %d writes in progress and %d queued are left"
                    " unconfirmed; none of them was acknowledged",
                    timeout,
                    self._writing,
                    max(self._queue.qsize() - 1, 0),  # less the stop
                )
                # the thread still uses its connection: neither checkpoint nor close it here
                self._write_conn = None
            self._writer = None
        if self._reader_thread is not None:
            if not await _joined(self._reader_thread, deadline):
                log.warning("store closed with a read still running after %.1fs", timeout)
            self._reader_thread = None
        if self._write_conn is not None:
            if deadline is not None:  # readers or another process may hold the checkpoint off
                wait_ms = int(max(deadline - loop.time(), 0.0) * 1000)
                self._write_conn.execute(f"PRAGMA busy_timeout={wait_ms}")
            try:
                self._write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # disk full, file made read-only: the WAL keeps them
                log.warning("could not checkpoint the write-ahead log on close: %s", exc)
            self._write_conn.close()
            self._write_conn = None

    # -- reads ------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        """Serve queued reads in batches: one thread handoff and one loop wake-up per batch."""
        conn = _connect(self.path, readonly=True)
        loop = self._loop
        assert loop is not None
        try:
            while True:
                first = self._read_queue.get()
                if first is _STOP:
                    return
                batch: list[_Op] = [first]
                while len(batch) < 256:
                    try:
                        item = self._read_queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        self._read_queue.put(_STOP)
                        break
                    batch.append(item)
                metrics = self.metrics
                for op in batch:
                    started = perf_counter()
                    try:
                        op.result = op.mutation(conn)  # type: ignore[arg-type]
                    except sqlite3.Error as exc:
                        op.error = self._failed(exc, str(exc))
                    except Exception as exc:
                        op.error = exc
                    if metrics is not None:
                        metrics.read.observe(perf_counter() - started)
                _hand_back(loop, batch)
        finally:
            conn.close()

    async def _run_read(self, fn: Any) -> Any:
        assert self._loop is not None and self._reader_thread is not None, "store is not open"
        future: asyncio.Future[Any] = self._loop.create_future()
        self._read_queue.put(_Op("", fn, future))
        return await future

    async def get(self, key: str) -> Record | None:
        result: Record | None = await self._run_read(lambda conn: _read(conn, key))
        return result

    async def existing(self, keys: Collection[str]) -> set[str]:
        arg = json.dumps(list(keys))

        def work(conn: sqlite3.Connection) -> set[str]:
            return {row[0] for row in conn.execute(_EXISTING, (arg,))}

        result: set[str] = await self._run_read(work)
        return result

    async def list_handles(self, prefix: str, offset: int, limit: int) -> tuple[int, list[str]]:
        low = ascii_upper(prefix) + "/"
        high = ascii_upper(prefix) + "0"  # '0' follows '/' in code point order

        def work(conn: sqlite3.Connection) -> tuple[int, list[str]]:
            (total,) = conn.execute(_COUNT_UNDER, (low, high)).fetchone()
            rows = conn.execute(
                "SELECT handle FROM handles WHERE hkey >= ? AND hkey < ? GROUP BY hkey"
                " ORDER BY hkey LIMIT ? OFFSET ?",
                (low, high, limit, offset),
            ).fetchall()
            return total, [r[0] for r in rows]

        result: tuple[int, list[str]] = await self._run_read(work)
        return result

    async def homed_prefixes(self) -> list[str]:
        def work(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute("SELECT na FROM nas ORDER BY na_key")]

        result: list[str] = await self._run_read(work)
        return result

    async def identifier_counts(self) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(
                conn.execute(  # a prefix bulk-loaded since the file was opened is counted
                    f"SELECT na, COALESCE(handles, {_COUNT_NA}) FROM nas"
                    " LEFT JOIN na_counts USING (na_key) ORDER BY na_key"
                )
            )

        result: dict[str, int] = await self._run_read(work)
        return result

    async def count(self) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT COUNT(DISTINCT hkey) FROM handles").fetchone()
            return int(row[0])

        result: int = await self._run_read(work)
        return result

    # -- writes -----------------------------------------------------------------------------

    async def mutate(self, key: str, mutation: Mutation) -> Record | _Delete | None:
        assert self._loop is not None, "store is not open"
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(_Op(key, mutation, future))
        result: Record | _Delete | None = await future
        return result

    async def set_homed(self, prefix: str, homed: bool) -> bool:
        key = ascii_upper(prefix)

        def run(conn: sqlite3.Connection) -> bool:
            if homed:
                anew = _add_na(conn, prefix)
                if anew:
                    _count_na(conn, key)
                return anew
            cur = conn.execute("DELETE FROM nas WHERE na_key = ?", (key,))
            conn.execute("DELETE FROM na_counts WHERE na_key = ?", (key,))
            return cur.rowcount > 0

        return bool(await self._call_writer(run))

    async def home(self, prefix: str, admin_key: str, admin: AdminMutation) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            anew = _add_na(conn, prefix)
            current = _read(conn, admin_key)
            new = admin(current, anew)
            if new is not None:
                conn.execute(_DELETE, (admin_key,))
                conn.executemany(_INSERT, _rows(admin_key, new))
            if anew:  # counted with the admin handle just written
                _count_na(conn, ascii_upper(prefix))
            elif new is not None and current is None:  # created (``admin`` never deletes)
                conn.execute(_COUNT_DELTA, (1, admin_key.partition("/")[0]))
            return anew

        # one raw op, so one savepoint: a refused ``admin`` (or a record SQLite cannot bind)
        # rolls back the ``nas`` row with it (see _raw)
        return bool(await self._call_writer(run))

    async def bulk_load(self, records: Iterable[tuple[str, Record]]) -> int:
        """Insert many records (seeding) in one transaction; existing keys are replaced.

        ``records`` is consumed in the writer thread. Call it with large chunks (tens of thousands
        of records): each call is one commit, with ``synchronous=FULL`` as every write.
        """

        def run(conn: sqlite3.Connection) -> int:
            return _bulk(conn, prepare_bulk(records))

        return int(await self._call_writer(run, _BulkOp))

    async def bulk_load_prepared(self, batch: BulkRows) -> int:
        """``bulk_load`` of records already turned into rows by ``prepare_bulk`` (possibly in
        another process, so that generating data and loading it use two cores)."""
        return int(await self._call_writer(lambda conn: _bulk(conn, batch), _BulkOp))

    async def _call_writer(self, fn: Any, kind: type[_Op] = _Op) -> Any:
        """Run ``fn(conn)`` inside the writer's next transaction (a raw op, not a mutation)."""
        assert self._loop is not None, "store is not open"
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put(kind("", fn, future))
        return await future

    def _write_loop(self) -> None:
        conn = self._write_conn
        assert conn is not None and self._loop is not None
        loop = self._loop
        get, get_nowait = self._queue.get, self._queue.get_nowait
        busy = False  #: the last batch held several writes: more are likely on their way
        committed = 0.0  #: when the last batch was committed
        while True:
            first = get()
            if first is _STOP:
                return
            batch: list[_Op] = [first]
            stop = False
            # Under concurrent writes (the last batch held several, just now), wait up to
            # ``batch_wait_s`` for more before committing, as PostgreSQL's commit_delay does: one
            # fsync then covers more writes, for less CPU per write. A lone write never waits.
            now = perf_counter()
            deadline = now + self.batch_wait_s if busy and now - committed < _BUSY_S else 0.0
            while len(batch) < self.max_batch:
                wait = deadline - perf_counter()
                try:
                    item = get(timeout=wait) if wait > 0 else get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            busy = len(batch) >= _BUSY_BATCH
            self._writing = len(batch)
            self._commit(conn, batch)
            self._writing = 0
            committed = perf_counter()
            _hand_back(loop, batch)
            if stop:
                return

    def _commit(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        if _file_id(self.path) != self._file:
            error = self._gone()
            for op in batch:
                op.result, op.error = None, error
            return
        started = perf_counter()
        written = conn.total_changes
        try:
            conn.execute("BEGIN IMMEDIATE")
            run: list[_Op] = []  # consecutive mutations, applied together
            # An op whose caller went away (cancelled: a client gone, a stop past its grace)
            # before the writer reached it will never be answered, so it is not made either.
            # Reading the future's state from this thread is one attribute read; a caller
            # cancelled from here on is a write made but unanswered, as for a client that leaves.
            for op in [op for op in batch if not op.future.cancelled()]:
                if op.key:
                    run.append(op)
                    continue
                if run:
                    self._mutate_all(conn, run)
                    run = []
                try:
                    op.result = self._raw(conn, op)
                except sqlite3.Error:
                    raise  # the database failed: the whole batch fails below
                except Exception as exc:  # refused, and rolled back to before it (see _raw)
                    op.error = exc
            if run:
                self._mutate_all(conn, run)
            conn.execute("COMMIT")
            self.commits += 1
            if self.metrics is not None:
                self.metrics.committed(
                    perf_counter() - started, len(batch), fsynced=conn.total_changes != written
                )
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = self._failed(exc, f"commit failed: {exc}")
            for op in batch:
                op.result, op.error = None, error

    def _failed(self, exc: sqlite3.Error, message: str) -> StoreError:
        """The ``StoreError`` of a failed read or commit; a damaged file marks the store so."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # extended codes: primary in low byte
        if code in _DAMAGED and self.damaged is None:
            self.damaged = str(exc)
            log.error(
                "the database file %s is damaged (%s): the node is not ready; stop it and"
                " restore the file from a backup",
                self.path,
                exc,
            )
        return StoreError(message, _REASONS.get(code, ""))

    def _gone(self) -> StoreError:
        """The ``StoreError`` of a write refused because the database file was deleted or
        replaced since it was opened; the store is marked damaged (``/readyz`` 503)."""
        reason = "the database file was removed or replaced"
        if self.damaged is None:
            self.damaged = f"{self.path}: {reason} while the node ran"
            log.error(
                "%s was removed or replaced while the node ran: writes are refused (they would"
                " be lost) and the node is not ready; stop it, and restore the file if needed",
                self.path,
            )
        return StoreError(f"commit refused: {reason}", reason)

    def _raw(self, conn: sqlite3.Connection, op: _Op) -> Any:
        """Run a raw op: a bulk load as it is, anything else (homing) in a savepoint of its own."""
        if type(op) is _BulkOp:
            return op.mutation(conn)  # type: ignore[arg-type]
        conn.execute("SAVEPOINT raw")
        try:
            return op.mutation(conn)  # type: ignore[arg-type]
        except Exception:
            conn.execute("ROLLBACK TO raw")
            raise
        finally:
            conn.execute("RELEASE raw")

    def _mutate_all(self, conn: sqlite3.Connection, ops: list[_Op]) -> None:
        """Apply consecutive mutations with one read of every key they touch and one write of
        each key they changed (a few statements per batch, not a few per write).

        Each mutation sees the record as the ones before it in the batch left it. One that raises
        is refused: it changed nothing, and the error is its answer. A database error fails the
        whole batch (the caller rolls back).
        """
        state = _read_many(conn, {op.key for op in ops})  # key -> record, None when absent
        stored = {key for key, record in state.items() if record is not None}
        rows_of: dict[str, list[tuple[Any, ...]]] = {}  # key -> its rows, for keys changed
        counts: dict[str, int] = {}  # prefix -> handles created minus handles deleted
        for op in ops:
            key = op.key
            current = state[key]
            try:
                new = op.mutation(current)
                if new is None:
                    continue  # no change
                after = new if isinstance(new, Record) and new.values else None  # None: gone
                rows = _rows(key, after) if after is not None else []
            except Exception as exc:  # refused before it changed anything
                op.error = exc
                continue
            op.result = new
            rows_of[key] = rows
            state[key] = after
            if (current is None) != (after is None):  # created, deleted
                prefix = key.partition("/")[0]
                counts[prefix] = counts.get(prefix, 0) + (1 if after else -1)
        try:
            gone = [(key,) for key in rows_of if key in stored]
            if gone:
                conn.executemany(_DELETE, gone)
            rows = [row for key_rows in rows_of.values() for row in key_rows]
            if rows:
                conn.executemany(_INSERT, rows)
            if counts:
                conn.executemany(_COUNT_DELTA, [(n, prefix) for prefix, n in counts.items()])
        except sqlite3.Error:
            raise
        except Exception as exc:  # a value SQLite cannot bind: fail the transaction
            raise sqlite3.DatabaseError(f"write failed: {exc!r}") from exc
