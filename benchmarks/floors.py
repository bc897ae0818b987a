"""Floors measured in the same run as the node: the least any server on this machine can do.

``python -m benchmarks.floors http|tcp|udp PORTFILE``: a bare aiohttp handler answering a fixed
300-byte JSON to a GET (and, to a PUT, reading the body and answering a fixed 201), a bare asyncio
TCP echo of length-prefixed frames, and a bare asyncio UDP echo,
each on the same event loop implementation as the node (uvloop when installed).

``python -m benchmarks.floors http-durable PORTFILE DBFILE``: the least a durable create can cost
with aiohttp and SQLite: a bare aiohttp handler that parses a PUT's JSON body into the store's
rows, and one writer thread that commits every queued create in one transaction (WAL,
``synchronous=FULL``: one fsync per batch) after one read of whether each handle exists, then
answers 201 (409 when it did). No authentication, validation, cache, metrics or coherence:
everything the node does beyond that is its own cost. ``DBFILE``: a copy of the node's store
(the same ``handles`` table and the same million rows).
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import sys
import threading
import time
from typing import Any

from aiohttp import web

from benchmarks.loadgen import pop_frames

BODY = (
    b'{"responseCode":1,"handle":"88.118.8/PRD-2026-000123","values":[{"index":1,"type":"URL",'
    b'"data":{"format":"string","value":"https://example.com/p/000123"},"ttl":86400,'
    b'"timestamp":"2026-11-28T10:00:00Z"}]}'
)
BODY = BODY + b" " * (300 - len(BODY))
#: what a create answers (201): the handle made
CREATED = b'{"responseCode":1,"handle":"88.118.8/NEW-1764324000-000123"}'
JSON = "application/json"
_INSERT = "INSERT INTO handles VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
_EXISTING = "SELECT hkey FROM handles WHERE hkey IN (SELECT value FROM json_each(?))"
#: a create waiting for the writer: (key, its rows, the future its answer goes to)
_Create = tuple[str, list[tuple[Any, ...]], "asyncio.Future[bool]"]


class _TCPEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        for frame in pop_frames(self.buffer):
            self.transport.write(frame)  # type: ignore[attr-defined]


class _UDPEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


def _answer(answers: list[tuple[asyncio.Future[bool], bool]]) -> None:
    for future, created in answers:
        if not future.done():
            future.set_result(created)


def _group_commit(dbfile: str, creates: queue.SimpleQueue[_Create], loop: Any) -> None:
    """The writer thread: everything queued, one transaction, one fsync, then the answers."""
    conn = sqlite3.connect(dbfile, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    while True:
        batch = [creates.get()]
        while True:
            try:
                batch.append(creates.get_nowait())
            except queue.Empty:
                break
        conn.execute("BEGIN IMMEDIATE")
        keys = json.dumps([key for key, _, _ in batch])
        exists = {row[0] for row in conn.execute(_EXISTING, (keys,))}
        rows, answers = [], []
        for key, value_rows, future in batch:
            answers.append((future, key not in exists))
            if key not in exists:
                exists.add(key)
                rows.extend(value_rows)
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
        loop.call_soon_threadsafe(_answer, answers)


def _durable_put(dbfile: str) -> Any:
    """The handler of the ``http-durable`` floor, its writer thread started."""
    loop = asyncio.get_running_loop()
    creates: queue.SimpleQueue[_Create] = queue.SimpleQueue()
    threading.Thread(target=_group_commit, args=(dbfile, creates, loop), daemon=True).start()

    async def put(request: web.Request) -> web.Response:
        handle = request.match_info["tail"]
        key, now = handle.upper(), int(time.time())
        rows = [
            (
                key,
                handle,
                v["index"],
                v["type"],
                v["data"].encode(),
                0,
                86400,
                now,
                None,
                1,
                1,
                1,
                0,
            )
            for v in json.loads(await request.read())["values"]
        ]
        future: asyncio.Future[bool] = loop.create_future()
        creates.put((key, rows, future))
        if await future:
            body = b'{"responseCode":1,"handle":"%s"}' % handle.encode()
            return web.Response(status=201, body=body, content_type=JSON)
        return web.Response(status=409, body=b'{"responseCode":101}', content_type=JSON)

    return put


async def _main(kind: str, portfile: str, dbfile: str = "") -> None:
    loop = asyncio.get_running_loop()
    if kind in ("http", "http-durable"):

        async def handler(request: web.Request) -> web.Response:
            return web.Response(body=BODY, content_type="application/json")

        async def put(request: web.Request) -> web.Response:
            await request.read()
            return web.Response(status=201, body=CREATED, content_type="application/json")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handler)
        if kind == "http":
            app.router.add_put("/{tail:.*}", put)
        else:
            app.router.add_put("/api/handles/{tail:.*}", _durable_put(dbfile))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
    elif kind == "tcp":
        server = await loop.create_server(_TCPEcho, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
    else:
        transport, _ = await loop.create_datagram_endpoint(_UDPEcho, local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
    with open(portfile, "w") as fh:
        fh.write(str(port))
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(_main(*sys.argv[1:4]))
    except ImportError:
        asyncio.run(_main(*sys.argv[1:4]))
