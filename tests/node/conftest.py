"""Fixtures for node tests: a real node in a background thread, a node as a subprocess, wire helpers.

``node`` starts ``node.server.Node`` on 127.0.0.1 with every port 0 in a thread that owns its own
event loop, and yields a ``RunningNode``: its ports, ``call(coro_fn)`` to run client code (a fresh
event loop in the test thread) and ``on_node(coro_fn)`` to run code on the node's own loop (to look
at the store directly). ``spawn_node`` runs ``python -m node serve`` as a subprocess for restart and
``kill -9`` tests. No pytest-asyncio: every coroutine runs through ``asyncio.run`` or these helpers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from node.config import Config
from node.server import Node
from protocol.messages import Credential, Message, Request, Response
from protocol.wire import (
    NEED_DATA,
    Connection,
    WireLimits,
    decode_message,
    encode_message,
    frame,
)

T = TypeVar("T")

HOST = "127.0.0.1"
PREFIX = "88.100.1"
ADMIN_HANDLE = f"{PREFIX}/ADMIN"
ADMIN_INDEX = 300
SECRET = "s3cret"
#: HTTP Basic credentials of the prefix admin: ``base64("300%3A88.100.1/ADMIN:s3cret")``


def basic(user_id: str, secret: str) -> dict[str, str]:
    """``Authorization: Basic`` header for ``user_id`` (``index%3Ahandle``) and ``secret``."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user_id}:{secret}".encode()).decode()}


AUTH = basic(f"{ADMIN_INDEX}%3A{ADMIN_HANDLE}", SECRET)
BAD_AUTH = basic(f"{ADMIN_INDEX}%3A{ADMIN_HANDLE}", "wrong")
CREDENTIAL = Credential(ADMIN_HANDLE, ADMIN_INDEX, SECRET)
BAD_CREDENTIAL = Credential(ADMIN_HANDLE, ADMIN_INDEX, "wrong")
LISTENING = re.compile(r"idnode listening on (\S+): http=(\d+) tcp=(\d+) udp=(\d+)")
ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------
# In-process node in a background thread


