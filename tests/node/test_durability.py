"""Durability: racing creates, restart on the same data directory, and kill -9 under load.

An acknowledged write (a 2xx answer) must survive anything: an orderly SIGTERM restart and a
SIGKILL in the middle of a burst of writes. The restarted node must find every acknowledged
handle with its values, and the SQLite file must pass ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import struct
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from protocol.codes import ResponseCode
from protocol.messages import (
    CreateRequest,
    Credential,
    HomePrefixRequest,
    ListHomedPrefixesRequest,
    ListPrefixesResponse,
    ResolveRequest,
    ResolveResponse,
)
from protocol.records import HandleValue
from protocol.wire import decode_message, encode_message, frame
from tests.node.conftest import (
    ADMIN_HANDLE,
    ADMIN_INDEX,
    AUTH,
    CREDENTIAL,
    HOST,
    PREFIX,
    SECRET,
    NodeProcess,
    RunningNode,
    basic,
    create,
    http,
    resolve,
    tcp_request,
    value,
)

NODE_ADMIN = Credential(f"0.NA/{PREFIX}", 300, SECRET)
SECOND = "88.100.2"


def integrity(data_dir: Path) -> str:
    conn = sqlite3.connect(data_dir / "idnode.sqlite3")
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_100_concurrent_creates_of_one_handle_over_http(node: RunningNode) -> None:
    handle = f"{PREFIX}/contended"

    async def go() -> list[tuple[int, Any]]:
        connector = aiohttp.TCPConnector(limit=100)
        async with aiohttp.ClientSession(connector=connector, headers=AUTH) as session:

            async def one(i: int) -> tuple[int, Any]:
                async with session.put(
                    node.url(f"/api/handles/{handle}"),
                    params={"overwrite": "false"},
                    json={"values": [value(1, "URL", f"writer-{i}")]},
                ) as resp:
                    return resp.status, await resp.json()

            return await asyncio.gather(*(one(i) for i in range(100)))

    results = node.call(go, timeout=50)
    created = [body for status, body in results if status == 201]
    refused = [body for status, body in results if status == 409]
    assert len(created) == 1, [s for s, _ in results]
    assert len(refused) == 99, [s for s, _ in results]
    assert created[0] == {"responseCode": 1, "handle": handle}
    assert all(body["responseCode"] == 101 for body in refused)
    got = resolve(node, handle)
    assert got.status == 200
    assert len(got.json["values"]) == 1
    assert got.json["values"][0]["data"]["value"].startswith("writer-")


@pytest.mark.timeout(60)
def test_restart_keeps_data_and_homed_prefixes(tmp_path: Path, spawn_node: Any) -> None:
    data_dir = tmp_path / "data"
    first: NodeProcess = spawn_node(data_dir)
    for i in range(20):
        create(first, f"{PREFIX}/r{i}", value(1, "URL", f"https://r/{i}"), value(2, "EMAIL", "e@r"))
    homed = asyncio.run(
        tcp_request(
            first.ports["tcp"],
            HomePrefixRequest(request_id=1, prefix=SECOND, credential=NODE_ADMIN),
        )
    )
    assert homed.code == ResponseCode.SUCCESS, homed
    second_admin = Credential(f"{SECOND}/ADMIN", 300, SECRET)
    made = asyncio.run(
        tcp_request(
            first.ports["tcp"],
            CreateRequest(
                request_id=1,
                handle=f"{SECOND}/x",
                values=(HandleValue(1, "URL", b"second"),),
                credential=second_admin,
            ),
        )
    )
    assert made.code == ResponseCode.SUCCESS, made
    deleted = http(first, "DELETE", f"/api/handles/{PREFIX}/r19", auth=True)
    assert deleted.status == 200
    assert first.terminate() == 0

    # restart without --home: homed prefixes come from the store
    again: NodeProcess = spawn_node(data_dir, home=False)
    for i in range(19):
        got = resolve(again, f"{PREFIX}/r{i}")
        assert got.status == 200, (i, got.body)
        assert [v["data"]["value"] for v in got.json["values"]] == [f"https://r/{i}", "e@r"]
    assert resolve(again, f"{PREFIX}/r19").status == 404
    listed = asyncio.run(tcp_request(again.ports["tcp"], ListHomedPrefixesRequest(request_id=3)))
    assert isinstance(listed, ListPrefixesResponse)
    assert sorted(listed.prefixes) == [PREFIX, SECOND]
    got2 = asyncio.run(
        tcp_request(again.ports["tcp"], ResolveRequest(request_id=4, handle=f"{SECOND}/x"))
    )
    assert isinstance(got2, ResolveResponse)
    assert got2.values[0].data == b"second"
    # credentials still work after the restart
    create(again, f"{PREFIX}/after", value(1, "URL", "after"))
    assert again.terminate() == 0
    assert integrity(data_dir) == "ok"


@pytest.mark.timeout(60)
def test_a_half_done_homing_is_homed_anew_with_the_new_secret(
    tmp_path: Path, spawn_node: Any
) -> None:
    """A node killed between writing ``<prefix>/ADMIN`` and homing the prefix (two commits before
    homing was one) left the admin handle without the homed prefix. Homing it at the next start
    with another secret must make that secret the admin's, not keep the old one; homing a
    prefix that is homed already still changes nothing."""
    data_dir = tmp_path / "data"
    first: NodeProcess = spawn_node(data_dir, extra=["--admin-secret", "old-secret"])
    assert first.terminate() == 0
    conn = sqlite3.connect(data_dir / "idnode.sqlite3")
    with conn:  # the state that kill -9 between the two commits left
        for table in ("nas", "na_counts"):
            conn.execute(f"DELETE FROM {table} WHERE na_key = ?", (PREFIX,))
    conn.close()

    def put(node: NodeProcess, name: str, secret: str) -> int:
        reply = http(
            node,
            "PUT",
            f"/api/handles/{PREFIX}/{name}",
            body={"values": [value(1, "URL", name)]},
            headers=basic(f"{ADMIN_INDEX}%3A{ADMIN_HANDLE}", secret),
        )
        return reply.status

    again: NodeProcess = spawn_node(data_dir, extra=["--admin-secret", "new-secret"])
    assert put(again, "new", "new-secret") == 201
    assert put(again, "old", "old-secret") == 401
    assert again.terminate() == 0

    third: NodeProcess = spawn_node(data_dir, extra=["--admin-secret", "third-secret"])
    homed = asyncio.run(
        tcp_request(
            third.ports["tcp"],
            HomePrefixRequest(
                request_id=1,
                prefix=PREFIX,
                credential=Credential(f"0.NA/{PREFIX}", 300, "third-secret"),
            ),
        )
    )
    assert homed.code == ResponseCode.SUCCESS, homed
    assert put(third, "third", "third-secret") == 401  # homed already: its admin is kept
    assert put(third, "still", "new-secret") == 201
    assert third.terminate() == 0
    assert integrity(data_dir) == "ok"
    conn = sqlite3.connect(data_dir / "idnode.sqlite3")
    try:  # counted when homed anew, with its admin handle: ADMIN, new and still
        assert conn.execute("SELECT handles FROM na_counts").fetchall() == [(3,)]
    finally:
        conn.close()


@pytest.mark.timeout(90)
@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_write(tmp_path: Path, spawn_node: Any) -> None:
    data_dir = tmp_path / "data"
    proc: NodeProcess = spawn_node(data_dir)
    total, kill_after = 1000, 300
    # warm the credential cache so the burst is not 1,000 key derivations
    create(proc, f"{PREFIX}/warm", value(1, "URL", "warm"))

    async def burst() -> tuple[set[int], int]:
        acked: set[int] = set()
        killed = asyncio.Event()
        errors = 0
        connector = aiohttp.TCPConnector(limit=200, force_close=False)
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(
            connector=connector, headers=AUTH, timeout=timeout
        ) as session:

            async def one(i: int) -> None:
                nonlocal errors
                try:
                    async with session.put(
                        proc.url(f"/api/handles/{PREFIX}/k{i}"),
                        params={"overwrite": "false"},
                        json={"values": [value(1, "URL", f"https://k/{i}"), value(2, "N", str(i))]},
                    ) as resp:
                        await resp.read()
                        if resp.status == 201:
                            acked.add(i)
                        elif not killed.is_set():
                            raise AssertionError(f"create {i} answered {resp.status}")
                except (TimeoutError, aiohttp.ClientError, ConnectionError):
                    errors += 1
                if len(acked) >= kill_after and not killed.is_set():
                    killed.set()
                    proc.proc.kill()  # SIGKILL while the rest are in flight

            await asyncio.gather(*(one(i) for i in range(total)))
        return acked, errors

    acked, errors = asyncio.run(asyncio.wait_for(burst(), 60))
    print(f"acked={len(acked)} errors={errors}")
    proc.kill()
    assert len(acked) >= kill_after
    assert len(acked) < total, "the kill came after every request finished: nothing was in flight"
    assert errors > 0

    again: NodeProcess = spawn_node(data_dir, home=False)

    async def check() -> list[int]:
        missing: list[int] = []
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:

            async def one(i: int) -> None:
                async with session.get(again.url(f"/api/handles/{PREFIX}/k{i}")) as resp:
                    body = await resp.json()
                    if resp.status != 200 or [v["data"]["value"] for v in body["values"]] != [
                        f"https://k/{i}",
                        str(i),
                    ]:
                        missing.append(i)

            await asyncio.gather(*(one(i) for i in sorted(acked)))
        return missing

    missing = asyncio.run(asyncio.wait_for(check(), 30))
    assert missing == [], f"{len(missing)} acknowledged creates lost: {missing[:20]}"
    # the store is consistent and writable
    assert resolve(again, f"{PREFIX}/warm").status == 200
    assert (
        asyncio.run(
            tcp_request(
                again.ports["tcp"],
                CreateRequest(
                    request_id=5,
                    handle=f"{PREFIX}/post-crash",
                    values=(HandleValue(1, "URL", b"ok"),),
                    credential=CREDENTIAL,
                ),
            )
        ).code
        == ResponseCode.SUCCESS
    )
    assert again.terminate() == 0
    assert integrity(data_dir) == "ok"


@pytest.mark.timeout(60)
def test_sigterm_under_load_drains_and_keeps_every_acknowledged_write(
    tmp_path: Path, spawn_node: Any
) -> None:
    data_dir = tmp_path / "data"
    proc: NodeProcess = spawn_node(data_dir)
    create(proc, f"{PREFIX}/warm", value(1, "URL", "warm"))
    total, stop_after = 400, 50

    async def burst() -> tuple[set[int], list[int]]:
        acked: set[int] = set()
        other_statuses: list[int] = []
        stopping = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=100)
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(
            connector=connector, headers=AUTH, timeout=timeout
        ) as session:

            async def one(i: int) -> None:
                try:
                    async with session.put(
                        proc.url(f"/api/handles/{PREFIX}/t{i}"),
                        params={"overwrite": "false"},
                        json={"values": [value(1, "URL", f"https://t/{i}")]},
                    ) as resp:
                        await resp.read()
                        if resp.status == 201:
                            acked.add(i)
                        else:
                            other_statuses.append(resp.status)
                except (TimeoutError, aiohttp.ClientError, ConnectionError):
                    pass  # refused or cut while stopping: not acknowledged
                if len(acked) >= stop_after and not stopping.is_set():
                    stopping.set()
                    proc.proc.send_signal(signal.SIGTERM)

            await asyncio.gather(*(one(i) for i in range(total)))
        return acked, other_statuses

    acked, other_statuses = asyncio.run(asyncio.wait_for(burst(), 40))
    print(f"acked={len(acked)} other={other_statuses[:5]}")
    assert proc.proc.wait(15) == 0, proc.stderr()[-2000:]
    proc.close()
    assert len(acked) >= stop_after
    assert all(s < 500 for s in other_statuses), other_statuses
    # an orderly stop checkpoints the WAL into the database file
    wal = data_dir / "idnode.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert integrity(data_dir) == "ok"

    again: NodeProcess = spawn_node(data_dir, home=False)
    for i in sorted(acked):
        got = resolve(again, f"{PREFIX}/t{i}")
        assert got.status == 200, (i, got.body)
        assert got.json["values"][0]["data"]["value"] == f"https://t/{i}"
    assert again.terminate() == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_sigterm_leaves_no_write_done_but_unanswered(
    tmp_path: Path, spawn_node: Any, transport: str
) -> None:
    """Creates keep coming over one msgpack socket while the node stops: each one it stored was
    answered (a request it did not read before stopping is not run, and not answered)."""
    data_dir = tmp_path / "data"
    proc: NodeProcess = spawn_node(data_dir)
    port = proc.ports[transport]

    def create_bytes(n: int) -> bytes:
        request = CreateRequest(
            request_id=n,
            handle=f"{PREFIX}/d{n}",
            values=(HandleValue(1, "URL", b"https://d/%d" % n),),
            credential=CREDENTIAL,
        )
        return encode_message(request)

    async def stream() -> tuple[int, set[int]]:
        answered: set[int] = set()
        sent = 0
        loop = asyncio.get_running_loop()
        if transport == "tcp":
            reader, writer = await asyncio.open_connection(HOST, port)

            async def read() -> None:
                with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                    while True:
                        (length,) = struct.unpack(">I", await reader.readexactly(4))
                        reply = decode_message(await reader.readexactly(length))
                        if reply.code == ResponseCode.SUCCESS:
                            answered.add(reply.request_id)

            reading = asyncio.ensure_future(read())
            writer.write(b"".join(frame(create_bytes(n)) for n in range(1, 201)))
            sent = 200
            proc.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(ConnectionError):
                for _ in range(200):  # more creates while it stops
                    writer.write(b"".join(frame(create_bytes(sent + k)) for k in range(1, 11)))
                    sent += 10
                    await writer.drain()
                    await asyncio.sleep(0.002)
            await asyncio.wait_for(reading, 20)
            writer.close()
        else:
            got: asyncio.Queue[bytes] = asyncio.Queue()

            class Answers(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    got.put_nowait(data)

            sock, _ = await loop.create_datagram_endpoint(Answers, remote_addr=(HOST, port))
            for n in range(1, 601):
                sock.sendto(create_bytes(n))
                sent = n
                if n == 100:
                    proc.proc.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.001)
            await asyncio.sleep(1.0)  # answers still on their way
            while not got.empty():
                reply = decode_message(got.get_nowait())
                if reply.code == ResponseCode.SUCCESS:
                    answered.add(reply.request_id)
            sock.close()
        return sent, answered

    sent, answered = asyncio.run(asyncio.wait_for(stream(), 45))
    assert proc.proc.wait(15) == 0, proc.stderr()[-2000:]
    proc.close()
    assert answered  # the first ones, at least, were answered before the stop

    again: NodeProcess = spawn_node(data_dir, home=False)
    stored = {n for n in range(1, sent + 1) if resolve(again, f"{PREFIX}/d{n}").status == 200}
    assert again.terminate() == 0
    assert answered <= stored  # acknowledged: kept
    assert stored - answered == set()  # done, but never answered: none