@dataclass
class RunningNode:
    """A started node; ``ports`` holds its real http/tcp/udp ports."""

    node: Node
    loop: asyncio.AbstractEventLoop
    config: Config
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.ports['http']}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def call(self, coro_fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run client code ``coro_fn()`` on a fresh event loop in the test thread."""

        async def bounded() -> T:
            return await asyncio.wait_for(coro_fn(), timeout)

        return asyncio.run(bounded())

    def on_node(self, coro_fn: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
        """Run ``coro_fn()`` on the node's own loop (to use its store or service directly)."""

        async def wrapped() -> T:
            return await coro_fn()

        fut: Future[T] = asyncio.run_coroutine_threadsafe(wrapped(), self.loop)
        return fut.result(timeout)


def make_config(data_dir: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = dict(
        data_dir=str(data_dir),
        host=HOST,
        http_port=0,
        port=0,
        home=[PREFIX],
        admin_secret=SECRET,
        shutdown_grace_s=2.0,
    )
    values.update(overrides)
    return Config(**values)


@contextlib.contextmanager
def running_node(config: Config) -> Iterator[RunningNode]:
    """Start ``Node(config)`` in a thread with its own loop; stop it cleanly on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="node-loop", daemon=True)
    thread.start()
    node = Node(config)
    try:
        asyncio.run_coroutine_threadsafe(node.start(), loop).result(30)
        yield RunningNode(node, loop, config, dict(node.ports))
    finally:

        async def stop() -> None:
            with contextlib.suppress(Exception):
                await node.stop()
            await asyncio.sleep(0.05)  # let closed transports run connection_lost
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()

        try:
            asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()


@pytest.fixture
def node_config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "data")


@pytest.fixture
def node(node_config: Config) -> Iterator[RunningNode]:
    with running_node(node_config) as running:
        yield running


# ------------------------------------------------------------------------------------------------
# Node as a subprocess (``python -m node serve``)


class NodeProcess:
    """``python -m node serve ...`` with its ports parsed from the line it prints."""

    def __init__(self, data_dir: Path, *, home: bool = True, extra: list[str] | None = None):
        self.data_dir = data_dir
        args = [
            sys.executable,
            "-m",
            "node",
            "serve",
            "--data-dir",
            str(data_dir),
            "--host",
            HOST,
            "--http-port",
            "0",
            "--port",
            "0",
            "--admin-secret",
            SECRET,
        ]
        if home:
            args += ["--home", PREFIX]
        args += extra or []
        data_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = data_dir.parent / f"node-stderr-{time.monotonic_ns()}.log"
        self._stderr = self.stderr_path.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDNODE_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
        )
        self.line = ""
        self.ports: dict[str, int] = {}
        self.host = HOST

    def wait_listening(self, timeout: float = 30.0) -> NodeProcess:
        """Read stdout until the ``idnode listening on ...`` line (in a thread, bounded)."""
        assert self.proc.stdout is not None
        result: list[str] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                if LISTENING.search(line):
                    result.append(line.strip())
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not result:
            self.kill()
            raise AssertionError(
                f"node did not print its listening line within {timeout}s "
                f"(rc={self.proc.poll()}); stderr:\n{self.stderr()[-3000:]}"
            )
        self.line = result[0]
        m = LISTENING.search(self.line)
        assert m is not None
        self.host = m.group(1)
        self.ports = {"http": int(m.group(2)), "tcp": int(m.group(3)), "udp": int(m.group(4))}
        return self

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.ports['http']}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.close()

    def close(self) -> None:
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()
        if not self._stderr.closed:
            self._stderr.close()


@pytest.fixture
def spawn_node() -> Iterator[Callable[..., NodeProcess]]:
    """Factory: ``spawn_node(data_dir, home=True, extra=[...])`` started and listening."""
    started: list[NodeProcess] = []

    def spawn(data_dir: Path, *, home: bool = True, extra: list[str] | None = None) -> NodeProcess:
        proc = NodeProcess(data_dir, home=home, extra=extra)
        started.append(proc)
        return proc.wait_listening()

    yield spawn
    for proc in started:
        if proc.proc.poll() is None:
            proc.kill()
        proc.close()


# ------------------------------------------------------------------------------------------------
# msgpack over TCP and UDP (raw sockets plus protocol.wire)

_request_ids = itertools.count(1)


def next_request_id() -> int:
    return next(_request_ids)


class TCPClient:
    """One TCP connection speaking framed msgpack; ``request`` sends and waits for the answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = Connection(WireLimits(max_frame_bytes=16 * 1024 * 1024))

    @classmethod
    async def open(cls, port: int) -> TCPClient:
        reader, writer = await asyncio.open_connection(HOST, port)
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, message: Message) -> None:
        await self.send_raw(frame(encode_message(message)))

    async def receive(self, timeout: float = 10.0) -> Message:
        """The next message; raises ``EOFError`` when the server closed the connection."""
        while True:
            event = self.conn.next_event()
            if event is not NEED_DATA:
                assert isinstance(event, Message)
                return event
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("the server closed the connection")
            self.conn.receive_data(data)

    async def request(self, message: Request, timeout: float = 10.0) -> Response:
        await self.send(message)
        answer = await self.receive(timeout)
        assert isinstance(answer, Response)
        assert answer.request_id == message.request_id
        return answer

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


class _UDPReceiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


class UDPClient:
    """A connected UDP socket; one request datagram, one answer datagram."""

    def __init__(self, transport: asyncio.DatagramTransport, receiver: _UDPReceiver) -> None:
        self.transport = transport
        self.receiver = receiver

    @classmethod
    async def open(cls, port: int) -> UDPClient:
        loop = asyncio.get_running_loop()
        transport, receiver = await loop.create_datagram_endpoint(
            _UDPReceiver, remote_addr=(HOST, port)
        )
        return cls(transport, receiver)

    def send_raw(self, data: bytes) -> None:
        if not data:  # asyncio silently drops empty datagrams: send one through a dup
            fileno = self.transport.get_extra_info("socket").fileno()
            with socket.socket(fileno=os.dup(fileno)) as sock:
                sock.send(b"")
            return
        self.transport.sendto(data)

    async def receive_raw(self, timeout: float = 5.0) -> bytes:
        return await asyncio.wait_for(self.receiver.queue.get(), timeout)

    async def request(self, message: Request, timeout: float = 5.0) -> Response:
        self.send_raw(encode_message(message))
        answer = decode_message(
            await self.receive_raw(timeout), WireLimits(max_frame_bytes=16 * 1024 * 1024)
        )
        assert isinstance(answer, Response)
        assert answer.request_id == message.request_id
        return answer

    def close(self) -> None:
        self.transport.close()


async def tcp_request(port: int, message: Request, timeout: float = 10.0) -> Response:
    client = await TCPClient.open(port)
    try:
        return await client.request(message, timeout)
    finally:
        await client.close()


async def udp_request(port: int, message: Request, timeout: float = 5.0) -> Response:
    client = await UDPClient.open(port)
    try:
        return await client.request(message, timeout)
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------
# HTTP helpers (aiohttp, one session per call)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def http(
    node: RunningNode | NodeProcess,
    method: str,
    path: str,
    *,
    params: list[tuple[str, str]] | None = None,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: bool = False,
) -> Reply:
    """One HTTP request to ``node``; ``body`` is sent as JSON, ``raw`` as-is."""
    hdrs = dict(headers or {})
    if auth:
        hdrs.update(AUTH)
    data: bytes | None = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")

    async def go() -> Reply:
        payload: Any = io.BytesIO(data) if data is not None and len(data) > 65536 else data
        async with aiohttp.ClientSession() as session:
            async with session.request(
                method, node.url(path), params=params, data=payload, headers=hdrs
            ) as resp:
                return Reply(resp.status, dict(resp.headers), await resp.read())

    return asyncio.run(asyncio.wait_for(go(), 60))


def value(index: int, type_: str, data: str, **extra: Any) -> dict[str, Any]:
    return {"index": index, "type": type_, "data": {"format": "string", "value": data}, **extra}


def create(node: RunningNode | NodeProcess, handle: str, *values: dict[str, Any]) -> Reply:
    reply = http(node, "PUT", f"/api/handles/{handle}", body={"values": list(values)}, auth=True)
    assert reply.status in (200, 201), reply.body
    return reply


def resolve(node: RunningNode | NodeProcess, handle: str, **kw: Any) -> Reply:
    return http(node, "GET", f"/api/handles/{handle}", **kw)


def state(node: RunningNode | NodeProcess) -> dict[str, Any]:
    """Every handle under the prefix with every value, read as the admin, bypassing caches."""
    listed = http(
        node, "GET", "/api/handles", params=[("prefix", PREFIX), ("pageSize", "10000")], auth=True
    )
    assert listed.status == 200, listed.body
    out = {}
    for handle in listed.json["handles"]:
        got = http(node, "GET", f"/api/handles/{handle}", params=[("auth", "true")], auth=True)
        assert got.status == 200, got.body
        out[handle] = got.json
    return out


def indexes(reply: Reply) -> list[int]:
    return [v["index"] for v in reply.json["values"]]


def raw_put_head(handle: str, length: int) -> bytes:
    """The head of an authenticated JSON ``PUT /api/handles/<handle>`` of ``length`` bytes, for
    tests that send the body themselves (or not at all)."""
    return (
        f"PUT /api/handles/{handle} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"Authorization: {AUTH['Authorization']}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
